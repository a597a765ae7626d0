"""GET /api/overview: the landing view's numbers, every teacher's current W (edits included) side by side.

Per teacher: the diagnose recommendation and its per-category common/covered counts (no corpus pass:
the audit is enough here), agreement@1 and mass@1 of `score.corpus_agreement` on the first
`corpus_texts` GSM8K test problems, and the edits since W was built. Kept by the workspace until
the next edit, undo or redo (`Workspace.derived`). Left out: the corpus mass and the unmatched
lists (the diagnosis view has them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from webapp.deps import WorkspaceDep
from webapp.schemas import Overview, OverviewCategory, OverviewTeacher
from webapp.workspace import Workspace
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.diagnose import diagnose
from xtoken_align.diagnose.report import CategoryAudit
from xtoken_align.score import corpus_agreement

router = APIRouter(tags=["overview"])


@router.get("/overview", response_model=Overview)
def overview(workspace: WorkspaceDep, corpus_texts: Annotated[int, Query(ge=0, le=2_000)] = 200) -> Overview:
    """Every teacher's W at a glance. `corpus_texts` GSM8K test problems measure agreement@1 (0 skips it)."""
    return workspace.derived("overview", corpus_texts, lambda: summarise(workspace, corpus_texts))


def summarise(workspace: Workspace, corpus_texts: int) -> Overview:
    """The overview of the workspace's current Ws (see the module docstring)."""
    texts = read_corpus(default_corpus(), limit=corpus_texts) if corpus_texts else None
    name = f"GSM8K test, first {corpus_texts}" if texts else ""
    projections = {key: workspace.export(key) for key in workspace.teachers}
    states = workspace.teachers.items()
    report = diagnose(workspace.student, [(state.vocab, projections[key]) for key, state in states], None)
    teachers = []
    for (key, state), entry in zip(states, report.teachers, strict=True):
        agreement = corpus_agreement(projections[key], workspace.student, state.vocab, texts, name) if texts else None
        done = [h["student_id"] for h in workspace.store.history(key, limit=1_000_000) if h["state"] == "done"]
        categories = {k: _category(c) for k, c in entry.categories.items()}
        teachers.append(
            OverviewTeacher(
                key=key,
                name=entry.teacher.name,
                size=entry.teacher.size,
                recommendation=entry.recommendation,
                reason=entry.reason,
                covered=sum(c.covered for c in categories.values()),
                total=sum(c.total for c in categories.values()),
                critical={k: c for k, c in categories.items() if k in report.critical},
                categories=categories,
                agreement_at_1=agreement.agreement_at_1 if agreement else None,
                mass_at_1=agreement.mass if agreement else None,
                edits=len(done),
                rows_edited=len(set(done)),
            )
        )
    categories = list(report.teachers[0].categories) if report.teachers else []
    return Overview(
        student=report.student.name,
        critical=[c for c in report.critical if c in categories],  # those the student has
        corpus=name,
        corpus_texts=len(texts) if texts else 0,
        categories=categories,
        teachers=teachers,
    )


def _category(audit: CategoryAudit) -> OverviewCategory:
    share = audit.common / audit.total if audit.total else 0.0
    return OverviewCategory(
        total=audit.total,
        common=audit.common,
        covered=audit.covered,
        common_share=round(share, 4),
        severity=audit.severity,
    )
