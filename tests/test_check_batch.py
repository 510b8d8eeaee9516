"""POST /v1/check/batch: a whole class in one call, each result what /v1/check answers for it.

The wrong submissions are written here from the right answer (from /v1/gradients) the way
students get them wrong: a transposed dW, a db not summed over the batch, a gradient
divided by the batch size when the reduction is a sum, every sign flipped.  The broken
ones are broken the ways a student's file is: strings, ragged arrays, a wrong number of
layer entries, an unknown field.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from schemas import GradientsRequestSchema
from service import create_app
from service.cli import main as cli
from service.core import Limits
from service.core.mistakes import passes_needed
from service.core.submission import Tolerance

PROBLEM = {
    "inputs": [[0.5, -1.0, 0.3], [1.5, 2.0, -0.7], [-0.2, 0.4, 1.1], [0.9, -1.3, 0.6]],
    "targets": [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0]],
    "layers": [
        {
            "weights": [[0.1, -0.2, 0.3, 0.2], [0.4, 0.5, -0.6, 0.1], [-0.3, 0.2, 0.7, -0.5]],
            "biases": [[0.0, 0.1, -0.1, 0.2]],
            "activation": "tanh",
        },
        {
            "weights": [[0.7, -0.1], [-0.8, 0.3], [0.9, 0.2], [0.1, -0.4]],
            "biases": [[0.2, -0.3]],
            "activation": "sigmoid",
        },
    ],
    "loss": "half_mse",
    "reduction": "sum",
}
BATCH = len(PROBLEM["inputs"])


@pytest.fixture(scope="module")
def right() -> dict:
    """The right loss, dW and db of every layer, as lists in the problem's layout."""
    response = create_app({"TESTING": True}).test_client().post("/v1/gradients", json=PROBLEM)
    assert response.status_code == 200
    return response.get_json()


def submission(right: dict, alter=lambda name, value: value, loss: bool = True) -> dict:
    layers = [
        {name: alter(name, np.array(layer[name])).tolist() for name in ("dW", "db")}
        for layer in right["layers"]
    ]
    return {"loss": right["loss"], "layers": layers} if loss else {"layers": layers}


def students(right: dict) -> dict[str, object]:
    """student -> submission: right, wrong in the usual ways, and broken."""
    return {
        "right": submission(right),
        "transposed": submission(right, lambda n, v: v.T if n == "dW" else v, loss=False),
        "not_reduced": submission(
            right, lambda n, v: np.repeat(v, BATCH, axis=0) / BATCH if n == "db" else v
        ),
        "averaged": submission(right, lambda n, v: v / BATCH),
        "sign_flipped": submission(right, lambda n, v: -v, loss=False),
        "only_loss": {"loss": right["loss"] * 2, "layers": [None, None]},
        "strings": {"layers": [{"dW": "my answer"}, None]},
        "ragged": {"layers": [None, {"db": [[0.1, 0.2], [0.3]]}]},
        "one_entry": {"layers": [{"db": [[0.0, 0.0, 0.0, 0.0]]}]},
        "unknown_field": {"layers": [None, {"dB": [[0.1, 0.2]]}]},
        "nothing": {"layers": [None, None]},
        "not_an_object": [1, 2, 3],
    }


BROKEN = ("strings", "ragged", "one_entry", "unknown_field", "nothing", "not_an_object")


def batch_body(submissions: dict[str, object], **options) -> dict:
    entries = [{"student": s, "submission": value} for s, value in submissions.items()]
    return {**PROBLEM, **options, "submissions": entries}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reveal": True},
        {"format": "gradescope"},
        {"format": "prairielearn"},
        {"tolerance": {"rtol": 0.5, "atol": 0}},
        {"points": {"dW": 2, "layers.1.db": 3}, "partial_credit": "propagated"},
        {"format": "gradescope", "visibility": {"db": "hidden"}},
    ],
    ids=["json", "reveal", "gradescope", "prairielearn", "loose-tolerance", "points", "hidden"],
)
def test_each_batch_result_is_the_single_check_answer_plus_its_student(client, right, options):
    """In an autograder format a single check grades a broken submission too (score 0),
    so every entry, broken or not, is what /v1/check answers for it."""
    everyone = students(right)
    autograder = options.get("format") in ("gradescope", "prairielearn")
    gradable = {s: v for s, v in everyone.items() if autograder or s not in BROKEN}

    response = client.post("/v1/check/batch", json=batch_body(everyone, **options))

    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["student"] for r in results] == list(everyone)
    for result, (student, value) in zip(results, everyone.items()):
        if student not in gradable:
            continue
        single = client.post("/v1/check", json={**PROBLEM, **options, "submission": value})
        assert single.status_code == 200
        assert result == {"student": student, **single.get_json()}


def test_the_batch_names_the_mistakes_a_single_check_names(client, right):
    response = client.post("/v1/check/batch", json=batch_body(students(right)))

    diagnoses = {
        r["student"]: sorted({f["diagnosis"] for f in r["results"] if f["diagnosis"]})
        for r in response.get_json()["results"]
    }
    assert diagnoses["right"] == []
    assert diagnoses["transposed"] == ["transposed"]
    assert diagnoses["not_reduced"] == ["not_reduced_over_batch"]
    assert diagnoses["averaged"] == ["averaged_instead_of_summed"]
    assert diagnoses["sign_flipped"] == ["sign_flipped"]


