"""One APIRouter per file; `ROUTERS` is what create_app mounts under /api."""

from webapp.routes import diagnosis, diff, edits, export, meta, overview, pair, tokens, vocab

ROUTERS = [
    meta.router,
    overview.router,
    vocab.router,
    tokens.router,
    pair.router,
    edits.router,
    diagnosis.router,
    diff.router,
    export.router,
]
