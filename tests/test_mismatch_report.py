"""Which entries of a field are wrong (issue 13, item 6): every result of /v1/check carries
``mismatched`` (entries outside the tolerance) of ``entries`` (compared), ``worst_index``
(the mismatched entry with the largest error, in the submitted array's own layout) and
``exact``; with ``reveal``, the submitted and expected value there.  Every grading format
says it in one sentence, a withheld field says nothing of it.

The wrong submissions are the right answer (from /v1/gradients, in the client's layout)
with a few entries changed by hand, at positions named in the canonical (samples as rows,
W as (n_in, n_out)) layout and moved here into each convention's own.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from service.cli import main as cli_main
from service.grading_formats import WITHHELD
from tests.test_grading_formats import access_log_kept  # noqa: F401 (a fixture)

RNG = np.random.default_rng(13)
X = RNG.normal(size=(5, 3))
Y = RNG.uniform(0.1, 0.9, size=(5, 2))
W1, B1 = RNG.normal(scale=0.6, size=(3, 4)), RNG.normal(scale=0.3, size=4)
W2, B2 = RNG.normal(scale=0.6, size=(4, 2)), RNG.normal(scale=0.3, size=2)
CONVENTIONS = ("numpy", "torch", "columns")


def problem(convention: str) -> dict:
    """A 3-4-2 tanh/sigmoid mse network in ``convention``: flat biases in the rows
    conventions, (n, 1) columns in "columns"."""
    rows = convention != "columns"
    layers = []
    for W, b, activation in ((W1, B1, "tanh"), (W2, B2, "sigmoid")):
        layers.append(
            {
                "weights": (W if convention == "numpy" else W.T).tolist(),
                "biases": (b if rows else b.reshape(-1, 1)).tolist(),
                "activation": activation,
            }
        )
    return {
        "inputs": (X if rows else X.T).tolist(),
        "targets": (Y if rows else Y.T).tolist(),
        "layers": layers,
        "loss": "mse",
        "convention": convention,
    }


def client_index(convention: str, name: str, index: tuple[int, int]) -> list[int]:
    """A canonical (sample, unit) or (n_in, n_out) index in the convention's own layout."""
    if name == "dW":
        return list(index) if convention == "numpy" else list(index[::-1])
    return list(index) if convention != "columns" else list(index[::-1])


