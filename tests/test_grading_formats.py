"""/v1/check's formats for graders (Gradescope, PrairieLearn, JUnit), always gradable, points,
partial credit and visibility (issue 16).

The problem is examples/problem.json (2-2-1, sigmoid, half squared error, summed); the
student's arrays are computed here by hand, in NumPy, the way a student writes them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from schemas import CheckRequestSchema
from schemas.check import SubmittedLayerSchema
from schemas.grading_options import GRADED_NAMES
from service.cli import main as cli_main
from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Grader
from service.grading_formats import WITHHELD, junit_testsuites, render
from tests.conftest import BIN, ROOT

PROBLEM = json.loads((ROOT / "examples" / "problem.json").read_text())

#: Gradescope's results.json (its autograder specification), as the issue lists it
GRADESCOPE_KEYS = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
}
GRADESCOPE_TEST_KEYS = {
    "name",
    "number",
    "score",
    "max_score",
    "status",
    "output",
    "output_format",
    "tags",
    "visibility",
}
#: PrairieLearn's external grader results.json
PRAIRIELEARN_KEYS = {"gradable", "score", "message", "output", "format_errors", "tests"}
PRAIRIELEARN_TEST_KEYS = {"name", "description", "points", "max_points", "message", "output"}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def student(seed_bug: bool = False) -> dict:
    """The backward pass of PROBLEM; with ``seed_bug`` the output layer's dz is written
    dh2 * (1 - dh2), the derivative applied to the error (made in layer 1 only)."""
    x, y = np.array(PROBLEM["inputs"]), np.array(PROBLEM["targets"])
    (W1, b1), (W2, b2) = (
        (np.array(layer["weights"]), np.array(layer["biases"])) for layer in PROBLEM["layers"]
    )
    a1 = sigmoid(x @ W1 + b1)
    a2 = sigmoid(a1 @ W2 + b2)
    dh2 = a2 - y
    dz2 = dh2 * (1 - dh2) if seed_bug else dh2 * a2 * (1 - a2)
    dz1 = (dz2 @ W2.T) * a1 * (1 - a1)
    layers = [
        {"dW": x.T @ dz1, "db": dz1.sum(axis=0, keepdims=True)},
        {"dz": dz2, "dW": a1.T @ dz2, "db": dz2.sum(axis=0, keepdims=True)},
    ]
    return {
        "loss": float(0.5 * np.sum(dh2**2)),
        "layers": [{k: v.tolist() for k, v in layer.items()} for layer in layers],
    }


def post(client, submission, **options):
    return client.post("/v1/check", json={**PROBLEM, "submission": submission, **options})


# -- the formats -------------------------------------------------------------------------------


def test_gradescope_answers_the_whole_results_json_with_numbers_tags_and_points(client):
    response = post(client, student(seed_bug=True), format="gradescope", points={"dW": 2})

    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == GRADESCOPE_KEYS
    assert body["output_format"] == "md" and body["visibility"] == "visible"
    assert body["stdout_visibility"] == "hidden"
    assert isinstance(body["execution_time"], (int, float)) and body["execution_time"] >= 0
    tests = body["tests"]
    assert all(set(test) == GRADESCOPE_TEST_KEYS for test in tests)
    assert [(t["name"], t["number"], t["max_score"]) for t in tests] == [
        ("loss", "0.1", 1),
        ("layers.0.dW", "1.1", 2),
        ("layers.0.db", "1.2", 1),
        ("layers.1.dz", "2.1", 1),
        ("layers.1.dW", "2.2", 2),
        ("layers.1.db", "2.3", 1),
    ]
    assert tests[0]["status"] == "passed" and tests[0]["tags"] == [] and tests[0]["score"] == 1
    for test in tests[1:]:
        assert test["status"] == "failed" and test["score"] == 0
        assert test["tags"] == ["derivative_of_error"]
        assert test["output"].startswith("[derivative_of_error] ")
        assert test["output_format"] == "md" and test["visibility"] == "visible"
    assert body["score"] == 1
    assert body["output"] == "**1 of 6** checked fields are correct: 1 of 8 points."
    assert body["extra_data"] == {
        "checked": 6,
        "correct": 1,
        "max_points": 8,
        "credited_as_propagated": [],
    }


def test_prairielearn_answers_its_results_json_with_a_score_from_0_to_1(client):
    response = post(client, student(seed_bug=True), format="prairielearn", points={"loss": 3})

    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == PRAIRIELEARN_KEYS
    assert body["gradable"] is True and body["format_errors"] == {}
    assert body["score"] == pytest.approx(3 / 8)
    assert body["message"] == "1 of 6 checked fields are correct: 3 of 8 points."
    tests = body["tests"]
    assert all(set(test) == PRAIRIELEARN_TEST_KEYS for test in tests)
    assert [(t["name"], t["description"], t["points"], t["max_points"]) for t in tests] == [
        ("loss", "the loss", 3, 3),
        ("layers.0.dW", "dW of layer 0", 0, 1),
        ("layers.0.db", "db of layer 0", 0, 1),
        ("layers.1.dz", "dz of layer 1", 0, 1),
        ("layers.1.dW", "dW of layer 1", 0, 1),
        ("layers.1.db", "db of layer 1", 0, 1),
    ]
    assert tests[0]["message"] == "Correct."
    assert tests[3]["message"].startswith("[derivative_of_error] ")
    assert tests[3]["output"].startswith("shape (2, 1); max abs error ")
    assert body["output"].splitlines()[0] == "loss: 3/3"


def test_junit_answers_a_testsuite_of_application_xml_with_a_failure_per_wrong_field(client):
    response = post(client, student(seed_bug=True), format="junit")

    assert response.status_code == 200 and response.mimetype == "application/xml"
    suite = ET.fromstring(response.get_data(as_text=True))
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "5", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "loss",
        "layers.0.dW",
        "layers.0.db",
        "layers.1.dz",
        "layers.1.dW",
        "layers.1.db",
    ]
    assert cases[0].find("failure") is None
    for case in cases[1:]:
        failure = case.find("failure")
        assert failure.get("type") == "derivative_of_error"
        assert failure.get("message").startswith("[derivative_of_error] ")
        assert failure.text.startswith(failure.get("message"))
    assert "propagated back to layer 0" in cases[1].find("failure").get("message")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {"score": "0.166667", "points": "1", "max_points": "6"}


def test_without_format_the_answer_is_todays_json_with_no_points_fields(client):
    body = post(client, student(seed_bug=True)).get_json()
    assert set(body) == {"passed", "score", "checked", "correct", "results"}
    assert set(body["results"][1]) == {
        "field",
        "passed",
        "expected_shape",
        "submitted_shape",
        "max_abs_error",
        "max_rel_error",
        "diagnosis",
        "message",
        "mismatched",
        "entries",
        "worst_index",
        "exact",
    }
    assert body["score"] == pytest.approx(1 / 6)


def test_a_right_submission_earns_every_point_in_every_format(client):
    right = student()
    assert post(client, right, format="gradescope").get_json()["score"] == 6
    assert post(client, right, format="prairielearn").get_json()["score"] == 1
    suite = ET.fromstring(post(client, right, format="junit").get_data(as_text=True))
    assert suite.get("failures") == "0" and not list(suite.iter("failure"))


# -- always gradable ---------------------------------------------------------------------------

BROKEN = {
    "ragged-array": (
        {"layers": [{"dW": [[0.1, 0.2], [0.3]]}, None]},
        "submission.layers.0.dW",
    ),
    "string-in-array": ({"layers": [None, {"db": [0.1, "0.2"]}]}, "submission.layers.1.db"),
    "one-of-two-layers": ({"layers": [None]}, "submission.layers"),
    "three-of-two-layers": ({"layers": [None, None, None]}, "submission.layers"),
    "unknown-field-name": ({"layers": [{"grad_W": [[0.1]]}, None]}, "submission.layers.0.grad_W"),
    "only-null-layers": ({"layers": [None, None]}, "submission"),
    "loss-as-string": ({"loss": "0.5", "layers": [None, None]}, "submission.loss"),
}


@pytest.mark.parametrize(("submission", "path"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_submission_is_a_prairielearn_grade_of_0_that_is_not_gradable(
    client, submission, path
):
    response = post(client, submission, format="prairielearn")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == PRAIRIELEARN_KEYS
    assert (body["gradable"], body["score"], body["tests"]) == (False, 0, [])
    assert path in body["format_errors"], body["format_errors"]
    assert path in body["output"]


@pytest.mark.parametrize(("submission", "path"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_submission_is_a_failed_gradescope_test_naming_the_problem(
    client, submission, path
):
    body = post(client, submission, format="gradescope").get_json()

    assert set(body) == GRADESCOPE_KEYS and body["score"] == 0
    [test] = body["tests"]
    assert set(test) - {"number"} == GRADESCOPE_TEST_KEYS - {"number"}
    assert test["status"] == "failed" and test["tags"] == ["format_error"]
    assert f"`{path}`" in test["output"] and f"`{path}`" in body["output"]
    assert body["extra_data"]["gradable"] is False


@pytest.mark.parametrize(("submission", "path"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_submission_is_a_junit_failure_naming_the_problem(client, submission, path):
    response = post(client, submission, format="junit")

    assert response.status_code == 200 and response.mimetype == "application/xml"
    suite = ET.fromstring(response.get_data(as_text=True))
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    failure = suite.find("testcase/failure")
    assert failure.get("type") == "format_error" and path in failure.text


@pytest.mark.parametrize(("submission", "path"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_submission_stays_a_422_in_the_json_format(client, submission, path):
    response = post(client, submission, format="json")
    assert response.status_code == 422
    assert path in response.get_json()["errors"]


def test_a_db_for_a_layer_without_bias_is_graded_as_broken_with_a_format(client):
    problem = {
        **PROBLEM,
        "layers": [{**PROBLEM["layers"][0], "biases": None}, PROBLEM["layers"][1]],
    }
    request = {**problem, "submission": {"layers": [{"db": [[0.0, 0.0]]}, None]}}
    body = client.post("/v1/check", json={**request, "format": "prairielearn"}).get_json()
    assert body["gradable"] is False
    assert "layer 0 has no bias" in body["format_errors"]["submission.layers.0.db"]


@pytest.mark.parametrize("format", ["gradescope", "prairielearn", "junit"])
def test_a_mistake_in_the_instructors_problem_stays_a_422(client, format):
    problem = {**PROBLEM, "layers": [{**PROBLEM["layers"][0], "activation": "sigmod"}]}
    response = client.post(
        "/v1/check", json={**problem, "submission": {"layers": [None]}, "format": format}
    )
    assert response.status_code == 422
    assert "layers.0.activation" in response.get_json()["errors"]


def test_a_broken_submission_with_thousands_of_errors_is_answered_bounded(client):
    layer = {f"grad_{i}": [0.0] for i in range(10_000)}
    body = post(client, {"layers": [layer, None]}, format="prairielearn").get_json()
    assert body["gradable"] is False
    assert len(body["format_errors"]) <= 50
    assert body["output"].endswith("more")
    assert len(json.dumps(body)) < 50_000


# -- points ------------------------------------------------------------------------------------


def test_points_by_path_beat_points_by_name_and_the_score_is_the_weighted_fraction(client):
    points = {"dW": 2, "layers.1.dW": 5, "loss": 0}
    body = post(client, student(seed_bug=True), points=points).get_json()

    worth = {r["field"]: r["max_points"] for r in body["results"]}
    assert worth == {
        "loss": 0,
        "layers.0.dW": 2,
        "layers.0.db": 1,
        "layers.1.dz": 1,
        "layers.1.dW": 5,
        "layers.1.db": 1,
    }
    assert (body["points"], body["max_points"], body["score"]) == (0, 10, 0)
    assert body["correct"] == 1 and body["checked"] == 6
    assert all(r["credit"] in ("full", "none") for r in body["results"])

    right = post(client, student(), points=points).get_json()
    assert (right["points"], right["max_points"], right["score"]) == (10, 10, 1)


def test_points_follow_into_gradescope_max_score_and_prairielearn_max_points(client):
    points = {"layers.0.db": 4}
    gradescope = post(client, student(), format="gradescope", points=points).get_json()
    prairielearn = post(client, student(), format="prairielearn", points=points).get_json()
    assert {t["name"]: t["max_score"] for t in gradescope["tests"]}["layers.0.db"] == 4
    assert {t["name"]: t["max_points"] for t in prairielearn["tests"]}["layers.0.db"] == 4
    assert gradescope["score"] == 9 and prairielearn["score"] == 1


@pytest.mark.parametrize(
    ("options", "path", "fragment"),
    [
        ({"points": {"dw": 1}}, "points.dw", "unknown field name or path 'dw'"),
        ({"points": {"layers.2.dW": 1}}, "points.layers.2.dW", "the problem has 2 layer(s)"),
        ({"points": {"layers.².dW": 1}}, "points.layers.².dW", "unknown field name or path"),
        (
            {"visibility": {f"layers.{'9' * 5000}.db": "hidden"}},
            f"visibility.layers.{'9' * 5000}.db",
            "names a layer past the last",
        ),
        ({"points": {"dW": -1}}, "points.dW.value", "greater than or equal to 0"),
        ({"visibility": {"dW": "secret"}}, "visibility.dW.value", "unknown visibility 'secret'"),
        ({"partial_credit": "some"}, "partial_credit", "unknown partial_credit 'some'"),
        ({"propagated_credit": 1.5}, "propagated_credit", "less than or equal to 1"),
    ],
)
def test_invalid_scoring_options_are_a_422_naming_the_option(client, options, path, fragment):
    response = post(client, student(), format="gradescope", **options)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    [(path_shown, messages)] = errors.items()
    assert path_shown == path if len(path) < 200 else path_shown.endswith("(5,010 characters)")
    assert fragment in " ".join(messages) and len(" ".join(messages)) < 1000


# -- partial credit ----------------------------------------------------------------------------


def test_propagated_credit_goes_to_the_fields_wrong_only_through_a_later_layers_mistake(client):
    body = post(client, student(seed_bug=True), partial_credit="propagated").get_json()

    credit = {r["field"]: (r["credit"], r["points"]) for r in body["results"]}
    assert credit == {
        "loss": ("full", 1),
        "layers.0.dW": ("propagated", 0.5),
        "layers.0.db": ("propagated", 0.5),
        "layers.1.dz": ("none", 0),
        "layers.1.dW": ("none", 0),
        "layers.1.db": ("none", 0),
    }
    assert body["credited_as_propagated"] == ["layers.0.dW", "layers.0.db"]
    assert (body["points"], body["max_points"]) == (2, 6)
    assert body["score"] == pytest.approx(2 / 6)


def test_the_propagated_credit_fraction_is_the_requests_and_each_format_says_so(client):
    options = {"partial_credit": "propagated", "propagated_credit": 0.25}
    gradescope = post(client, student(seed_bug=True), format="gradescope", **options).get_json()
    assert gradescope["score"] == 1.5
    tests = {t["name"]: t for t in gradescope["tests"]}
    assert tests["layers.0.dW"]["score"] == 0.25
    assert "credited 0.25 of its points" in tests["layers.0.dW"]["output"]
    assert "credited" not in tests["layers.1.dW"]["output"]
    assert "`layers.0.dW`, `layers.0.db`" in gradescope["output"]
    assert gradescope["extra_data"]["credited_as_propagated"] == ["layers.0.dW", "layers.0.db"]
    prairielearn = post(client, student(seed_bug=True), format="prairielearn", **options)
    assert prairielearn.get_json()["score"] == pytest.approx(1.5 / 6)


def test_without_partial_credit_a_propagated_mistake_earns_nothing(client):
    body = post(client, student(seed_bug=True), format="gradescope").get_json()
    assert {t["name"]: t["score"] for t in body["tests"]}["layers.0.dW"] == 0


# -- visibility --------------------------------------------------------------------------------


def test_a_hidden_field_counts_but_its_message_is_withheld_in_every_format(client):
    options = {"visibility": {"layers.1.dW": "hidden"}, "partial_credit": "none"}
    bug = student(seed_bug=True)

    body = post(client, bug, reveal=True, **options).get_json()
    hidden = {r["field"]: r for r in body["results"]}["layers.1.dW"]
    assert hidden["message"] == WITHHELD and hidden["diagnosis"] is None
    assert "expected" not in hidden and hidden["max_abs_error"] is None
    assert (hidden["max_points"], hidden["visibility"]) == (1, "hidden")
    assert body["max_points"] == 6

    gradescope = post(client, bug, format="gradescope", **options).get_json()
    test = {t["name"]: t for t in gradescope["tests"]}["layers.1.dW"]
    assert (test["output"], test["tags"], test["visibility"]) == (WITHHELD, [], "hidden")
    assert test["max_score"] == 1 and test["status"] == "failed"

    prairielearn = post(client, bug, format="prairielearn", **options).get_json()
    test = {t["name"]: t for t in prairielearn["tests"]}["layers.1.dW"]
    assert (test["message"], test["output"], test["max_points"]) == (WITHHELD, "", 1)

    suite = ET.fromstring(post(client, bug, format="junit", **options).get_data(as_text=True))
    failure = suite.find("testcase[@name='layers.1.dW']/failure")
    assert failure.get("message") == WITHHELD and failure.text == WITHHELD
    assert "derivative_of_error" not in ET.tostring(
        suite.find("testcase[@name='layers.1.dW']"), "unicode"
    )


def test_after_due_date_is_left_to_gradescope_and_withheld_where_a_format_cannot_delay(client):
    options = {"visibility": {"db": "after_due_date"}}
    bug = student(seed_bug=True)
    gradescope = post(client, bug, format="gradescope", **options).get_json()
    test = {t["name"]: t for t in gradescope["tests"]}["layers.1.db"]
    assert test["visibility"] == "after_due_date"
    assert test["output"].startswith("[derivative_of_error] ")
    prairielearn = post(client, bug, format="prairielearn", **options).get_json()
    assert {t["name"]: t for t in prairielearn["tests"]}["layers.1.db"]["message"] == WITHHELD


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def access_log_kept():
    """The CLI's in-process run silences the access log (stdout carries only the answer):
    give it back to the tests that read it."""
    access = logging.getLogger("gradient.access")
    disabled = access.disabled
    yield
    access.disabled = disabled


def test_the_cli_prints_each_format_in_process(tmp_path, capsysbinary, access_log_kept):
    for format, check in [
        ("gradescope", lambda text: set(json.loads(text)) == GRADESCOPE_KEYS),
        ("prairielearn", lambda text: json.loads(text)["score"] == 1),
        ("junit", lambda text: ET.fromstring(text).get("failures") == "0"),
    ]:
        submitted = tmp_path / "submission.json"
        submitted.write_text(json.dumps(student()))
        code = cli_main(
            ["check", str(ROOT / "examples" / "problem.json"), str(submitted), "--format", format]
        )
        text = capsysbinary.readouterr().out.decode()
        assert code == 0 and check(text), text


def test_the_cli_grades_a_broken_submission_as_0_and_exits_0_with_a_format(
    tmp_path, capsysbinary, access_log_kept
):
    submitted = tmp_path / "submission.json"
    submitted.write_text(json.dumps({"layers": [{"dW": [[1.0], [2.0, 3.0]]}, None]}))
    problem = str(ROOT / "examples" / "problem.json")
    assert cli_main(["check", problem, str(submitted), "--format", "prairielearn"]) == 0
    body = json.loads(capsysbinary.readouterr().out)
    assert body["gradable"] is False and "submission.layers.0.dW" in body["format_errors"]
    assert cli_main(["check", problem, str(submitted)]) == 2


def test_junit_testsuites_hold_a_suite_per_student_for_a_batch(client):
    """The helper /v1/check/batch uses for junit: one document, a testsuite per student."""
    graded = post(client, student(seed_bug=True), format="junit").get_data(as_text=True)
    options = GradingOptions(format="junit")
    broken = UngradableSubmission({"submission.layers": ["got 1 entries, expected 2."]})
    report = _report_of(student(seed_bug=True))
    document = ET.fromstring(junit_testsuites([("s1", report, 0.0), ("s2", broken, 0.0)], options))

    assert document.tag == "testsuites"
    assert (document.get("tests"), document.get("failures")) == ("7", "6")
    first, second = document.findall("testsuite")
    assert (first.get("name"), second.get("name")) == ("s1", "s2")
    single = ET.fromstring(graded)
    assert ET.tostring(first.find("testcase[2]")) == ET.tostring(single.find("testcase[2]"))
    assert second.find("testcase/failure").get("type") == "format_error"


def _report_of(submission: dict):
    """The grader's report for PROBLEM, straight from the schema and the grader."""
    request = CheckRequestSchema().load({**PROBLEM, "submission": submission})
    return Grader(request.gradients, request.tolerance).grade(request.submission)