@pytest.mark.parametrize("student", BROKEN)
def test_a_broken_submission_scores_zero_naming_what_a_single_check_refuses(client, right, student):
    everyone = students(right)

    response = client.post("/v1/check/batch", json=batch_body(everyone))

    assert response.status_code == 200
    result = next(r for r in response.get_json()["results"] if r["student"] == student)
    single = client.post("/v1/check", json={**PROBLEM, "submission": everyone[student]})
    assert single.status_code == 422
    refused = single.get_json()
    assert result == {
        "student": student,
        "passed": False,
        "score": 0.0,
        "checked": 0,
        "correct": 0,
        "results": [],
        "detail": f"the submission could not be graded: {refused['detail']}",
        "errors": refused["errors"],
    }
    # the others are graded all the same
    assert next(r for r in response.get_json()["results"] if r["student"] == "right")["passed"]


def test_a_junit_batch_is_one_testsuites_document_with_a_suite_per_student(client, right):
    import xml.etree.ElementTree as ET

    everyone = students(right)
    response = client.post("/v1/check/batch", json=batch_body(everyone, format="junit"))

    assert response.status_code == 200 and response.mimetype == "application/xml"
    suites = ET.fromstring(response.get_data(as_text=True))
    assert suites.tag == "testsuites"
    assert [suite.get("name") for suite in suites] == list(everyone)
    broken = [suite for suite in suites if suite.get("name") in BROKEN]
    assert broken and all(int(suite.get("failures")) >= 1 for suite in broken)


def test_a_broken_submission_with_many_problems_names_at_most_ten(client):
    many = {"layers": [{name: "x" for name in ("z", "a", "dz", "dx", "dW", "db")}] * 2}

    result = client.post("/v1/check/batch", json=batch_body({"s": many})).get_json()["results"]

    assert len(result[0]["errors"]) == 10
    assert result[0]["detail"].endswith("(and 11 more field(s); see errors)")


def test_the_reference_and_every_mistaken_pass_are_computed_once_for_the_class(
    client, right, monkeypatch
):
    import service.grading.grader as grading

    forwards, passes = [], []
    real_forward, real_variants = grading.forward, grading.variants

    def counted_forward(*args, **kwargs):
        forwards.append(1)
        return real_forward(*args, **kwargs)

    def counted_variants(*args, **kwargs):
        for variant in real_variants(*args, **kwargs):
            passes.append((variant.code, variant.layers))
            yield variant

    monkeypatch.setattr(grading, "forward", counted_forward)
    monkeypatch.setattr(grading, "variants", counted_variants)
    # a submission no mistake explains runs through the whole catalogue once
    nonsense = submission(right, lambda n, v: v + 1.0)
    assert client.post("/v1/check", json={**PROBLEM, "submission": nonsense}).status_code == 200
    catalogue = len(passes)
    assert 0 < catalogue <= passes_needed(GradientsRequestSchema().load(PROBLEM).problem)
    forwards.clear()
    passes.clear()
    wrong = {s: v for s, v in students(right).items() if s not in BROKEN and s != "right"}
    many = {f"{s}-{k}": v for k in range(20) for s, v in {**wrong, "nonsense": nonsense}.items()}

    response = client.post("/v1/check/batch", json=batch_body(many))

    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 120
    assert len(forwards) == 1
    assert len(passes) == catalogue  # not 120 times over


def test_over_the_configured_number_of_submissions_is_refused_naming_the_setting(right):
    client = create_app({"TESTING": True, "GRADIENT_LIMITS": Limits(max_batch_submissions=3)})
    body = batch_body({f"s{k}": submission(right) for k in range(4)})

    response = client.test_client().post("/v1/check/batch", json=body)

    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "submissions": [
            "got 4 submissions, over this service's limit of 3 per call "
            "(GRADIENT_MAX_BATCH_SUBMISSIONS); split the class over several calls."
        ]
    }


def test_the_setting_is_read_from_the_environment_and_bounded(monkeypatch):
    from service.config import Config

    assert Config.from_env({})["GRADIENT_LIMITS"].max_batch_submissions == 2000
    settings = Config.from_env({"GRADIENT_MAX_BATCH_SUBMISSIONS": "50"})
    assert settings["GRADIENT_LIMITS"].max_batch_submissions == 50
    with pytest.raises(ValueError, match="at most 20,000"):
        Config.from_env({"GRADIENT_MAX_BATCH_SUBMISSIONS": "20001"})


