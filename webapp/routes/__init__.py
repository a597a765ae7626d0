"""One APIRouter per file; `ROUTERS` is what create_app mounts under /api."""

from webapp.routes import curation, diagnosis, diff, edits, export, meta, overview, pair, tokens, vocab

ROUTERS = [
    meta.router,
    overview.router,
    vocab.router,
    tokens.router,
    pair.router,
    edits.router,
    curation.router,
    diagnosis.router,
    diff.router,
    export.router,
]