@pytest.mark.parametrize("format", ["gradescope", "prairielearn", "junit"])
def test_the_cli_in_process_and_through_a_server_print_the_same_bytes(
    live_server, tmp_path, format
):
    problem = str(ROOT / "examples" / "problem.json")
    for name, submitted in [("bug", student(seed_bug=True)), ("broken", BROKEN["ragged-array"][0])]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(submitted))
        arguments = [str(BIN / "gradient-service"), "check", problem, str(path), "--format", format]
        local, remote = (
            subprocess.run(command, capture_output=True, timeout=60, cwd=ROOT)
            for command in (arguments, [*arguments, "--url", live_server])
        )
        assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
        assert local.stdout == remote.stdout and local.stdout.strip()


def test_thousands_of_unknown_points_keys_are_a_bounded_422(client):
    points = {f"grad_{i}": 1 for i in range(4000)}
    response = post(client, student(), format="gradescope", points=points)
    body = response.get_json()
    assert response.status_code == 422
    assert len(body["errors"]) == 50 and body["errors_omitted"] == 3950
    too_many = post(client, student(), points={f"layers.0.dW{i}": 1 for i in range(4097)})
    assert "at most 4,096 are accepted" in too_many.get_json()["errors"]["points"][0]


def test_points_and_visibility_name_every_field_a_submission_may_hold():
    assert ("loss", *SubmittedLayerSchema._declared_fields) == GRADED_NAMES


