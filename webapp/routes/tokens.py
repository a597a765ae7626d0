"""GET /api/tokens/{side}/{id}: one token, how the other side spells it, its W row or a page of its column."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from webapp.deps import WorkspaceDep
from webapp.schemas import ColumnEntry, Side, TokenDetail
from webapp.views import entries, pieces

router = APIRouter(tags=["tokens"])
COLUMN_LIMIT = 200


@router.get("/tokens/{side}/{token_id}", response_model=TokenDetail)
def token_detail(
    side: Side,
    token_id: int,
    teacher: str,
    workspace: WorkspaceDep,
    column_offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    column_limit: Annotated[int, Query(ge=1, le=COLUMN_LIMIT)] = COLUMN_LIMIT,
) -> TokenDetail:
    """A teacher token's column comes heaviest first, `column_limit` entries from `column_offset`."""
    state = workspace.teacher(teacher)
    vocab = workspace.student if side == "student" else state.vocab
    other = state.vocab if side == "student" else workspace.student
    if not 0 <= token_id < vocab.size or vocab.categories[token_id] == "unused":
        raise HTTPException(404, f"no {side} token with id {token_id}")
    detail = TokenDetail(
        side=side,
        id=token_id,
        piece=vocab.pieces[token_id],
        display=vocab.display(token_id),
        hex=vocab.token_bytes[token_id].hex(),
        category=vocab.categories[token_id],
        roles=vocab.special.get(token_id, []),
        role_evidence=list(vocab.role_evidence.get(token_id, ())),
        other_side=pieces(other, _spell(state, side, token_id)),
    )
    if side == "student":
        detail.version, row = state.row(token_id)
        detail.row = entries(state.vocab, row)
    else:
        student, column = workspace.student, state.column(token_id)
        detail.column = [
            ColumnEntry(student_id=s, piece=student.pieces[s], display=student.display(s), weight=w, rule=r)
            for s, w, r in column[column_offset : column_offset + column_limit]
        ]
        detail.column_count = len(column)
    return detail


def _spell(state, side: str, token_id: int) -> list[int]:
    """The other tokenizer's pieces for this token's bytes (re-tokenised, or byte-segmented)."""
    context = state.context if side == "student" else state.reverse_context
    vocab = context.student
    if token_id in vocab.special:
        return []
    spelled = context.retokenize([token_id]).get(token_id)
    return spelled or context.segment_bytes(vocab.token_bytes[token_id]) or []
