"""The README's autograder example runs as written against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from xml.etree import ElementTree

from tests.conftest import ROOT

SCRIPT = ROOT / "examples" / "autograder.py"
STUDENT = ROOT / "examples" / "student_solution.py"


def run_autograder(live_server: str, student, out) -> dict:
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--student",
            str(student),
            "--student-id",
            "alice",
            "--out",
            str(out),
            "--url",
            live_server,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.read_text())


def test_the_buggy_student_gets_zero_and_the_name_of_the_bug(live_server, tmp_path):
    results = run_autograder(live_server, STUDENT, tmp_path / "results.json")
    assert results["score"] == 0
    assert [test["name"] for test in results["tests"]] == [
        "layers.0.dW",
        "layers.0.db",
        "layers.1.dz",
        "layers.1.dW",
        "layers.1.db",
    ]
    for test in results["tests"]:
        assert test["status"] == "failed" and test["max_score"] == 1
        assert test["output"].startswith("[derivative_of_error]")
    assert "propagated back to layer 0" in results["tests"][0]["output"]


def test_the_corrected_student_gets_full_marks(live_server, tmp_path):
    fixed = tmp_path / "solution.py"
    source = STUDENT.read_text()
    assert "dz2 = dh2 * (1 - dh2)" in source
    fixed.write_text(source.replace("dz2 = dh2 * (1 - dh2)", "dz2 = dh2 * h2 * (1 - h2)"))
    results = run_autograder(live_server, fixed, tmp_path / "results.json")
    assert results["score"] == 5
    assert all(test["status"] == "passed" for test in results["tests"])


# -- PrairieLearn: the grader runs the command line in process, without network ---------------

PRAIRIELEARN = ROOT / "examples" / "prairielearn_grader.py"
#: Loaded first by the grader's Python: any attempt to open a connection fails the run.
NO_NETWORK = """
import socket

def _refused(*args, **kwargs):
    raise OSError("no network in a PrairieLearn grader")

socket.socket.connect = _refused
socket.create_connection = _refused
"""


def run_prairielearn(tmp_path, source: str, seed: int = 11) -> dict:
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    (tmp_path / "data.json").write_text(json.dumps({"params": {"seed": seed}}))
    (tmp_path / "solution.py").write_text(source)
    out = tmp_path / "results" / "results.json"
    subprocess.run(
        [
            sys.executable,
            str(PRAIRIELEARN),
            *("--student", str(tmp_path / "solution.py")),
            *("--data", str(tmp_path / "data.json")),
            *("--out", str(out)),
            *("--work", str(tmp_path)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
    )
    return json.loads(out.read_text())


def test_prairielearn_grader_names_the_bug_and_credits_the_propagated_fields(tmp_path):
    results = run_prairielearn(tmp_path, STUDENT.read_text())
    assert results["gradable"] is True and results["format_errors"] == {}
    points = {t["name"]: (t["points"], t["max_points"]) for t in results["tests"]}
    # dW is worth 2, the others 1; layer 0 is wrong only through layer 1's mistake: half
    assert points == {
        "layers.0.dW": (1, 2),
        "layers.0.db": (0.5, 1),
        "layers.1.dz": (0, 1),
        "layers.1.dW": (0, 2),
        "layers.1.db": (0, 1),
    }
    assert results["score"] == 1.5 / 7
    assert all(t["message"].startswith("[derivative_of_error]") for t in results["tests"])


def test_prairielearn_grader_gives_the_corrected_student_full_marks(tmp_path):
    source = STUDENT.read_text().replace("dz2 = dh2 * (1 - dh2)", "dz2 = dh2 * h2 * (1 - h2)")
    results = run_prairielearn(tmp_path, source, seed=12)
    assert (results["gradable"], results["score"]) == (True, 1)
    assert all(t["points"] == t["max_points"] for t in results["tests"])


def test_prairielearn_grader_records_ragged_arrays_as_not_gradable(tmp_path):
    source = STUDENT.read_text().replace(
        'return {"dW1": dW1,', 'return {"dW1": [[1.0, 2.0, 3.0], [4.0]],'
    )
    results = run_prairielearn(tmp_path, source)
    assert (results["gradable"], results["score"], results["tests"]) == (False, 0, [])
    assert list(results["format_errors"]) == ["submission.layers.0.dW"]


def test_prairielearn_grader_records_a_crashing_backprop_as_not_gradable(tmp_path):
    source = STUDENT.read_text().replace("dW2 = h1.T.dot(dz2)", "dW2 = h1.dot(dz2)")
    results = run_prairielearn(tmp_path, source)
    assert (results["gradable"], results["score"]) == (False, 0)
    assert results["message"].startswith("Your backprop raised ValueError")


# -- JUnit (CodeGrade's Unit Test step, CI): the same question, a test case per array ---------

JUNIT = ROOT / "examples" / "junit_grader.py"


def run_junit(tmp_path, source: str) -> ElementTree.Element:
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    (tmp_path / "solution.py").write_text(source)
    out = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, str(JUNIT), "--student", "solution.py", "--seed", "5"],
        check=True,
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "CG_JUNIT_XML_LOCATION": str(out),
            "TMPDIR": str(tmp_path),
        },
    )
    return ElementTree.fromstring(out.read_text())


def test_junit_grader_fails_each_array_with_the_diagnosis(tmp_path):
    suite = run_junit(tmp_path, STUDENT.read_text())
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [
        "layers.0.dW",
        "layers.0.db",
        "layers.1.dz",
        "layers.1.dW",
        "layers.1.db",
    ]
    assert {case.find("failure").get("type") for case in cases} == {"derivative_of_error"}
    assert (suite.get("tests"), suite.get("failures")) == ("5", "5")


def test_junit_grader_passes_the_corrected_student(tmp_path):
    source = STUDENT.read_text().replace("dz2 = dh2 * (1 - dh2)", "dz2 = dh2 * h2 * (1 - h2)")
    suite = run_junit(tmp_path, source)
    assert (suite.get("tests"), suite.get("failures")) == ("5", "0")
    assert suite.find("testcase/failure") is None


def test_junit_grader_fails_a_crashing_or_unreadable_submission_with_one_case(tmp_path):
    crashing = STUDENT.read_text().replace("dW2 = h1.T.dot(dz2)", "dW2 = h1.dot(dz2)")
    failure = run_junit(tmp_path, crashing).find("testcase/failure")
    assert failure.get("message").startswith("Your backprop raised ValueError")
    ragged = STUDENT.read_text().replace('return {"dW1": dW1,', 'return {"dW1": [[1.0], []],')
    failure = run_junit(tmp_path, ragged).find("testcase/failure")
    assert failure.get("type") == "format_error" and "submission.layers.0.dW" in failure.text
