"""Row edits: PUT a row (optimistic concurrency), undo and redo (of the teacher or of one row), history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from webapp.deps import WorkspaceDep
from webapp.schemas import Entry, HistoryItem, HistoryPage, RowEdit, RowStep, RowView
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
        return _stale(teacher, student_id, stale, workspace)
    state = workspace.teacher(teacher)
    view = entries(state.vocab, change.entries)
    return RowView(student_id=change.student_id, version=change.version, row=view, changed=bool(change.history_id))


ROW_STEP_RESPONSES = {409: {"description": "the row changed since it was read, or there is nothing to step to"}}


@router.post("/teachers/{teacher}/rows/{student_id}/undo", response_model=RowView, responses=ROW_STEP_RESPONSES)
def undo_row(teacher: str, student_id: int, step: RowStep, workspace: WorkspaceDep):
    """Undo this row's latest edit only (journalled like any undo), if the row is still at `version`."""
    return _row_step(teacher, student_id, step, workspace, forward=False)


@router.post("/teachers/{teacher}/rows/{student_id}/redo", response_model=RowView, responses=ROW_STEP_RESPONSES)
def redo_row(teacher: str, student_id: int, step: RowStep, workspace: WorkspaceDep):
    """Redo this row's latest undone edit, if the row is still at `version`."""
    return _row_step(teacher, student_id, step, workspace, forward=True)


@router.post("/teachers/{teacher}/undo", response_model=RowView, responses={409: {"description": "nothing to undo"}})
def undo(teacher: str, workspace: WorkspaceDep):
    """Undo the teacher's latest operation: one row's edit, or a bulk edit whole (`rows` says how many)."""
    return _step(teacher, workspace, forward=False)


@router.post("/teachers/{teacher}/redo", response_model=RowView, responses={409: {"description": "nothing to redo"}})
def redo(teacher: str, workspace: WorkspaceDep):
    return _step(teacher, workspace, forward=True)


@router.get("/teachers/{teacher}/history", response_model=HistoryPage)
def history(teacher: str, workspace: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> HistoryPage:
    state = workspace.teacher(teacher)
    items = workspace.store.history(state.key, limit)
    student = workspace.student
    data = [
        HistoryItem(
            **{**h, "before": _entries(state, h["before"]), "after": _entries(state, h["after"])},
            piece=student.pieces[h["student_id"]],
            display=student.display(h["student_id"]),
        )
        for h in items
    ]
    return HistoryPage(data=data, count=len(data))


def _entries(state, row) -> list[Entry]:
    return entries(state.vocab, row)


def _stale(teacher: str, student_id: int, stale: StaleVersion, workspace) -> JSONResponse:
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


def _row_step(teacher: str, student_id: int, step: RowStep, workspace, forward: bool):
    try:
        changes = workspace.step(teacher, forward, (student_id, step.version))
    except StaleVersion as stale:
        return _stale(teacher, student_id, stale, workspace)
    if not changes:
        word = "redo" if forward else "undo"
        return JSONResponse(status_code=409, content={"detail": f"nothing to {word} for student token #{student_id}"})
    return _view(workspace.teacher(teacher), changes)


def _step(teacher: str, workspace, forward: bool):
    changes = workspace.step(teacher, forward)
    if not changes:
        return JSONResponse(status_code=409, content={"detail": f"nothing to {'redo' if forward else 'undo'}"})
    return _view(workspace.teacher(teacher), changes)


def _view(state, changes) -> RowView:
    """The row the step changed; for a bulk operation, its first row and how many it changed."""
    first = changes[0]
    row = entries(state.vocab, first.entries)
    return RowView(student_id=first.student_id, version=first.version, row=row, rows=len(changes))
