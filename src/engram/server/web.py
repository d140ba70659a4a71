"""The web memory browser: one static page at `/`, its assets under `/static`.

The page is a small front end over the REST API (no server-side templating, no CDN): it
talks to `/v1/...` with the key the user enters, so it sees exactly what that key may see.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")

# The page loads nothing from elsewhere and runs no inline script: memory text shown on it
# is attacker-controlled, so the policy is a second line behind textContent-only rendering.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class StaticAssets(StaticFiles):
    """StaticFiles that sends the page's security headers with every asset."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the memory browser at `/` and its assets at `/static` (kept out of OpenAPI)."""
    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def memory_browser() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )
