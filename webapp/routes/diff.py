"""GET /api/teachers/{teacher}/diff?other=NAME: the current W (base + edits) against a W given with
`serve --compare NAME=PATH`.

The browser names a W the server was started with, never a path. The diff is kept by the workspace
until the next edit, undo or redo (`Workspace.derived`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from webapp.deps import WorkspaceDep
from xtoken_align.diff import DiffReport, diff_projections

router = APIRouter(tags=["diff"])


@router.get("/teachers/{teacher}/diff", response_model=DiffReport)
def diff(
    teacher: str,
    workspace: WorkspaceDep,
    other: Annotated[str, Query(max_length=200)],
    top: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> DiffReport:
    """Rows changed, mass moved (½·Σ|A−B| per row) per student category, and the `top` rows that
    moved most, side by side: A is the workspace's current W, B the W named `other`."""
    state = workspace.teacher(teacher)
    compare = workspace.compare(other, state.key)

    def compute() -> DiffReport:
        labels = ("workspace", f"{compare.name} ({compare.path})")
        return diff_projections(
            workspace.export(state.key), compare.projection, workspace.student, state.vocab, top, labels
        )

    return workspace.derived(f"diff:{state.key}:{compare.name}", top, compute)
