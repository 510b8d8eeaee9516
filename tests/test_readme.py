"""Every curl example in the README answers, from a real server, exactly what the README shows."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.conftest import ROOT

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
    assert response.json() == json.loads(answer)
