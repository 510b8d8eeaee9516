"""Parsing near the limits: decided from the raw text where it can be, and no slow path by accident.

Issue 11, finding 7: a 24 MB body just over the element limit was refused only after 5.6 s
of parsing; one colon inside a key, or a /v1/check whose submission.layers starts with
null, sent the duplicate-key check down its exact re-parse.
"""

from __future__ import annotations

import json
import random
from unittest import mock

import pytest

from schemas.binary import encode
from service import create_app
from service.core import Limits
from service.http import prescan
from service.http.body import NUMBERS_OUTSIDE_ARRAYS_PER_LAYER
from service.http.duplicates import counted, first_duplicate, first_duplicate_exact
from service.http.json import decode
from service.routes.autograder import CHECK_EXAMPLE

JSON = {"Content-Type": "application/json"}
LAYER = b'"layers": [{"weights": [[0.1]], "biases": [0.0], "activation": "sigmoid"}]'


def numbers_body(numbers: int) -> bytes:
    """A /v1/gradients body whose inputs hold ``numbers`` numbers (and 3 more elsewhere)."""
    rows = b",".join([b"[0.5]"] * numbers)
    return b'{"inputs": [' + rows + b'], "targets": [[1.0]], ' + LAYER + b', "loss": "mse"}'


def limited(max_elements: int):
    return create_app({"TESTING": True, "GRADIENT_LIMITS": Limits(max_elements=max_elements)})


# -- the element limit, from the text --


def test_a_24_mb_body_over_the_element_limit_is_refused_before_parsing(client):
    rows = b",".join([b"[0.25,0.5,0.75,1.0]"] * 1_030_000)  # 4,120,000 numbers, 20.6 MB
    body = b'{"inputs": [' + rows + b'], "targets": [[1.0]], ' + LAYER + b', "loss": "mse"}'
    assert len(body) > 20_000_000
    with mock.patch("service.http.body.decode", side_effect=AssertionError("parsed")) as parse:
        response = client.post("/v1/gradients", data=body, headers=JSON)
    assert not parse.called
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:gradient-service:problem:limit-exceeded"
    assert list(problem["errors"]) == ["_request"]
    assert problem["errors"]["_request"] == [
        "the body holds 4,120,003 numbers, over this service's limit of 4,000,000 "
        "(GRADIENT_MAX_ELEMENTS), so it was refused before parsing. Send fewer numbers: a "
        "smaller batch, split over several requests. (Large arrays also parse far faster in "
        'the binary form {"dtype": "float64", "shape": [...], "data": "<base64>"}; the limit '
        "counts their elements too.)"
    ]


def test_the_text_refuses_only_past_the_room_for_numbers_outside_arrays():
    # 1,000 elements allowed, and 64 numbers a layer (shapes, scalars) for 64 layers and 2 more
    allowance = NUMBERS_OUTSIDE_ARRAYS_PER_LAYER * (64 + 2)
    client = limited(1_000).test_client()
    for numbers, parsed in [(1_000 + allowance, True), (1_000 + allowance + 1, False)]:
        body = numbers_body(numbers - 3)  # 3 numbers in targets and the layer
        with mock.patch("service.http.body.decode", wraps=decode) as parse:
            response = client.post("/v1/gradients", data=body, headers=JSON)
        assert parse.called == parsed
        assert response.status_code == 422
        refused_unparsed = f"the body holds {numbers:,} numbers" in response.get_json()["detail"]
        assert refused_unparsed == (not parsed)


@pytest.mark.parametrize(
    "field",
    [
        "0," * 300_000,  # digits and commas inside a string
        '1\\",' * 100_000,  # escaped quotes inside a string
    ],
    ids=["digits", "escaped-quotes"],
)
def test_numbers_inside_strings_are_not_counted(field):
    client = limited(1_000).test_client()
    body = json.dumps({"inputs": [[0.5]], "targets": [[1.0]], "loss": "mse", "note": field})
    response = client.post("/v1/gradients", data=body, headers=JSON)
    assert response.status_code == 422
    assert response.get_json()["type"].endswith("validation")  # parsed: an unknown field


