"""The web console's static files: the page at ``/`` and its assets under ``/console/``.

Only files shipped in the package's ``static`` folder are served, looked up by name in a table
built once, so no request path ever reaches the filesystem.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, HTTPException, Response

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# The page may load only its own scripts, styles and API: no inline script, no other origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every shipped console file by its path below ``static/``: content and content type."""
    found: dict[str, tuple[bytes, str]] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if suffix in CONTENT_TYPES:
                found[name] = (entry.read_bytes(), CONTENT_TYPES[suffix])

    walk(resources.files("astra_synth.console") / "static", "")
    return found


def console_router() -> APIRouter:
    """``GET /`` (the console page) and ``GET /console/{path}`` (its assets); 404 otherwise."""
    files = static_files()
    if "index.html" not in files:
        raise RuntimeError("the console's static/index.html is missing from the package")
    router = APIRouter(tags=["console"])

    def serve(path: str) -> Response:
        if path not in files:
            raise HTTPException(404, detail=f"no console file {path!r}")
        content, media_type = files[path]
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        return serve("index.html")

    @router.get("/console/{path:path}", include_in_schema=False)
    async def asset(path: str) -> Response:
        return serve(path)

    return router
