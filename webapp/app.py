"""`create_app(settings)`: the FastAPI service and the static UI over one workspace.

Security model: the server binds 127.0.0.1 unless told otherwise; then an access token is
required on every /api call (`Authorization: Bearer TOKEN`, or `?token=` for download links).
Request bodies are capped, token strings are data (the UI renders them as text and a strict
Content-Security-Policy forbids inline scripts), and no endpoint takes a file path.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import fastapi_offline
import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from webapp.limits import BodyLimit
from webapp.routes import ROUTERS
from webapp.settings import Settings
from webapp.workspace import UnknownTeacher, VocabLoader, Workspace
from xtoken_align import __version__
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import load_vocab

STATIC = Path(__file__).resolve().parent.parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI files, shipped on PyPI
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# Swagger UI from the installed fastapi-offline package, started by a file: no CDN, no inline script.
DOCS_PAGE = """<!doctype html><html><head><title>xtoken-align API</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/vendor/swagger/swagger-ui.css"></head><body><div id="swagger-ui"></div>
<script src="/vendor/swagger/swagger-ui-bundle.js"></script><script src="/static/swagger-init.js"></script>
</body></html>"""


def _printable(text: str) -> str:
    """Messages may quote user input; lone surrogates cannot be sent as UTF-8, so escape them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def create_app(settings: Settings, workspace: Workspace | None = None, load: VocabLoader = load_vocab) -> FastAPI:
    """Build the app; opens (or creates) the workspace unless one is given, loading its tokenizers with `load`."""
    app = FastAPI(
        title="xtoken-align",
        version=__version__,
        summary="Browse, edit and export X-Token projections",
        docs_url=None,  # served below from the installed swagger-ui-bundle, not a CDN
    )
    app.state.settings = settings
    app.state.workspace = workspace or Workspace.open(
        settings.workspace, settings.student, settings.teachers, settings.projections or None, load=load
    )
    for name, path in settings.compare:
        app.state.workspace.add_compare(name, path)

    @app.middleware("http")
    async def guard(request: Request, call_next):
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
        return JSONResponse(
            {"detail": _printable(str(exc))}, status_code=404 if isinstance(exc, UnknownTeacher) else 422
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each problem, without echoing the input (it may not even be encodable)."""
        problems = [{"loc": list(e.get("loc", ())), "msg": _printable(str(e.get("msg", "")))} for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    for router in ROUTERS:
        app.include_router(router, prefix="/api")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    app.mount("/vendor/swagger", StaticFiles(directory=SWAGGER_UI), name="swagger")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
