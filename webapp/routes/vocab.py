"""GET /api/vocab/{side}: search, filter, sort and page a vocabulary on the server.

Student tokens carry their corpus frequency, risk and impact (`xtoken_align.impact`, on the first
`Settings.corpus_texts` GSM8K test problems), kept per teacher by `Workspace.derived` until W changes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import Page, RuleName, Side
from webapp.search import SORT_KEYS
from webapp.search import Query as SearchQuery
from webapp.views import student_summary, teacher_summary
from webapp.workspace import Workspace
from xtoken_align.categories import CATEGORY_ORDER
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.impact import TokenImpact, token_impact

router = APIRouter(tags=["vocabulary"])
Category = Literal[CATEGORY_ORDER]  # type: ignore[valid-type]
SortKey = Literal[SORT_KEYS]  # type: ignore[valid-type]
HIGHEST_FIRST = ("impact",)  # sort keys whose default order is descending


@router.get("/vocab/{side}", response_model=Page)
def search_vocab(
    side: Side,
    teacher: str,
    workspace: WorkspaceDep,
    settings: SettingsDep,
    q: Annotated[str, Query(max_length=200)] = "",
    regex: bool = False,
    category: Category | None = None,
    matched: bool | None = None,
    rule: RuleName | None = None,
    degree: Annotated[int | None, Query(ge=0, le=64)] = None,
    sort: SortKey = "id",
    order: Annotated[
        Literal["asc", "desc"] | None,
        Query(description="asc or desc; by default asc, except desc for sort=impact (the highest impact first)"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Page:
    if limit > settings.max_page_size:
        raise HTTPException(422, f"limit {limit} is above the maximum page size {settings.max_page_size}")
    state = workspace.teacher(teacher)
    descending = (order or ("desc" if sort in HIGHEST_FIRST else "asc")) == "desc"
    query = SearchQuery(q, regex, category, matched, rule, degree, sort, descending, offset, limit)
    if side == "student":
        impact = student_impact(workspace, teacher, settings.corpus_texts)
        ids, count = workspace.student_index.search(
            query, state.rules, state.degrees, state.student_matched, impact.impact
        )
        data = [student_summary(workspace.student, state, i, impact) for i in ids]
    else:
        ids, count = state.index.search(query, state.teacher_rules, state.teacher_degrees, state.teacher_matched)
        data = [teacher_summary(state, i) for i in ids]
    return Page(data=data, count=count)


def student_impact(workspace: Workspace, teacher: str, corpus_texts: int) -> TokenImpact:
    """The impact arrays of the student tokens under teacher `teacher`'s current W, kept until it changes."""

    def compute() -> TokenImpact:
        texts = read_corpus(default_corpus(), limit=corpus_texts)
        return token_impact(workspace.export(teacher), workspace.student, workspace.teacher(teacher).vocab, texts)

    return workspace.derived(f"impact:{teacher}", corpus_texts, compute)
