"""GET /api/vocab/{side}: search, filter, sort and page a vocabulary on the server."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import Page, RuleName, Side
from webapp.search import SORT_KEYS
from webapp.search import Query as SearchQuery
from webapp.views import student_summary, teacher_summary
from xtoken_align.categories import CATEGORY_ORDER

router = APIRouter(tags=["vocabulary"])
Category = Literal[CATEGORY_ORDER]  # type: ignore[valid-type]
SortKey = Literal[SORT_KEYS]  # type: ignore[valid-type]


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
    order: Literal["asc", "desc"] = "asc",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Page:
    if limit > settings.max_page_size:
        raise HTTPException(422, f"limit {limit} is above the maximum page size {settings.max_page_size}")
    state = workspace.teacher(teacher)
    query = SearchQuery(q, regex, category, matched, rule, degree, sort, order == "desc", offset, limit)
    if side == "student":
        ids, count = workspace.student_index.search(query, state.rules, state.degrees, state.student_matched)
        data = [student_summary(workspace.student, state, i) for i in ids]
    else:
        ids, count = state.index.search(query, state.teacher_rules, state.teacher_degrees, state.teacher_matched)
        data = [teacher_summary(state, i) for i in ids]
    return Page(data=data, count=count)
