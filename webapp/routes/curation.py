"""Curation beyond one row: bulk edits on a selection, the rule config, and rebuilds (webapp/curation.py)."""

from __future__ import annotations

import json
from typing import get_args

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from webapp import curation
from webapp.deps import WorkspaceDep
from webapp.schemas import BulkRequest, BulkResult, Rebuild, RebuildRequest, RebuildResult, RulesView
from webapp.store import StaleRevision
from xtoken_align.config import ADDING, CLAIMING, BuildConfig, RuleConfig
from xtoken_align.errors import XTokenError

router = APIRouter(tags=["curation"])
STALE = {409: {"description": "W changed since the preview named by `revision`; preview again"}}


@router.post("/teachers/{teacher}/bulk", response_model=BulkResult, responses=STALE)
def bulk(teacher: str, request: BulkRequest, workspace: WorkspaceDep):
    """Preview (`dry_run`, the default) or apply one action on every student row the selection
    finds, as one journalled operation that the teacher's undo reverts whole."""
    try:
        return curation.bulk(workspace, teacher, request)
    except StaleRevision as stale:
        return _stale(stale)


@router.get("/teachers/{teacher}/rules", response_model=RulesView)
def rules(teacher: str, workspace: WorkspaceDep) -> RulesView:
    state = workspace.teacher(teacher)
    rebuilds = [
        Rebuild(generation=b.generation, at=b.at, config=_json(b.config), kept=b.kept, dropped=len(b.dropped))
        for b in workspace.store.bases(state.key)
    ]
    return RulesView(
        config=state.base.config or BuildConfig(),
        imported=state.base.config is None,
        defaults=_defaults(),
        claiming=list(CLAIMING),
        adding=list(ADDING),
        revision=workspace.store.revision(state.key),
        rebuilds=rebuilds,
    )


@router.post("/teachers/{teacher}/rebuild", response_model=RebuildResult, responses=STALE)
def rebuild(teacher: str, request: RebuildRequest, workspace: WorkspaceDep):
    """Preview (`dry_run`, the default) or make W anew from `config`, with the score before and
    after on the workspace corpus; hand edits are kept where the rules did not change their row."""
    try:
        return curation.rebuild(workspace, teacher, request)
    except StaleRevision as stale:
        return _stale(stale)


def _stale(stale: StaleRevision) -> JSONResponse:
    detail = f"W changed since the preview (now revision {stale.revision}); preview again"
    return JSONResponse(status_code=409, content={"detail": detail, "revision": stale.revision})


def _defaults() -> dict[str, dict]:
    """Every rule's parameters with their defaults, from the config models themselves."""
    out = {}
    for kind in get_args(get_args(RuleConfig)[0]):  # the union inside Annotated[...]
        fields = kind.model_fields
        out[fields["name"].default] = {k: f.default for k, f in fields.items() if k != "name" and not f.is_required()}
    return out


def _json(text: str) -> dict | None:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise XTokenError(f"a rebuild's recorded config is damaged: {exc}") from None
