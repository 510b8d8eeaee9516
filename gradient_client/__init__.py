"""A Python client for the gradient service: NumPy arrays in, NumPy arrays out.

    >>> from gradient_client import GradientClient
    >>> client = GradientClient("http://127.0.0.1:8000")
    >>> answer = client.gradients(
    ...     inputs=np.array([[0.5, -1.0]]), targets=np.array([[1.0]]),
    ...     layers=[{"weights": np.array([[0.3], [0.4]]), "biases": np.zeros(1),
    ...              "activation": "sigmoid"}],
    ...     loss="bce")
    >>> answer["layers"][0]["db"]          # an ndarray, in the shape the bias was sent in

Large arrays travel as base64 (the service's binary array form) and small ones as
plain JSON, so requests stay readable in logs. Every failure raises
GradientServiceError, which carries the service's problem document.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import requests

__all__ = ["GradientClient", "GradientServiceError"]

#: arrays with more numbers than this are sent, and asked back, in the binary form
BINARY_THRESHOLD = 4096
#: statuses worth retrying: the request was not processed, trying later may work
RETRY_STATUSES = frozenset({429, 503})
#: result keys that hold shapes or sizes, which stay lists of integers
_INTEGER_LISTS = frozenset({"expected_shape", "submitted_shape", "shape", "layer_sizes"})


class GradientServiceError(Exception):
    """The service refused or failed a request; ``problem`` is its RFC 9457 document.

    >>> try:
    ...     client.gradients(inputs=np.array([1.0, 2.0]), ...)
    ... except GradientServiceError as error:
    ...     print(error.status, error.errors)   # 422 {'inputs': ['got a 1-D array ...']}
    """

    def __init__(self, problem: Mapping[str, Any]):
        self.problem: dict[str, Any] = dict(problem)
        self.status: int | None = problem.get("status")
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.errors: dict[str, list[str]] = dict(problem.get("errors") or {})
        #: field errors the service counted but did not list (it lists at most 50)
        self.errors_omitted: int = int(problem.get("errors_omitted") or 0)
        super().__init__(self.detail or self.title)

    @property
    def is_invalid_input(self) -> bool:
        """True when the request itself was wrong (400, 413, 415, 422)."""
        return self.status in (400, 413, 415, 422)


class GradientClient:
    """One method per endpoint; a kept-alive session; retries on 429, 503 and lost connections.

    >>> client = GradientClient("http://127.0.0.1:8000", api_key="...", timeout=30, retries=3)
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        binary_threshold: int = BINARY_THRESHOLD,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.binary_threshold = binary_threshold
        self.session = session or requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    # -- endpoints ---------------------------------------------------------------------------

    def gradients(
        self,
        inputs: Any,
        targets: Any = None,
        layers: Sequence[Mapping[str, Any]] = (),
        loss: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Loss, activations and every layer's dW and db, as arrays in your shapes.

        ``options``: reduction, convention, layout, l2, learning_rate, include,
        gradient_check, upstream. Images are 4-D arrays in the ``layout`` ("NCHW" or
        "NHWC"). With ``upstream`` (dL/d(last output), e.g. a backward check's dout)
        there are no targets and no loss.

        >>> client.gradients(inputs=X, targets=Y, loss="mse", convention="torch",
        ...                  layers=[{"weights": W, "biases": b, "activation": "tanh"}])
        >>> client.gradients(inputs=A_prev, layout="NHWC", upstream=dZ, include=["dx"],
        ...                  layers=[{"type": "conv2d", "weights": W, "biases": b, "pad": 2}])
        """
        body: dict[str, Any] = {"inputs": inputs, "layers": list(layers)}
        if targets is not None:
            body["targets"] = targets
        if loss is not None:
            body["loss"] = loss
        body.update(options)
        encoded = self._encode(body)
        if self._has_binary(encoded):
            encoded.setdefault("encoding", "base64")
        return cast(dict[str, Any], _arrays(self.post("/v1/gradients", encoded)))

    def neuron(
        self, x: Any, w: Any, b: float, y: float, activation: str, loss: str, **options: Any
    ) -> dict[str, Any]:
        """Every chain-rule term of one neuron's dL/db.

        >>> client.neuron(x=1.5, w=0.8, b=0.1, y=1.0, activation="sigmoid", loss="bce")["dL_db"]
        """
        body = {"x": x, "w": w, "b": b, "y": y, "activation": activation, "loss": loss}
        body.update(options)
        return cast(dict[str, Any], _arrays(self.post("/v1/neuron", self._encode(body))))

    def check(
        self, problem: Mapping[str, Any], submission: Mapping[str, Any], **options: Any
    ) -> dict[str, Any]:
        """Grade a submission field by field: score, and each mistake's diagnosis.

        >>> report = client.check(problem, {"layers": [None, {"db": db2}]})
        >>> report["score"], report["results"][0]["diagnosis"]
        """
        body = {**problem, "submission": submission, **options}
        return cast(dict[str, Any], _arrays(self.post("/v1/check", self._encode(body))))

    def exercises(
        self,
        seed: int,
        layer_sizes: Sequence[int] | None = None,
        activations: Sequence[str] | None = None,
        loss: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """A reproducible problem and its solution, with arrays.

        >>> exercise = client.exercises(seed=7, layer_sizes=[2, 3, 1],
        ...                             activations=["tanh", "sigmoid"], loss="bce")

        Any layer kind: ``layers`` (one object each) and ``n_in`` instead of the sizes:

        >>> exercise = client.exercises(seed=7, n_in=3, loss="cross_entropy",
        ...     targets="labels", layers=[{"units": 4, "activation": "relu", "bias": False},
        ...     {"type": "batchnorm"}, {"units": 3, "activation": "softmax"}])
        """
        body: dict[str, Any] = {"seed": seed}
        if layer_sizes is not None:
            body["layer_sizes"] = list(layer_sizes)
        if activations is not None:
            body["activations"] = list(activations)
        if loss is not None:
            body["loss"] = loss
        return cast(dict[str, Any], _arrays(self.post("/v1/exercises", {**body, **options})))

    # -- transport ---------------------------------------------------------------------------

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body (already encoded) and return the decoded JSON answer."""
        response = self.post_raw(path, body)
        answer: dict[str, Any] = response.json()
        return answer

    def post_raw(self, path: str, body: Mapping[str, Any]) -> requests.Response:
        """POST with retries; the successful response, or GradientServiceError."""
        attempt = 0
        while True:
            try:
                response = self.session.post(
                    self.base_url + path, json=body, timeout=self.timeout, stream=True
                )
                _read_whole(response)
            except requests.ConnectionError as error:
                if attempt >= self.retries:
                    raise GradientServiceError(
                        {"title": "Service unreachable", "detail": f"{self.base_url}: {error}"}
                    ) from error
                self._wait(attempt, None)
            else:
                if response.ok:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                    raise GradientServiceError(_problem(response))
                self._wait(attempt, response.headers.get("Retry-After"))
            attempt += 1

    @staticmethod
    def _wait(attempt: int, retry_after: str | None) -> None:
        """Exponential backoff with full jitter, or the server's Retry-After when it gave one."""
        if retry_after is not None:
            try:
                time.sleep(min(float(retry_after), 60.0))
                return
            except ValueError:
                pass
        time.sleep(random.uniform(0, min(0.25 * 2**attempt, 8.0)))

    def _encode(self, value: Any) -> Any:
        """NumPy arrays to JSON: plain lists when small, the binary form when large."""
        if isinstance(value, np.ndarray):
            if value.size > self.binary_threshold:
                data = np.ascontiguousarray(value, dtype="<f8")
                return {
                    "dtype": "float64",
                    "shape": list(data.shape),
                    "data": base64.b64encode(data.tobytes()).decode("ascii"),
                }
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, Mapping):
            return {key: self._encode(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._encode(item) for item in value]
        return value

    @staticmethod
    def _has_binary(value: Any) -> bool:
        if isinstance(value, dict):
            return _is_binary(value) or any(GradientClient._has_binary(v) for v in value.values())
        if isinstance(value, list):
            return any(GradientClient._has_binary(v) for v in value if isinstance(v, (dict, list)))
        return False


def _read_whole(response: requests.Response) -> None:
    """Read the answer in one call; ``response.content`` is then the whole body.

    requests' own ``content`` reads a streamed body 10 KiB at a time: about 45 ms
    of an 18 MB answer (the large benchmark request's) on these machines.
    """
    response._content = response.raw.read(decode_content=True)


def _is_binary(value: Mapping[str, Any]) -> bool:
    return set(value) == {"dtype", "shape", "data"}


def _problem(response: requests.Response) -> dict[str, Any]:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason, "detail": response.text[:500]}
    problem.setdefault("status", response.status_code)
    return problem


def _arrays(value: Any, key: str = "") -> Any:
    """Results with every array as an ndarray (lists of numbers and the binary form alike)."""
    if isinstance(value, dict):
        if _is_binary(value):
            raw = base64.b64decode(value["data"])
            return np.frombuffer(raw, dtype="<f8").reshape(value["shape"]).copy()
        return {k: _arrays(v, k) for k, v in value.items()}
    if isinstance(value, list) and key not in _INTEGER_LISTS:
        if value and _all_numbers(value):
            return np.asarray(value, dtype=np.float64)
        return [_arrays(item) for item in value]
    return value


def _all_numbers(value: list[Any]) -> bool:
    return all(
        _all_numbers(item)
        if isinstance(item, list)
        else isinstance(item, (int, float)) and not isinstance(item, bool)
        for item in value
    )
