"""GET /: the interactive bias-derivative page, its script and style served from here (no CDN)."""

from pathlib import Path

from flask import Blueprint, send_from_directory

PAGE = Path(__file__).resolve().parent.parent / "page"

blp = Blueprint("page", __name__, static_folder=str(PAGE), static_url_path="/page")


@blp.route("/")
def index():
    return send_from_directory(PAGE, "index.html", max_age=0)
