"""API keys: when any are configured, every /v1/ request needs ``Authorization: Bearer <key>``.

Keys are compared in constant time, read only from the header (never from a
URL), and never logged: logs and rate limits see a short hash of the key.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

PROTECTED_PREFIX = "/v1/"


def _presented_key() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_valid(token: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key, so the time taken does not say which one nearly matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    return matched


def key_id(token: str) -> str:
    """What logs and rate limits may know of a key."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def authenticated_key_id() -> str | None:
    """The hash of this request's key if it is a configured one; cached for the request."""
    if "key_id" not in g:
        token = _presented_key()
        keys = current_app.config["GRADIENT_API_KEYS"]
        g.key_id = key_id(token) if token and keys and _is_valid(token, keys) else None
    return g.key_id


def client_identity() -> str:
    """The rate-limit bucket: the API key when one is valid, else the client's address."""
    identity = authenticated_key_id()
    return f"key:{identity}" if identity else f"addr:{request.remote_addr}"


def require_api_key() -> None:
    """before_request: 401 for a /v1/ request without a valid key, when keys are configured."""
    if not current_app.config["GRADIENT_API_KEYS"] or not request.path.startswith(PROTECTED_PREFIX):
        return
    if authenticated_key_id() is None:
        presented = _presented_key() is not None
        raise Unauthorized(
            ("the API key is not valid" if presented else "an API key is required")
            + "; send it as 'Authorization: Bearer <key>' (never in the URL).",
            www_authenticate=_bearer_challenge(presented),
        )


def _bearer_challenge(presented: bool) -> WWWAuthenticate:
    challenge = WWWAuthenticate("bearer")
    if presented:
        challenge.parameters["error"] = "invalid_token"
    return challenge
