"""GET /api/diagnosis: the uncommon-token audit of every teacher (JSON and plotly figure specs).

Computed on the current W (edits included) and kept by the workspace until the next edit, undo or
redo (`Workspace.derived`): a diagnosis with the corpus takes seconds, a page switch should not.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from webapp.deps import WorkspaceDep
from webapp.schemas import Diagnosis
from webapp.workspace import Workspace
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.diagnose import diagnose, diagnose_figures

router = APIRouter(tags=["diagnosis"])


@router.get("/diagnosis", response_model=Diagnosis)
def diagnosis(workspace: WorkspaceDep, corpus_texts: Annotated[int, Query(ge=0, le=10_000)] = 500) -> Diagnosis:
    """{"report": <diagnose JSON>, "figures": [plotly figure specs]} for all teachers of the workspace.
    `corpus_texts` GSM8K test problems are used for the corpus measurements (0 skips them)."""
    return workspace.derived("diagnosis", corpus_texts, lambda: _diagnose(workspace, corpus_texts))


def _diagnose(workspace: Workspace, corpus_texts: int) -> Diagnosis:
    texts = read_corpus(default_corpus(), limit=corpus_texts) if corpus_texts else None
    teachers = [(state.vocab, workspace.export(key)) for key, state in workspace.teachers.items()]
    name = f"GSM8K test, first {corpus_texts}" if texts else ""
    report = diagnose(workspace.student, teachers, texts, corpus_name=name)
    return Diagnosis(report=report, figures=diagnose_figures(report))