def test_a_base64_body_over_the_limit_is_refused_by_its_shapes_after_a_fast_parse():
    # binary arrays declare their shape; their parse is one string each, so no text scan needed
    client = limited(1_000).test_client()
    request = {
        "inputs": encode([[0.5]] * 2_000),
        "targets": encode([[1.0]] * 2_000),
        "layers": [{"weights": [[0.1]], "biases": [0.0], "activation": "sigmoid"}],
        "loss": "mse",
    }
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422
    assert "the arrays hold 4,002 numbers" in response.get_json()["detail"]


def json_value(rng: random.Random, depth: int = 0):
    """A random JSON value whose strings hold digits, quotes, backslashes and colons."""
    text = "".join(rng.choice(["a", "1", "-2", '"', "\\", ":", ",", "é", "[", " "]) for _ in "..")
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice([rng.randint(-99, 99), rng.random() * 1e10, -1e-7, True, None, text])
    if roll < 0.7:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {text + str(i): json_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def numbers_in(value) -> int:
    if isinstance(value, dict):
        return sum(map(numbers_in, value.values()))
    if isinstance(value, list):
        return sum(map(numbers_in, value))
    return int(isinstance(value, (int, float)) and not isinstance(value, bool))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_the_text_count_is_exact_for_any_json_text_and_any_chunk_size(chunk):
    rng = random.Random(chunk)
    with mock.patch.object(prescan, "CHUNK", chunk):
        for _ in range(300):
            value = json_value(rng)
            text = json.dumps(value, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5)
            assert prescan.numbers_in_text(text.encode()) == numbers_in(value), text


def census_of(value) -> prescan.Census:
    """The numbers, lists, objects and strings (keys included) of a parsed JSON value."""
    if isinstance(value, dict):
        parts = [census_of(v) for v in value.values()]
        own = prescan.Census(0, 0, 1, len(value))
    elif isinstance(value, list):
        parts, own = [census_of(v) for v in value], prescan.Census(0, 1, 0, 0)
    elif isinstance(value, str):
        parts, own = [], prescan.Census(0, 0, 0, 1)
    else:
        parts, own = [], prescan.Census(numbers_in(value), 0, 0, 0)
    return prescan.Census(
        *(sum(getattr(c, name) for c in (own, *parts)) for name in own.__dataclass_fields__)
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_the_census_of_the_text_is_exact_for_any_json_text_and_any_chunk_size(chunk):
    rng = random.Random(chunk + 100)
    with mock.patch.object(prescan, "CHUNK", chunk):
        for _ in range(300):
            value = json_value(rng)
            text = json.dumps(value, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5)
            assert prescan.census(text.encode()) == census_of(value), text


def test_a_body_of_empty_lists_is_refused_before_parsing_by_what_parsing_it_would_hold(client):
    """11 million "[]" in a 31.5 MiB body hold no number at all, but parsing them took a
    worker to 1.6 GiB before anything was priced: the text's census prices the parse."""
    body = b'{"inputs": [' + b",".join([b"[]"] * 11_000_000) + b"]}"
    with mock.patch("service.http.body.decode", side_effect=AssertionError("parsed")) as parse:
        response = client.post("/v1/gradients", data=body, headers=JSON)
    assert not parse.called
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:gradient-service:problem:limit-exceeded"
    message = problem["errors"]["_request"][0]
    assert message.startswith("parsing the body would hold about 1.1 GiB as Python objects ")
    assert "(0 numbers, 11,000,001 lists, 1 objects, 1 strings), 4.2x this service's" in message
    assert "Send arrays as long rows rather than many short lists" in message


def test_numbers_in_rows_of_one_under_the_element_limit_are_refused_by_their_lists(client):
    body = numbers_body(3_000_000)  # 3,000,003 numbers, each in a list of its own: 17 MiB
    with mock.patch("service.http.body.decode", side_effect=AssertionError("parsed")) as parse:
        response = client.post("/v1/gradients", data=body, headers=JSON)
    assert not parse.called
    assert response.status_code == 422
    assert "3,000,003 numbers, 3,000,007 lists" in response.get_json()["errors"]["_request"][0]


def test_a_body_too_short_to_cost_the_limit_whatever_it_holds_is_not_scanned(client):
    """Bench's medium request (3.0 MiB of numbers) must not pay for the census: 3 bytes of
    "{}," are the costliest parse (a dict), and 3.3 MiB of them stay under 256 MiB."""
    rows = b",".join([b"[" + b",".join([b"0.125"] * 1000) + b"]"] * 520)
    body = b'{"inputs": [' + rows + b'], "targets": [[1.0]], ' + LAYER + b', "loss": "mse"}'
    assert 3 * 2**20 > len(body) > 2**20
    with mock.patch("service.http.body.census", side_effect=AssertionError("scanned")) as scan:
        response = client.post("/v1/gradients", data=body, headers=JSON)
    assert not scan.called
    assert response.status_code == 422  # the weights are (1, 1), the inputs 1,000 wide


def test_a_large_body_of_long_rows_is_parsed_as_before(client):
    """The census prices the parse as the arrays' price does: 3 MiB of numbers in rows of
    1,000 is far under the limit and reaches the schema."""
    rows = b",".join([b"[" + b",".join([b"0.125"] * 1000) + b"]"] * 600)
    body = b'{"inputs": [' + rows + b'], "targets": [[1.0]], ' + LAYER + b', "loss": "mse"}'
    assert len(body) > 3 * 2**20
    response = client.post("/v1/gradients", data=body, headers=JSON)
    assert response.status_code == 422  # the weights are (1, 1), the inputs 1,000 wide
    assert "layers.0.weights" in response.get_json()["errors"]


# -- the duplicate-key check's fast path --


@pytest.fixture
def exact():
    """A spy on the exact re-parse: the fast path never calls it."""
    with mock.patch(
        "service.http.duplicates.first_duplicate_exact", wraps=first_duplicate_exact
    ) as spy:
        yield spy


NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"}


def test_a_colon_inside_a_key_keeps_the_fast_path(client, exact):
    body = json.dumps({**NEURON, "lo:ss": "bce"})
    response = client.post("/v1/neuron", data=body, headers=JSON)
    assert response.status_code == 422 and "lo:ss" in response.get_json()["errors"]
    assert not exact.called


def test_a_colon_inside_a_string_keeps_the_fast_path(client, exact):
    body = json.dumps({**NEURON, "activation": "sig:moid: a:b"})
    response = client.post("/v1/neuron", data=body, headers=JSON)
    assert response.status_code == 422 and "activation" in response.get_json()["errors"]
    assert not exact.called


def test_a_check_whose_submission_starts_with_null_keeps_the_fast_path(client, exact):
    assert CHECK_EXAMPLE["submission"]["layers"][0] is None
    response = client.post("/v1/check", data=json.dumps(CHECK_EXAMPLE), headers=JSON)
    assert response.status_code == 200
    assert not exact.called


@pytest.mark.parametrize(
    "body",
    [
        '{"x": 1.5, "a:b": 1, "a:b": 2}',
        '{"x": 1.5, "note": "a:b:c", "y": 1, "y": 2}',
        '{"x": 1.5, "n:ote": "a:b:c", "z": {"y": 1, "y": 2}}',
        '{"submission": {"layers": [null, {"db": [1.0], "db": [2.0]}]}}',
        '{"layers": [null, null, {"weights": [[1.0]], "weights": [[2.0]]}]}',
    ],
    ids=["colon-key", "colon-string", "nested", "null-first", "null-first-3"],
)
def test_duplicates_are_still_found_in_each_shape(client, body):
    response = client.post("/v1/check", data=body, headers=JSON)
    assert response.status_code == 400
    assert "appears twice in one object" in response.get_json()["detail"]


def test_an_escaped_colon_that_could_hide_a_duplicate_takes_the_exact_path(exact):
    # 3 colons in the text (keys a, a, b); parsed: keys a and b, and the colon "\u003a"
    # decodes to, make 3 as well: the counts agree although a key was dropped
    body = b'{"a": 1, "a": 2, "b": "\\u003a"}'
    assert first_duplicate(body, json.loads(body)) == "a"
    assert exact.called


def test_lists_of_numbers_are_not_walked_item_by_item():
    numbers = [0.5] * 100_000
    data = {"a": numbers, "b": [numbers[:3]] * 1000, "c": [None, *numbers], "d": [None, {"k": 1}]}
    with mock.patch(
        "service.http.duplicates._is_number", wraps=lambda v: type(v) in (int, float)
    ) as n:
        assert counted(data) == 5
    assert n.call_count < 10  # the first item of each list at most, never 100k of them


def test_a_list_mixing_objects_after_numbers_is_settled_exactly():
    # what the walk skips only makes its count smaller: never a missed duplicate
    body = b'{"a": [1.0, {"k": 1, "k": 2}]}'
    assert counted(json.loads(body)) == 1
    assert first_duplicate(body, json.loads(body)) == "k"


# -- a large body's memory: no document tree beside its objects --


def rows_body(rows: int, width: int) -> bytes:
    """A body of ``rows`` JSON lists of ``width`` numbers each (about 20 characters a number)."""
    numbers = random.Random(0).random
    row = lambda: "[" + ",".join(repr(numbers()) for _ in range(width)) + "]"  # noqa: E731
    text = ",".join(row() for _ in range(rows))
    return b'{"inputs": [' + text.encode() + b"]}"


def traced_parse(body: bytes) -> tuple[int, int]:
    """The bytes decode() held at its peak, and those its result holds, by tracemalloc."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        document = decode(body)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert document["inputs"][0]
    return peak - base, held - base


def test_a_body_over_1_mib_is_parsed_without_a_document_tree_beside_its_objects():
    # orjson built a tree (a copy of the body and 16 bytes a value) before the objects: the
    # parse of the largest /v1/check peaked a fresh worker 58 MiB over the objects it built
    body = rows_body(20_000, 16)
    assert len(body) > 2**20
    peak, held = traced_parse(body)
    assert peak <= held * 1.05, f"{peak / 2**20:.1f} MiB at the peak, {held / 2**20:.1f} held"


def test_a_small_body_is_still_parsed_by_orjson():
    body = rows_body(100, 16)
    with mock.patch("service.http.json.orjson.loads", wraps=json.loads) as orjson_loads:
        assert decode(body) == json.loads(body)
    orjson_loads.assert_called_once()


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (b"NaN", "unexpected character"),
        (b'"\\ud800"', "no low surrogate in string"),
        (b"1", "unexpected content after document"),
    ],
    ids=["NaN", "a lone surrogate", "trailing content"],
)
def test_an_invalid_body_over_1_mib_gets_the_message_a_small_one_gets(client, broken, message):
    for rows in (10, 20_000):
        body = rows_body(rows, 16)[:-1] + b', "loss": ' + broken + b"}"
        if broken == b"1":
            body = rows_body(rows, 16) + broken
        response = client.post("/v1/gradients", data=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert message in response.json["detail"], (rows, response.json["detail"])


def test_an_integer_beyond_any_double_in_a_body_over_1_mib_is_422_naming_its_field(client):
    # msgspec keeps it as a Python int (as in a body with a binary array); the field refuses it
    text = ",".join(["0.5"] * 200_000)
    body = (
        '{"x": [' + text + '], "w": [' + text + '], "b": 1' + "0" * 400 + ', "y": 1.0, '
        '"activation": "sigmoid", "loss": "bce"}'
    ).encode()
    assert len(body) > 2**20
    response = client.post("/v1/neuron", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert "finite" in response.json["errors"]["b"][0]
