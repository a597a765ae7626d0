"""Corpus agreement: does W's top teacher token for a student token match the teacher's own token?

Both tokenizers tokenise the corpus, `spans.align_chunks` lays the two on bytes, and at every
student token that opens a chunk the teacher token opening it is the reference. `corpus_agreement`
reports it per category; `token_agreement` counts it per student id (for the impact order).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xtoken_align.projection import Projection
from xtoken_align.score.report import CategoryAgreement, CorpusAgreement, NotRoundTrip, UnreproducedText
from xtoken_align.spans import Chunks, Spans, align_chunks, encode_spans, opening_pairs, round_trips
from xtoken_align.vocab import Vocab

NAMED_TEXTS = 20  # texts named in a report's not-round-trip list; the counts cover all


class TokenAgreement(NamedTuple):
    """Per student id (V_S,): chunk openings and, of those, agreements of W's top teacher token."""

    opened: np.ndarray  # int64 (V_S,) times the token opens a chunk
    agreed: np.ndarray  # int64 (V_S,) times W's top teacher token is the teacher token opening it

    def at_1(self) -> np.ndarray:
        """(V_S,) float64 agreement@1 per token, NaN where it never opens a chunk."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.opened > 0, self.agreed / self.opened, np.nan)


def token_agreement(projection: Projection, s: Spans, t: Spans) -> TokenAgreement:
    """`corpus_agreement`'s hits counted per student id, over the same opening pairs: `s` and `t`
    are the student's and the teacher's `encode_spans` of the same texts."""
    _, s_al, _, hits = _opening_hits(projection, s, t, align_chunks(s, t))
    size = projection.shape[0]
    opened = np.bincount(s_al, minlength=size)
    return TokenAgreement(opened, np.bincount(s_al, weights=hits, minlength=size).astype(np.int64))


def corpus_agreement(
    projection: Projection, student: Vocab, teacher: Vocab, texts: list[str], name: str = ""
) -> CorpusAgreement:
    """agreement@1 and mass on the teacher's actual token, over student tokens that open a chunk
    (`spans.align_chunks`: the teacher has a token starting at the same byte, `aligned_share`);
    per student category. `chunked_share`: student tokens in a chunk that closes on both sides, as
    training sees them. Texts that a tokenizer does not round-trip are counted and named apart."""
    s, t = encode_spans(student, texts), encode_spans(teacher, texts)
    chunks = align_chunks(s, t)
    aligned, s_al, t_al, hits = _opening_hits(projection, s, t, chunks)
    mass = np.asarray(projection.matrix[s_al, t_al]).ravel() if len(s_al) else np.zeros(0)
    categories = student.category_codes
    every, cats = categories.codes[s.ids], categories.codes[s_al]
    per_category = {}
    for k in np.unique(cats).tolist():  # codes follow report order
        pick = cats == k
        per_category[categories.names[k]] = CategoryAgreement(
            tokens=int(pick.sum()),
            aligned_share=round(int(pick.sum()) / int((every == k).sum()), 4),
            agreement_at_1=round(float(hits[pick].mean()), 4),
            mass=round(float(mass[pick].mean()), 4),
        )
    s_ok, t_ok = round_trips(s, texts), round_trips(t, texts)
    clean = np.repeat(s_ok & t_ok, s.count)
    named = np.flatnonzero(~(s_ok & t_ok))[:NAMED_TEXTS].tolist()
    return CorpusAgreement(
        name=name,
        texts=len(texts),
        student_tokens=len(s.ids),
        aligned_tokens=int(aligned.sum()),
        aligned_share=_share(aligned),
        aligned_share_round_trip=_share(aligned[clean]),
        chunked_share=_share(chunks.student[~s.special] >= 0),
        not_round_trip=NotRoundTrip(
            student=int((~s_ok).sum()),
            teacher=int((~t_ok).sum()),
            texts=[UnreproducedText(text=k, side=_sides(s_ok[k], t_ok[k]), starts=texts[k][:60]) for k in named],
        ),
        agreement_at_1=_share(hits),
        mass=round(float(mass.mean()), 4) if len(mass) else 0.0,
        categories=per_category,
    )


def _opening_hits(
    projection: Projection, s: Spans, t: Spans, chunks: Chunks
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The opening pairs (`spans.opening_pairs`) and their hits: the (N_s,) mask of student tokens
    that open a chunk, their student ids, the teacher ids opening the same chunks, and (for each
    pair) whether W's top teacher token for the student id is that teacher id."""
    aligned, t_at = opening_pairs(s, t, chunks)
    s_al, t_al = s.ids[aligned], t.ids[t_at]
    return aligned, s_al, t_al, projection.leading().teacher[s_al] == t_al


def _share(flags: np.ndarray) -> float:
    return round(float(flags.mean()), 4) if len(flags) else 0.0


def _sides(student_ok: bool, teacher_ok: bool) -> str:
    return "both" if not (student_ok or teacher_ok) else "student" if not student_ok else "teacher"