def right_answer(client, convention: str) -> dict:
    body = problem(convention) | {"include": ["dz"]}
    response = client.post("/v1/gradients", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def changed(array: list, convention: str, name: str, changes: dict) -> list:
    """``array`` with entries (canonical index -> amount added) changed."""
    out = np.array(array)
    for index, amount in changes.items():
        out[tuple(client_index(convention, name, index))] += amount
    return out.tolist()


def check(client, convention: str, submission: dict, **options) -> dict:
    body = problem(convention) | {"submission": submission} | options
    response = client.post("/v1/check", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def two_wrong_entries(client, convention: str) -> dict:
    """layer 0's dW wrong at (0, 1) by 0.01 and at (2, 3) by 0.5; its dz wrong at (1, 2) by
    0.2 and at (4, 1) by -0.3; layer 1's dW and the loss right."""
    right = right_answer(client, convention)
    layer0, layer1 = right["layers"]
    return {
        "loss": right["loss"],
        "layers": [
            {
                "dz": changed(layer0["dz"], convention, "dz", {(1, 2): 0.2, (4, 1): -0.3}),
                "dW": changed(layer0["dW"], convention, "dW", {(0, 1): 0.01, (2, 3): 0.5}),
            },
            {"dW": layer1["dW"]},
        ],
    }


def by_field(answer: dict) -> dict:
    return {r["field"]: r for r in answer["results"]}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_two_wrong_entries_are_counted_and_the_worst_is_indexed_in_the_clients_layout(
    client, convention
):
    results = by_field(check(client, convention, two_wrong_entries(client, convention)))

    dW = results["layers.0.dW"]
    assert dW["passed"] is False
    assert (dW["mismatched"], dW["entries"]) == (2, 12)
    assert dW["worst_index"] == client_index(convention, "dW", (2, 3))
    assert dW["exact"] is False
    dz = results["layers.0.dz"]
    assert (dz["mismatched"], dz["entries"]) == (2, 20)
    assert dz["worst_index"] == client_index(convention, "dz", (4, 1))
    assert "submitted_value" not in dW and "expected_value" not in dW  # reveal is off


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_a_right_field_is_exact_with_none_mismatched_and_no_worst_index(client, convention):
    results = by_field(check(client, convention, two_wrong_entries(client, convention)))

    for path in ("loss", "layers.1.dW"):
        result = results[path]
        assert result["passed"] is True and result["exact"] is True
        assert result["mismatched"] == 0 and result["worst_index"] is None
    assert results["loss"]["entries"] == 1 and results["layers.1.dW"]["entries"] == 8


def test_an_entry_within_the_tolerance_is_not_exact_and_not_mismatched(client):
    right = right_answer(client, "numpy")
    dW = np.array(right["layers"][0]["dW"])
    nudged = dW * (1 + 1e-9)  # within rtol 1e-5: passes, but not the same float64
    off = dW.copy()
    off[1, 1] *= 1 + 1e-3  # outside rtol 1e-5, inside rtol 1e-2
    off[0, 0] *= 1 + 1e-9
    submission = {"layers": [{"dW": nudged.tolist()}, {"dW": right["layers"][1]["dW"]}]}

    nudged_result = check(client, "numpy", submission)["results"][0]
    assert nudged_result["passed"] is True and nudged_result["exact"] is False
    assert nudged_result["mismatched"] == 0 and nudged_result["worst_index"] is None

    submission["layers"][0]["dW"] = off.tolist()
    default = check(client, "numpy", submission)["results"][0]
    assert (default["mismatched"], default["worst_index"]) == (1, [1, 1])
    loose = check(client, "numpy", submission, tolerance={"rtol": 1e-2})["results"][0]
    assert loose["passed"] is True and loose["mismatched"] == 0  # the grader's own tolerance


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_reveal_adds_the_submitted_and_expected_value_at_the_worst_index(client, convention):
    submission = two_wrong_entries(client, convention)
    right = right_answer(client, convention)
    results = by_field(check(client, convention, submission, reveal=True))

    dW = results["layers.0.dW"]
    i, j = dW["worst_index"]
    assert dW["expected_value"] == right["layers"][0]["dW"][i][j]
    assert dW["submitted_value"] == submission["layers"][0]["dW"][i][j]
    assert dW["submitted_value"] - dW["expected_value"] == pytest.approx(0.5)
    assert "submitted_value" not in results["layers.1.dW"]  # a passing field has no worst


def test_an_accepted_flat_or_row_bias_is_indexed_as_it_was_sent(client):
    right = right_answer(client, "numpy")  # the problem's biases are flat (n,)
    db = np.array(right["layers"][0]["db"]).reshape(1, -1)
    db[0, 2] += 0.25
    db[0, 0] += 0.01
    submission = {"layers": [{"db": db.tolist()}, None]}
    result = check(client, "numpy", submission, reveal=True)["results"][0]

    assert result["submitted_shape"] == [1, 4] and result["expected_shape"] == [4]
    assert (result["mismatched"], result["entries"], result["worst_index"]) == (2, 4, [0, 2])
    assert result["expected_value"] == right["layers"][0]["db"][2]


def test_a_field_of_the_wrong_shape_has_no_entry_count_and_is_not_exact(client):
    right = right_answer(client, "numpy")
    dW = np.array(right["layers"][0]["dW"])
    submission = {"layers": [{"dW": dW.T.tolist()}, None]}
    result = check(client, "numpy", submission, reveal=True)["results"][0]

    assert result["diagnosis"] == "transposed"
    assert (result["mismatched"], result["entries"], result["worst_index"]) == (None, None, None)
    assert result["exact"] is False
    assert "submitted_value" not in result and "expected_value" not in result


def test_a_wrong_loss_is_one_entry_with_the_empty_index(client):
    right = right_answer(client, "torch")
    result = check(
        client, "torch", {"loss": right["loss"] + 0.125, "layers": [None, None]}, reveal=True
    )["results"][0]

    assert (result["mismatched"], result["entries"], result["worst_index"]) == (1, 1, [])
    assert result["exact"] is False
    assert result["expected_value"] == right["loss"]
    assert result["submitted_value"] == right["loss"] + 0.125


# -- the grading formats -----------------------------------------------------------------------


def sentence(result: dict) -> str:
    i, j = result["worst_index"]
    return (
        f"2 of 12 entries differ; worst at [{i}, {j}]: {result['submitted_value']:.10g} "
        f"submitted, {result['expected_value']:.10g} expected."
    )


@pytest.mark.parametrize("convention", ["numpy", "columns"])
def test_every_format_says_how_many_entries_differ_and_where_the_worst_is(client, convention):
    submission = two_wrong_entries(client, convention)
    revealed = by_field(check(client, convention, submission, reveal=True))["layers.0.dW"]
    said = sentence(revealed)
    hidden_values = said.split(":")[0] + "."  # without reveal: no values

    gradescope = check(client, convention, submission, format="gradescope", reveal=True)
    output = {t["name"]: t["output"] for t in gradescope["tests"]}["layers.0.dW"]
    assert output.endswith(f"\n\n{said}")
    plain = check(client, convention, submission, format="gradescope")
    assert {t["name"]: t["output"] for t in plain["tests"]}["layers.0.dW"].endswith(
        f"\n\n{hidden_values}"
    )

    prairielearn = check(client, convention, submission, format="prairielearn", reveal=True)
    message = {t["name"]: t["message"] for t in prairielearn["tests"]}["layers.0.dW"]
    assert said in message

    body = problem(convention) | {"submission": submission, "format": "junit", "reveal": True}
    suite = ET.fromstring(client.post("/v1/check", json=body).get_data(as_text=True))
    failure = suite.find("testcase[@name='layers.0.dW']/failure")
    assert said in failure.get("message") and said in failure.text


def test_a_hidden_field_withholds_which_entries_are_wrong_in_every_format(client):
    submission = two_wrong_entries(client, "torch")
    options = {"visibility": {"layers.0.dW": "hidden"}, "reveal": True}

    hidden = by_field(check(client, "torch", submission, **options))["layers.0.dW"]
    assert hidden["message"] == WITHHELD
    assert [hidden[k] for k in ("mismatched", "entries", "worst_index", "exact")] == [None] * 4
    assert "submitted_value" not in hidden and "expected_value" not in hidden
    for format, key in (("gradescope", "output"), ("prairielearn", "message")):
        document = check(client, "torch", submission, format=format, **options)
        assert {t["name"]: t[key] for t in document["tests"]}["layers.0.dW"] == WITHHELD
    body = problem("torch") | {"submission": submission, "format": "junit", **options}
    suite = ET.fromstring(client.post("/v1/check", json=body).get_data(as_text=True))
    assert "entries differ" not in ET.tostring(
        suite.find("testcase[@name='layers.0.dW']"), "unicode"
    )
    assert "entries differ" in ET.tostring(suite.find("testcase[@name='layers.0.dz']"), "unicode")


def test_the_batch_gives_each_student_the_same_entry_report_as_check(client):
    wrong = two_wrong_entries(client, "columns")
    body = problem("columns") | {
        "submissions": [{"student": "s1", "submission": wrong}],
        "reveal": True,
    }
    response = client.post("/v1/check/batch", json=body)
    assert response.status_code == 200, response.get_json()
    entry = response.get_json()["results"][0]
    single = check(client, "columns", wrong, reveal=True)
    assert entry["results"] == single["results"]
    assert by_field(entry)["layers.0.dW"]["worst_index"] == client_index("columns", "dW", (2, 3))


def test_the_cli_check_prints_the_entry_report(client, tmp_path, capsysbinary, access_log_kept):  # noqa: F811
    (tmp_path / "problem.json").write_text(json.dumps(problem("numpy")))
    (tmp_path / "submission.json").write_text(json.dumps(two_wrong_entries(client, "numpy")))
    paths = [str(tmp_path / "problem.json"), str(tmp_path / "submission.json")]
    capsysbinary.readouterr()  # the access log of the requests above

    assert cli_main(["check", *paths, "--reveal"]) == 0
    result = by_field(json.loads(capsysbinary.readouterr().out))["layers.0.dW"]
    assert (result["mismatched"], result["entries"], result["worst_index"]) == (2, 12, [2, 3])
    assert "submitted_value" in result

    assert cli_main(["check", *paths, "--format", "junit"]) == 0
    text = capsysbinary.readouterr().out.decode()
    assert "2 of 12 entries differ; worst at [2, 3]." in text


def test_the_openapi_documents_the_entry_report(client):
    document = client.get("/openapi.json").get_json()
    result = document["components"]["schemas"]["FieldResult"]
    assert {"mismatched", "entries", "worst_index", "exact"} <= set(result["required"])
    for name in ("mismatched", "entries", "worst_index", "exact", "submitted_value"):
        assert result["properties"][name]["description"]


def test_mismatched_entries_are_exactly_those_that_fail_the_graders_tolerance():
    """Tolerance.within, entry by entry, is what Tolerance.close answers for the whole,
    infinities in the answer (where close defers to np.allclose) included."""
    from service.core.submission import Tolerance

    rng = np.random.default_rng(6)
    expected = rng.normal(size=(40, 7))
    expected[3, 3], expected[5, 1] = np.inf, -np.inf
    for tolerance in (Tolerance(), Tolerance(rtol=1e-2, atol=0.0), Tolerance(rtol=0, atol=0.5)):
        submitted = expected * (1 + rng.choice([0, 1e-9, 1e-3, 0.5], size=expected.shape))
        submitted[5, 1] = np.inf  # an infinity of the other sign: mismatched
        within = tolerance.within(submitted, expected)
        assert within.shape == expected.shape and not within[5, 1] and within[3, 3]
        assert bool(within.all()) == tolerance.close(submitted, expected)
        finite = np.isfinite(expected)
        for i, j in zip(*np.nonzero(finite)):
            one = tolerance.close(submitted[i : i + 1, j], expected[i : i + 1, j])
            assert bool(within[i, j]) == one
        assert tolerance.close(submitted[within], expected[within])
