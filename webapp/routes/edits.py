"""Row edits: PUT a row (optimistic concurrency), undo, redo, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from webapp.deps import WorkspaceDep
from webapp.schemas import Entry, HistoryItem, HistoryPage, RowEdit, RowView
from webapp.store import StaleVersion
from webapp.views import entries

router = APIRouter(tags=["edits"])


@router.put(
    "/teachers/{teacher}/rows/{student_id}",
    response_model=RowView,
    responses={409: {"description": "the row changed since it was read; the current row is returned"}},
)
def edit_row(teacher: str, student_id: int, edit: RowEdit, workspace: WorkspaceDep):
    """Replace a row's entries. The server drops zero weights, normalises the rest to sum to 1, and
    refuses the write with 409 (and the current row) if `version` is not the row's current version."""
    try:
        change = workspace.edit(
            teacher, student_id, edit.version, [(e.teacher_id, e.weight) for e in edit.entries], edit.note
        )
    except StaleVersion as stale:
        state = workspace.teacher(teacher)
        version, row = state.row(student_id)
        current = RowView(student_id=student_id, version=version, row=entries(state.vocab, row))
        return JSONResponse(
            status_code=409,
            content={
                "detail": f"row {student_id} was changed elsewhere (now version {stale.version})",
                "row": current.model_dump(),
            },
        )
    state = workspace.teacher(teacher)
    return RowView(student_id=change.student_id, version=change.version, row=entries(state.vocab, change.entries))


@router.post("/teachers/{teacher}/undo", response_model=RowView, responses={409: {"description": "nothing to undo"}})
def undo(teacher: str, workspace: WorkspaceDep):
    return _step(teacher, workspace, forward=False)


@router.post("/teachers/{teacher}/redo", response_model=RowView, responses={409: {"description": "nothing to redo"}})
def redo(teacher: str, workspace: WorkspaceDep):
    return _step(teacher, workspace, forward=True)


@router.get("/teachers/{teacher}/history", response_model=HistoryPage)
def history(teacher: str, workspace: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> HistoryPage:
    state = workspace.teacher(teacher)
    items = workspace.store.history(state.key, limit)
    data = [
        HistoryItem(**{**h, "before": _entries(state, h["before"]), "after": _entries(state, h["after"])})
        for h in items
    ]
    return HistoryPage(data=data, count=len(data))


def _entries(state, row) -> list[Entry]:
    return entries(state.vocab, row)


def _step(teacher: str, workspace, forward: bool):
    change = workspace.step(teacher, forward)
    if change is None:
        return JSONResponse(status_code=409, content={"detail": f"nothing to {'redo' if forward else 'undo'}"})
    state = workspace.teacher(teacher)
    return RowView(student_id=change.student_id, version=change.version, row=entries(state.vocab, change.entries))
