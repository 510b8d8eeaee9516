"""The README's autograder example runs as written against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

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
