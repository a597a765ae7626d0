"""`create_app(settings)`: the FastAPI service and the static UI over one workspace.

Security model: the server binds 127.0.0.1 unless told otherwise; then an access token is
required on every /api call (`Authorization: Bearer TOKEN`, or `?token=` for download links).
Request bodies are capped, token strings are data (the UI renders them as text and a strict
Content-Security-Policy forbids inline scripts), and no endpoint takes a file path.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import plotly
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from webapp.routes import ROUTERS
from webapp.settings import Settings
from webapp.workspace import UnknownTeacher, Workspace
from xtoken_align import __version__
from xtoken_align.errors import XTokenError

STATIC = Path(__file__).resolve().parent.parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(settings: Settings, workspace: Workspace | None = None) -> FastAPI:
    """Build the app; opens (or creates) the workspace unless one is given."""
    app = FastAPI(title="xtoken-align", version=__version__, summary="Browse, edit and export X-Token projections")
    app.state.settings = settings
    app.state.workspace = workspace or Workspace(
        settings.workspace, settings.student, list(settings.teachers), list(settings.projections) or None
    )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse({"detail": f"request body over {settings.max_body_bytes:,} bytes"}, status_code=413)
        if settings.access_token and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), settings.access_token.encode()):
                return JSONResponse({"detail": "missing or wrong access token"}, status_code=401)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(XTokenError)
    async def user_error(request: Request, exc: XTokenError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404 if isinstance(exc, UnknownTeacher) else 422)

    for router in ROUTERS:
        app.include_router(router, prefix="/api")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
