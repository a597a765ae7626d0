"""POST /api/pair: a text tokenised by student and teacher, byte-offset chunks, and W rows."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from webapp.deps import SettingsDep, WorkspaceDep
from webapp.schemas import Chunk, PairRequest, PairToken, PairView
from webapp.views import entries
from xtoken_align.chunks import align_by_bytes
from xtoken_align.score import token_spans

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
    s_ids = student.tokenizer.encode(request.text, add_special_tokens=False).ids
    t_ids = teacher.tokenizer.encode(request.text, add_special_tokens=False).ids
    (s_start, s_end), (t_start, t_end) = token_spans(student, s_ids), token_spans(teacher, t_ids)
    alignment = align_by_bytes(s_start, int(s_end[-1]) if s_ids else 0, t_start, int(t_end[-1]) if t_ids else 0)
    s_tokens = [
        PairToken(
            id=i, piece=student.pieces[i], display=student.display(i), start=int(a), end=int(b), chunk=int(c),
            row=entries(teacher, state.row(i)[1]),
        )
        for i, a, b, c in zip(s_ids, s_start, s_end, alignment.student_chunk, strict=True)
    ]  # fmt: skip
    t_tokens = [
        PairToken(id=i, piece=teacher.pieces[i], display=teacher.display(i), start=int(a), end=int(b), chunk=int(c))
        for i, a, b, c in zip(t_ids, t_start, t_end, alignment.teacher_chunk, strict=True)
    ]
    members: list[tuple[list[int], list[int]]] = [([], []) for _ in range(alignment.chunks)]
    for position, chunk in enumerate(alignment.student_chunk.tolist()):
        members[chunk][0].append(position)
    for position, chunk in enumerate(alignment.teacher_chunk.tolist()):
        members[chunk][1].append(position)
    chunks = [
        Chunk(
            start=int(alignment.bounds[k]),
            end=int(alignment.bounds[k + 1]),
            student=s_members,
            teacher=t_members,
            one_to_one=len(s_members) == len(t_members) == 1,
        )
        for k, (s_members, t_members) in enumerate(members)
    ]
    return PairView(
        student=s_tokens, teacher=t_tokens, chunks=chunks, disagreeing_boundaries=alignment.disagreeing.tolist()
    )
