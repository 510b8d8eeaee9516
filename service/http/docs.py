"""The interactive API docs' assets (Swagger UI), served locally: no CDN, works offline."""

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, send_from_directory

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)

blp = Blueprint("docs_assets", __name__)


@blp.route("/docs/static/<path:filename>")
def asset(filename: str):
    return send_from_directory(ASSETS, filename, max_age=86400)