def test_the_whole_batch_is_priced_before_anything_runs(right, monkeypatch):
    import service.grading.grader as grading

    monkeypatch.setattr(grading, "forward", lambda *a, **k: pytest.fail("computed"))
    # one submission's answer fits in 16 MiB; 1,000 of them (about 2 KiB a field) do not (the
    # parse of their 0.6 MB body, about 11 MiB, does: under 16 MiB its census refuses it first)
    limits = Limits(max_request_bytes=16 * 2**20)
    app = create_app({"TESTING": True, "GRADIENT_LIMITS": limits})
    body = batch_body({f"s{k}": submission(right) for k in range(1000)})

    response = app.test_client().post("/v1/check/batch", json=body)

    assert response.status_code == 422
    assert "the answer" in response.get_json()["detail"]


def test_the_time_budget_covers_the_whole_batch(right, monkeypatch):
    import time

    import service.grading

    real = service.grading.Grader.grade

    def slow(*args):
        time.sleep(0.05)
        return real(*args)

    monkeypatch.setattr(service.grading.Grader, "grade", slow)
    app = create_app({"TESTING": True, "GRADIENT_TIME_BUDGET_SECONDS": 0.5})
    body = batch_body({f"s{k}": submission(right) for k in range(40)})  # 2 s of sleeping

    started = time.monotonic()
    response = app.test_client().post("/v1/check/batch", json=body)

    assert response.status_code == 422
    assert "time budget of 0.5 s" in response.get_json()["detail"]
    assert time.monotonic() - started < 1.5


def test_every_batch_is_metered_against_the_compute_budget_even_a_small_one(right, monkeypatch):
    from service.operations.ratelimit import RateLimit

    metered = []
    monkeypatch.setattr(RateLimit, "start_metering", lambda self: metered.append(1))
    app = create_app({"TESTING": True})

    response = app.test_client().post("/v1/check/batch", json=batch_body({"s": submission(right)}))

    assert response.status_code == 200
    assert metered == [1]


def test_an_entry_without_a_student_is_the_instructors_error_and_refused(client, right):
    body = {**PROBLEM, "submissions": [{"submission": submission(right)}]}

    response = client.post("/v1/check/batch", json=body)

    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["submissions.0.student"]


def test_a_broken_problem_is_refused_as_for_a_single_check(client, right):
    body = batch_body({"s": submission(right)})
    body["layers"] = [*body["layers"][:1], {**body["layers"][1], "weights": [[0.7, -0.1]]}]

    response = client.post("/v1/check/batch", json=body)

    assert response.status_code == 422
    assert "layers.1.weights" in response.get_json()["errors"]


@pytest.fixture
def cli_in_process(monkeypatch):
    """The CLI in this process silences the access log (its stdout is the answer): put it
    back for the tests that run after."""
    monkeypatch.setattr(logging.getLogger("gradient.access"), "disabled", False)
    return cli


def test_the_cli_grades_a_folder_one_student_per_file(tmp_path, right, capsys, cli_in_process):
    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps(PROBLEM))
    folder = tmp_path / "submissions"
    folder.mkdir()
    everyone = students(right)
    for student in ("right", "transposed", "ragged"):
        (folder / f"{student}.json").write_text(json.dumps(everyone[student]))
    (folder / "garbled.json").write_text("{not json")

    status = cli_in_process(["check-batch", str(problem), str(folder)])

    assert status == 0
    answer = json.loads(capsys.readouterr().out)
    assert [r["student"] for r in answer["results"]] == ["garbled", "ragged", "right", "transposed"]
    expected = (
        create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
        .test_client()
        .post(
            "/v1/check/batch",
            json=batch_body(
                {
                    "garbled": "{not json",
                    "ragged": everyone["ragged"],
                    "right": everyone["right"],
                    "transposed": everyone["transposed"],
                }
            ),
        )
    )
    assert answer == expected.get_json()
    assert answer["results"][0]["detail"] == (
        "the submission could not be graded: submission: expected a JSON object."
    )


def test_the_cli_says_when_the_folder_has_no_submissions(tmp_path, capsys, cli_in_process):
    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps(PROBLEM))

    status = cli_in_process(["check-batch", str(problem), str(tmp_path / "missing")])

    assert status == 2
    assert "expected a folder of submission files" in capsys.readouterr().err


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "submitted, expected",
    [
        ([1.0, 2.0], [1.0, 2.0 + 1e-6]),
        ([1.0, 2.0], [1.0, 2.1]),
        ([INF, 1.0], [INF, 1.0]),
        ([-INF, 1.0], [INF, 1.0]),
        ([1e308, 1.0], [INF, 1.0]),
        ([INF, 1.0], [1e308, 1.0]),
        ([NAN, 1.0], [NAN, 1.0]),
        ([NAN, 1.0], [1.0, 1.0]),
        ([-1e308, 0.0], [1e308, 0.0]),
        ([[1.0, 2.0]], [1.0, 2.0]),
        (0.0, 1e-9),
    ],
)
def test_the_fast_tolerance_answers_what_numpy_allclose_answers(submitted, expected):
    tolerance = Tolerance(rtol=1e-5, atol=1e-8)
    submitted, expected = np.array(submitted), np.array(expected)

    with np.errstate(all="ignore"):
        reference = np.allclose(submitted, expected, 1e-5, 1e-8)
    assert tolerance.close(submitted, expected) == reference
