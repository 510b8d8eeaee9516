"""Every curl example in the README answers, from a real server, exactly what the README shows."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import requests

from tests.conftest import BIN, ROOT

EXAMPLE = re.compile(r"```sh\n(curl .*?)```\s*```json\n(.*?)```", re.S)


def readme_examples() -> list[tuple[str, dict, str, str]]:
    examples = []
    for command, answer in EXAMPLE.findall((ROOT / "README.md").read_text()):
        path = re.search(r"http://127\.0\.0\.1:8000(/\S+)", command).group(1)
        headers = dict(re.findall(r"-H '([^:']+): ([^']*)'", command))
        body = re.search(r"-d\s+'(.*)'", command, re.S).group(1)
        examples.append((path, headers, body, answer))
    return examples


def test_the_readme_has_an_example_per_endpoint():
    paths = {path for path, *_ in readme_examples()}
    assert {"/v1/gradients", "/v1/neuron", "/v1/check"} <= paths


@pytest.mark.parametrize(("path", "headers", "body", "answer"), readme_examples())
def test_readme_example_is_the_real_answer(live_server, path, headers, body, answer):
    response = requests.post(live_server + path, data=body, headers=headers, timeout=10)
    assert_same_answer(response.json(), json.loads(answer))


def assert_same_answer(actual, shown, key: str = "") -> None:
    """The same document; numbers equal to a few units in the last place.

    NumPy's vectorised exp and log may differ in the last bit between CPUs (AVX2
    and AVX-512 code paths), so an answer computed on another machine can too.
    A finite difference divides such a difference by 2e-6: ``numerical_*``
    values agree to 1e-8 relative, the central difference's own accuracy.
    """
    if isinstance(shown, dict):
        assert isinstance(actual, dict) and actual.keys() == shown.keys(), key
        for name in shown:
            assert_same_answer(actual[name], shown[name], name)
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(actual) == len(shown), key
        for a, s in zip(actual, shown):
            assert_same_answer(a, s, key)
    elif isinstance(shown, float) and not isinstance(shown, bool):
        tolerance = 1e-8 if key.startswith("numerical") else 1e-14
        assert actual == pytest.approx(shown, rel=tolerance, abs=1e-300), key
    else:
        assert actual == shown, key


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [
        line
        for block in blocks
        for line in block.splitlines()
        if line.startswith("gradient-service ")
    ]


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_lines_run_as_written(command):
    result = subprocess.run(
        [str(BIN / "gradient-service"), *shlex.split(command)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)


def test_the_readme_python_example_runs_as_written(live_server):
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    code = code.replace("http://127.0.0.1:8000", live_server)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "0.0 not_reduced_over_batch"
    assert result.stdout.splitlines()[1].startswith("422 got a 1-D array of shape (2,)")
