"""Library objects -> response models. Every token string leaves the server as plain JSON text;
the UI renders it with textContent, never as HTML."""

from __future__ import annotations

from webapp.schemas import Entry, Piece, TokenSummary
from webapp.teacher_state import TeacherState
from xtoken_align.edits import Row
from xtoken_align.impact import TokenImpact
from xtoken_align.vocab import Vocab


def entries(teacher: Vocab, row: Row) -> list[Entry]:
    return [
        Entry(teacher_id=col, piece=teacher.pieces[col], display=teacher.display(col), weight=w, rule=r, score=s)
        for col, w, r, s in row
    ]


def pieces(vocab: Vocab, ids: list[int]) -> list[Piece]:
    return [Piece(id=i, piece=vocab.pieces[i], display=vocab.display(i)) for i in ids]


def student_summary(student: Vocab, state: TeacherState, sid: int, impact: TokenImpact | None = None) -> TokenSummary:
    measured = {}
    if impact is not None:
        measured = {
            "frequency": int(impact.frequency[sid]),
            "risk": round(float(impact.risk[sid]), 4),
            "impact": round(float(impact.impact[sid]), 4),
        }
    return TokenSummary(
        id=sid,
        piece=student.pieces[sid],
        display=student.display(sid),
        hex=student.token_bytes[sid].hex(),
        category=student.categories[sid],
        degree=int(state.degrees[sid]),
        rule=state.rules[sid],
        matched=bool(state.student_matched[sid]),
        top=entries(state.vocab, state.row(sid)[1]),
        **measured,
    )


def teacher_summary(state: TeacherState, tid: int) -> TokenSummary:
    teacher = state.vocab
    return TokenSummary(
        id=tid,
        piece=teacher.pieces[tid],
        display=teacher.display(tid),
        hex=teacher.token_bytes[tid].hex(),
        category=teacher.categories[tid],
        degree=int(state.teacher_degrees[tid]),
        rule="",
        matched=bool(state.teacher_matched[tid]),
    )
