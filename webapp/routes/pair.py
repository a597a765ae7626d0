"""POST /api/pair: a text tokenised by student and teacher, byte-offset chunks, and W rows.

Chunks come from `xtoken_align.spans`, as for `score`, `diagnose` and training. A token in no
chunk (chunk -1) is a zero-width special token or lies where the two tokenizers' bytes differ
(`round_trips` says which side does not reproduce the text).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import Chunk, PairRequest, PairToken, PairView, RoundTrips
from webapp.views import entries
from xtoken_align.spans import align_chunks, encode_spans, round_trips

router = APIRouter(tags=["pair"])


@router.post("/pair", response_model=PairView)
def pair_view(request: PairRequest, workspace: WorkspaceDep, settings: SettingsDep) -> PairView:
    if len(request.text) > settings.max_text_chars:
        raise HTTPException(413, f"text of {len(request.text):,} characters; the limit is {settings.max_text_chars:,}")
    try:
        request.text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, "text holds a lone surrogate (not valid Unicode text)") from None
    state = workspace.teacher(request.teacher)
    student, teacher = workspace.student, state.vocab
    s, t = encode_spans(student, [request.text]), encode_spans(teacher, [request.text])
    chunks = align_chunks(s, t)
    s_tokens = [
        PairToken(
            id=i, piece=student.pieces[i], display=student.display(i), start=a, end=b, chunk=c,
            row=entries(teacher, state.row(i)[1]),
        )
        for i, a, b, c in zip(*(x.tolist() for x in (s.ids, s.start, s.end, chunks.student)), strict=True)
    ]  # fmt: skip
    t_tokens = [
        PairToken(id=i, piece=teacher.pieces[i], display=teacher.display(i), start=a, end=b, chunk=c)
        for i, a, b, c in zip(*(x.tolist() for x in (t.ids, t.start, t.end, chunks.teacher)), strict=True)
    ]
    members = chunks.members()
    view_chunks = [
        Chunk(
            start=s_tokens[s_members[0]].start,
            end=s_tokens[s_members[-1]].end,
            student=s_members,
            teacher=t_members,
            one_to_one=len(s_members) == len(t_members) == 1,
        )
        for s_members, t_members in members
    ]
    s_bounds, t_bounds = _boundaries(s_tokens), _boundaries(t_tokens)
    return PairView(
        student=s_tokens,
        teacher=t_tokens,
        chunks=view_chunks,
        disagreeing_boundaries=sorted(s_bounds ^ t_bounds),
        round_trips=RoundTrips(
            student=bool(round_trips(s, [request.text])[0]), teacher=bool(round_trips(t, [request.text])[0])
        ),
    )


def _boundaries(tokens: list[PairToken]) -> set[int]:
    """Byte offsets where a token with bytes starts or ends (zero-width special tokens have none)."""
    return {x for token in tokens if token.end > token.start for x in (token.start, token.end)}