def test_an_ungradable_attempt_says_its_own_cause_in_every_format():
    """What /v1/check/batch and the quota render for an attempt that earns 0 ungraded."""
    over = UngradableSubmission(
        {"student": ["10 checks per hour; the next is allowed at 09:00 UTC."]},
        summary="Over your quota of checks: try again at 09:00 UTC.",
        test_name="quota",
        tag="over_quota",
    )
    gradescope, _ = render(over, GradingOptions(format="gradescope"))
    assert gradescope["score"] == 0 and gradescope["output"].startswith("**Over your quota")
    assert (gradescope["tests"][0]["name"], gradescope["tests"][0]["tags"]) == (
        "quota",
        ["over_quota"],
    )
    prairielearn, _ = render(over, GradingOptions(format="prairielearn"))
    assert (prairielearn["gradable"], prairielearn["score"]) == (False, 0)
    assert prairielearn["message"] == "Over your quota of checks: try again at 09:00 UTC."
    assert "09:00 UTC" in prairielearn["format_errors"]["student"]
    junit, mimetype = render(over, GradingOptions(format="junit"))
    failure = ET.fromstring(junit).find("testcase[@name='quota']/failure")
    assert mimetype == "application/xml" and failure.get("type") == "over_quota"
    assert failure.get("message").startswith("Over your quota")
