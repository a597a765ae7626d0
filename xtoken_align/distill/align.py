"""Chunk alignment of a student and a teacher tokenisation of one text, ready for the losses.

Two methods give the same `SampleAlignment` (docs/distill-interfaces.md):

- `"bytes"` (default): the byte-offset chunks of `xtoken_align.spans`, the same the pair view,
  `score` and `diagnose` use. Each token covers the canonical bytes it adds to the decoded text
  (special tokens such as a BOS have zero width and belong to no chunk, so a one-sided BOS
  desynchronises nothing); a chunk closes wherever both sides reach the same byte offset. Linear
  time, vectorised numpy, no Python loop over tokens.
- `"dp"`: the paper's Needleman-Wunsch alignment over canonical token bytes with the reference
  constants (method.md §3): exact match +3 (a mismatched diagonal -3), one token against the join
  of k ≤ 4 tokens on the other side +1.5·k, gap -1.5, unique 3-gram anchors to avoid quadratic
  cost. Runs of unmatched pairs are merged when their bytes agree and dropped otherwise, so gap
  positions are excluded (chunk -1). Slower; offered for comparison with the reference aligner.

Then, for both methods: logit position p carries the chunk of token p+1; a chunk is valid only
when both sides predict every one of its tokens (so a one-sided BOS costs the first chunk of the
side without one, nothing more); valid chunks are renumbered 0..n_chunks-1 in text order.

Text whose bytes differ between the two sides (a normaliser such as Qwen's NFC rewrote it) is
handled by trusting the common byte prefix and suffix only (`spans`): the stretch spanning the
differing middle is dropped. Left out: re-synchronising between two separate divergences in one text (the
whole stretch between them is dropped) and any tokenisation itself (see data.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xtoken_align.distill.align_dp import align_dp
from xtoken_align.errors import XTokenError
from xtoken_align.spans import Chunks, Spans, align_chunks, token_spans
from xtoken_align.vocab import Vocab


@dataclass
class SampleAlignment:
    student_ids: np.ndarray  # int64 (T_s,)
    teacher_ids: np.ndarray  # int64 (T_t,)
    student_chunk: np.ndarray  # int64 (T_s,) chunk of the token each logit position predicts, or -1
    teacher_chunk: np.ndarray  # int64 (T_t,)
    labels: np.ndarray  # int64 (T_s,) next student token, -100 at the last position
    n_chunks: int


@dataclass(frozen=True)
class _Side:
    """One tokenisation of one text, as the DP aligner reads it."""

    ids: np.ndarray  # int64 (T,)
    special: np.ndarray  # bool (T,)
    start: np.ndarray  # int64 (T,) byte offset where each token starts (zero-width: start == end)
    end: np.ndarray  # int64 (T,)
    stream: bytes  # the decoded text


def _side(vocab: Vocab, ids) -> _Side:
    spans = token_spans(vocab, [ids])
    return _Side(spans.ids, spans.special, spans.start, spans.end, spans.text_bytes(0))


def align_sample(student: Vocab, teacher: Vocab, student_ids, teacher_ids, method: str = "bytes") -> SampleAlignment:
    """Chunks of one text tokenised by `student` and by `teacher` (ids include any BOS/EOS).

    "201 x" with a student BOS, student `<bos> 201 ␣x` against teacher `2 0 1 ␣x`: chunk 0 (`201`)
    is dropped (the teacher has no position predicting its `2`), chunk 1 (` x`) is kept:
    student_chunk [-1, 0, -1], teacher_chunk [-1, -1, 0, -1], labels [201, ␣x, -100].
    """
    if method != "bytes":
        return align_batch(student, teacher, [student_ids], [teacher_ids], method)[0]
    s, t = token_spans(student, [student_ids]), token_spans(teacher, [teacher_ids])
    chunks = align_chunks(s, t)  # one text: its chunk ids are already local
    return _finish(s.ids, t.ids, chunks.student, chunks.teacher)


def align_batch(
    student: Vocab, teacher: Vocab, student_ids: Sequence, teacher_ids: Sequence, method: str = "bytes"
) -> list[SampleAlignment]:
    """`align_sample` for many texts at once. The byte walk runs over all of them in one pass of
    numpy calls (`spans.align_chunks`); the DP goes one text at a time."""
    if len(student_ids) != len(teacher_ids):
        raise XTokenError(f"{len(student_ids)} student sequences but {len(teacher_ids)} teacher sequences")
    if method == "dp":
        out = []
        for s_ids, t_ids in zip(student_ids, teacher_ids, strict=True):
            s, t = _side(student, s_ids), _side(teacher, t_ids)
            out.append(_finish(s.ids, t.ids, *align_dp(s, t)))
        return out
    if method != "bytes":
        raise XTokenError(f"unknown alignment method {method!r}: use 'bytes' or 'dp'")
    if not len(student_ids):
        return []
    s, t = token_spans(student, student_ids), token_spans(teacher, teacher_ids)
    return _trainable(s, t, align_chunks(s, t))


def _trainable(s: Spans, t: Spans, chunks: Chunks) -> list[SampleAlignment]:
    """Keep the chunks whose every token some position predicts (not a text's first token on either
    side), renumber them per text, and shift: position p carries the chunk of token p + 1."""
    n_all = chunks.total
    on_s, on_t = np.zeros(n_all + 1, dtype=bool), np.zeros(n_all + 1, dtype=bool)  # slot n_all stands for -1
    on_s[chunks.student] = True
    on_t[chunks.teacher] = True
    valid = on_s & on_t
    valid[chunks.student[s.first[s.count > 0]]] = False  # a text's first token has no position predicting it
    valid[chunks.teacher[t.first[t.count > 0]]] = False
    valid[n_all] = False
    before = np.cumsum(valid) - valid  # valid chunks before each global chunk
    start = before[chunks.first]  # valid chunks before each text's first one
    n_chunks = np.diff(np.append(start, before[n_all]))

    def shifted(side: Spans, chunk: np.ndarray) -> list[np.ndarray]:
        out = _shift(np.where(valid[chunk], before[chunk] - start[side.text], -1))
        out[(side.first + side.count - 1)[side.count > 0]] = -1  # each text's last position predicts nothing
        return _per_text(out, side)

    labels = _labels(s.ids)
    labels[(s.first + s.count - 1)[s.count > 0]] = -100
    return [
        SampleAlignment(a, b, c, d, e, int(k))
        for a, b, c, d, e, k in zip(
            _per_text(s.ids, s),
            _per_text(t.ids, t),
            shifted(s, chunks.student),
            shifted(t, chunks.teacher),
            _per_text(labels, s),
            n_chunks.tolist(),
            strict=True,
        )
    ]


def _per_text(values: np.ndarray, side: Spans) -> list[np.ndarray]:
    """A token array cut into its texts (one text: the array itself, no numpy call)."""
    return [values] if side.texts == 1 else np.split(values, np.cumsum(side.count)[:-1])


def _shift(token_chunk: np.ndarray) -> np.ndarray:
    """Position p takes the chunk of token p + 1 (anything below 0 becomes -1)."""
    out = np.empty_like(token_chunk)
    np.maximum(token_chunk[1:], -1, out=out[:-1])
    out[-1:] = -1
    return out


def _labels(ids: np.ndarray) -> np.ndarray:
    labels = np.empty_like(ids)
    labels[:-1] = ids[1:]
    labels[-1:] = -100
    return labels


def _finish(s_ids: np.ndarray, t_ids: np.ndarray, s_chunk: np.ndarray, t_chunk: np.ndarray) -> SampleAlignment:
    """Keep chunks whose every token is predicted on both sides, renumber them, shift by one."""
    n = int(max(s_chunk.max(initial=-1), t_chunk.max(initial=-1))) + 1
    on_s, on_t = np.zeros(n + 1, dtype=bool), np.zeros(n + 1, dtype=bool)  # slot n stands for -1
    on_s[s_chunk] = True
    on_t[t_chunk] = True
    valid = on_s & on_t
    valid[s_chunk[:1]] = False  # token 0 has no position predicting it
    valid[t_chunk[:1]] = False
    valid[n] = False
    renumber = np.where(valid, np.cumsum(valid) - 1, -1)
    return SampleAlignment(
        s_ids, t_ids, _shift(renumber[s_chunk]), _shift(renumber[t_chunk]), _labels(s_ids), int(valid.sum())
    )


def chunk_agreement(a: SampleAlignment, b: SampleAlignment) -> tuple[int, int]:
    """(chunks of `a` found identically in `b`, chunks of `a`): a chunk is its student and teacher positions."""

    def chunks(x: SampleAlignment) -> set[tuple[tuple[int, ...], tuple[int, ...]]]:
        out: list[tuple[list[int], list[int]]] = [([], []) for _ in range(x.n_chunks)]
        for position, k in enumerate(x.student_chunk.tolist()):
            if k >= 0:
                out[k][0].append(position)
        for position, k in enumerate(x.teacher_chunk.tolist()):
            if k >= 0:
                out[k][1].append(position)
        return {(tuple(s), tuple(t)) for s, t in out}

    mine = chunks(a)
    return len(mine & chunks(b)), len(mine)
