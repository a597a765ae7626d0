"""GET /api/diagnosis: the uncommon-token audit of every teacher (JSON and plotly figure specs).

Computed on the current W (edits included) and cached until the next edit: a diagnosis with the
corpus takes seconds, a page switch should not.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Query

from webapp.deps import WorkspaceDep
from webapp.schemas import Diagnosis
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.diagnose import diagnose, diagnose_figures

router = APIRouter(tags=["diagnosis"])
_cache: dict[tuple, Diagnosis] = {}
_lock = threading.Lock()


@router.get("/diagnosis", response_model=Diagnosis)
def diagnosis(workspace: WorkspaceDep, corpus_texts: Annotated[int, Query(ge=0, le=10_000)] = 500) -> Diagnosis:
    """{"report": <diagnose JSON>, "figures": [plotly figure specs]} for all teachers of the workspace.
    `corpus_texts` GSM8K test problems are used for the corpus measurements (0 skips them)."""
    revision = tuple(
        (key, len(edited), sum(version for version, _ in edited.values()))
        for key, edited in ((key, dict(state.edited)) for key, state in workspace.teachers.items())
    )
    key = (id(workspace), revision, corpus_texts)
    with _lock:
        if key not in _cache:
            texts = read_corpus(default_corpus(), limit=corpus_texts) if corpus_texts else None
            teachers = [(state.vocab, workspace.export(k)) for k, state in workspace.teachers.items()]
            name = f"GSM8K test, first {corpus_texts}" if texts else ""
            report = diagnose(workspace.student, teachers, texts, corpus_name=name)
            _cache.clear()
            _cache[key] = Diagnosis(report=report, figures=diagnose_figures(report))
        return _cache[key]
