"""GET /healthz (alive), GET /readyz (ready to compute), GET /metrics (Prometheus)."""

import numpy as np
from flask import Blueprint as FlaskBlueprint
from werkzeug.exceptions import ServiceUnavailable

from schemas import HealthSchema, ReadinessSchema
from service.core import Problem, compute_gradients, dense_layer
from service.operations import metrics
from service.worker import lifecycle

from .blueprint import Blueprint

blp = Blueprint("health", __name__, description="Liveness and readiness.")
operations = FlaskBlueprint("operations", __name__)

#: A tiny problem whose answer is known: 1 * 2 + 1 = 3, identity, half_mse against 0.
_PROBE = Problem(
    inputs=np.array([[1.0]]),
    targets=np.array([[0.0]]),
    layers=(dense_layer(weights=np.array([[2.0]]), biases=np.array([1.0]), activation="identity"),),
    loss="half_mse",
)


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.doc(operationId="getHealth")
def healthz():
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE")
@blp.doc(operationId="getReadiness")
def readyz():
    """200 when this worker computes correctly; 503 once it is shutting down."""
    if lifecycle.is_draining():
        raise ServiceUnavailable("this worker is shutting down; requests in flight will finish.")
    result = compute_gradients(_PROBE)
    if result.loss != 4.5 or result.layers[0].db[0] != 3.0:
        raise ServiceUnavailable("the numerical core gave a wrong answer to the readiness probe.")
    return {"status": "ready"}


@operations.route("/metrics")
def prometheus_metrics():
    return metrics.metrics_response()
