"""GET /healthz: the process is up and answering."""

from .blueprint import Blueprint

blp = Blueprint("health", __name__, description="Liveness.")


@blp.route("/healthz", methods=["GET"])
@blp.response(200)
def healthz():
    """Always 200 while the process serves requests."""
    return {"status": "ok"}
