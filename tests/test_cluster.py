"""The cluster pieces: Kubernetes manifests validate, probes and grace periods fit the server,
and the image installs exactly the versions the project was tested with."""

from __future__ import annotations

import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from service.config import Config
from service.operations import gunicorn_conf
from tests.conftest import BIN, ROOT

K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
LOCK = ROOT / "deploy" / "requirements.lock"


def manifests() -> dict[str, dict]:
    documents = [doc for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in documents}


@pytest.mark.parametrize("path", K8S, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path):
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cluster_has_a_deployment_service_autoscaler_and_disruption_budget():
    kinds = set(manifests())
    assert {
        "Deployment/gradient-service",
        "Service/gradient-service",
        "HorizontalPodAutoscaler/gradient-service",
        "PodDisruptionBudget/gradient-service",
        "Deployment/gradient-redis",
    } <= kinds


def test_probes_use_health_for_liveness_and_readiness_for_traffic():
    pod = manifests()["Deployment/gradient-service"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # requests in flight finish: the pod waits longer than gunicorn's graceful timeout
    assert pod["terminationGracePeriodSeconds"] > gunicorn_conf.graceful_timeout


def failure_window(probe: dict) -> float:
    """Seconds a container must fail to answer before the kubelet acts on this probe: the
    first failing probe is sent ``period * (threshold - 1) + timeout`` before the last
    one gives up (Kubernetes' defaults where a field is left out)."""
    period = probe.get("periodSeconds", 10)
    return period * (probe.get("failureThreshold", 3) - 1) + probe.get("timeoutSeconds", 1)


def test_probes_wait_longer_than_a_worker_may_compute():
    container = manifests()["Deployment/gradient-service"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    budget = float(env.get("GRADIENT_TIME_BUDGET_SECONDS") or Config.GRADIENT_TIME_BUDGET_SECONDS)
    timeout = int(env.get("GUNICORN_TIMEOUT") or gunicorn_conf.timeout)
    # a pod whose every worker computes for the whole budget is neither restarted...
    assert failure_window(container["livenessProbe"]) > budget
    # ...nor before gunicorn replaces a stuck worker itself
    assert failure_window(container["livenessProbe"]) > timeout
    # ...nor taken out of the Service while it computes
    assert failure_window(container["readinessProbe"]) > budget


def test_the_image_installs_exactly_pinned_versions_that_satisfy_the_project():
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in {LOCK.name}"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    assert f"-r {LOCK.name}" in (ROOT / "Dockerfile").read_text()
