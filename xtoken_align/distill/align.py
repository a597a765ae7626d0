"""Chunk alignment of a student and a teacher tokenisation of one text, ready for the losses.

Two methods give the same `SampleAlignment` (docs/distill-interfaces.md):

- `"bytes"` (default): a byte-offset walk. Each token covers the canonical bytes it adds to the
  decoded text (`Vocab.token_bytes`; special tokens such as a BOS have zero width and belong to no
  chunk, so a one-sided BOS desynchronises nothing); a chunk closes wherever both sides reach the
  same byte offset. Linear time, vectorised numpy, no Python loop over tokens.
- `"dp"`: the paper's Needleman-Wunsch alignment over canonical token bytes with the reference
  constants (method.md §3): exact match +3 (a mismatched diagonal -3), one token against the join
  of k ≤ 4 tokens on the other side +1.5·k, gap -1.5, unique 3-gram anchors to avoid quadratic
  cost. Runs of unmatched pairs are merged when their bytes agree and dropped otherwise, so gap
  positions are excluded (chunk -1). Slower; offered for comparison with the reference aligner.

Then, for both methods: logit position p carries the chunk of token p+1; a chunk is valid only
when both sides predict every one of its tokens (so a one-sided BOS costs the first chunk of the
side without one, nothing more); valid chunks are renumbered 0..n_chunks-1 in text order.

Text whose bytes differ between the two sides (a normaliser such as Qwen's NFC rewrote it) is
handled by trusting the common byte prefix and suffix only: the chunk spanning the differing
middle is dropped. Left out: re-synchronising between two separate divergences in one text (the
whole stretch between them is dropped) and any tokenisation itself (see data.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xtoken_align.distill.align_dp import align_dp
from xtoken_align.errors import XTokenError
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
class _Tables:
    """Per-vocabulary lookups, built once: canonical width (0 for special tokens) and bytes."""

    data: list[bytes]  # canonical bytes by id, b"" for special tokens
    width: np.ndarray  # int64 (V,)
    special: np.ndarray  # bool (V,)
    flat: np.ndarray  # uint8, every id's canonical bytes back to back
    offset: np.ndarray  # int64 (V,) where each id's bytes start in `flat`


_TABLES: dict[int, tuple[Vocab, _Tables]] = {}


def _tables(vocab: Vocab) -> _Tables:
    held = _TABLES.get(id(vocab))
    if held is not None and held[0] is vocab:
        return held[1]
    special = np.zeros(vocab.size, dtype=bool)
    special[list(vocab.special)] = True
    data = [b"" if special[i] else b for i, b in enumerate(vocab.token_bytes)]
    width = np.fromiter(map(len, data), dtype=np.int64, count=vocab.size)
    flat = np.frombuffer(b"".join(data), dtype=np.uint8)
    tables = _Tables(data, width, special, flat, np.cumsum(width) - width)
    _TABLES[id(vocab)] = (vocab, tables)
    return tables


@dataclass(frozen=True)
class _Side:
    """One tokenisation laid out on its byte stream."""

    ids: np.ndarray  # int64 (T,)
    special: np.ndarray  # bool (T,)
    start: np.ndarray  # int64 (T,) byte offset where each token starts (zero-width: start == end)
    end: np.ndarray  # int64 (T,)
    stream: bytes  # the decoded text


def _side(vocab: Vocab, ids) -> _Side:
    """`token_spans` with zero-width special tokens, plus the byte stream itself.

    SentencePiece drops the text's first space: the first token with bytes loses its leading one.
    """
    tables = _tables(vocab)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    width = tables.width[ids]
    end = np.add.accumulate(width)
    start = end - width
    stream = b"".join(map(tables.data.__getitem__, ids.tolist()))  # a C-level join, no Python loop
    if vocab.strips_leading_space and stream[:1] == b" ":
        stream, start, end = stream[1:], np.maximum(start - 1, 0), np.maximum(end - 1, 0)
    return _Side(ids, tables.special[ids], start, end, stream)


def align_sample(student: Vocab, teacher: Vocab, student_ids, teacher_ids, method: str = "bytes") -> SampleAlignment:
    """Chunks of one text tokenised by `student` and by `teacher` (ids include any BOS/EOS).

    "201 x" with a student BOS, student `<bos> 201 ␣x` against teacher `2 0 1 ␣x`: chunk 0 (`201`)
    is dropped (the teacher has no position predicting its `2`), chunk 1 (` x`) is kept:
    student_chunk [-1, 0, -1], teacher_chunk [-1, -1, 0, -1], labels [201, ␣x, -100].
    """
    if method != "bytes":
        return align_batch(student, teacher, [student_ids], [teacher_ids], method)[0]
    return _walk_bytes(_side(student, student_ids), _side(teacher, teacher_ids))


def align_batch(
    student: Vocab, teacher: Vocab, student_ids: Sequence, teacher_ids: Sequence, method: str = "bytes"
) -> list[SampleAlignment]:
    """`align_sample` for many texts at once. The byte walk runs over all of them in one pass of
    numpy calls (their per-call cost, not the tokens, bounds a one-text call); texts whose bytes
    differ between the two sides, and the DP, go one text at a time."""
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
    return _walk_batch(_batch_side(student, student_ids), _batch_side(teacher, teacher_ids), student, teacher)


@dataclass(frozen=True)
class _Batch:
    """Many tokenisations back to back: token arrays (N,), per-text arrays (n,), bytes (sum L,)."""

    ids: np.ndarray  # int64 (N,)
    text: np.ndarray  # int64 (N,) which text each token belongs to
    special: np.ndarray  # bool (N,)
    start: np.ndarray  # int64 (N,) byte offset in its own text
    end: np.ndarray  # int64 (N,)
    count: np.ndarray  # int64 (n,) tokens per text
    first: np.ndarray  # int64 (n,) index of each text's first token
    size: np.ndarray  # int64 (n,) bytes per text
    stream: np.ndarray  # uint8 (sum size,) every text's bytes back to back


def _batch_side(vocab: Vocab, sequences: Sequence) -> _Batch:
    """`_side` for many sequences with a fixed number of numpy calls."""
    tables = _tables(vocab)
    arrays = [np.asarray(x, dtype=np.int64).reshape(-1) for x in sequences]
    count = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
    ids = np.concatenate(arrays)
    text = np.repeat(np.arange(len(arrays)), count)
    first = np.cumsum(count) - count
    width = tables.width[ids]
    ends = np.cumsum(width)
    total = int(ends[-1]) if len(ends) else 0
    starts = ends - width  # in the joined stream
    stream = tables.flat[np.repeat(tables.offset[ids] - starts, width) + np.arange(total)]
    byte_first = np.append(starts, total)[first]
    size = np.diff(np.append(byte_first, total))
    start = starts - byte_first[text]
    end = start + width
    if vocab.strips_leading_space and total:  # SentencePiece: each text's first space is not in the text
        strip = (size > 0) & (stream[np.minimum(byte_first, total - 1)] == 32)
        keep = np.ones(total, dtype=bool)
        keep[byte_first[strip]] = False
        stream, size = stream[keep], size - strip
        start, end = np.maximum(start - strip[text], 0), np.maximum(end - strip[text], 0)
    return _Batch(ids, text, tables.special[ids], start, end, count, first, size, stream)


def _differing(s: _Batch, t: _Batch) -> np.ndarray:
    """Indices of the texts whose two byte streams are not identical."""
    same_size = s.size == t.size
    s_keep = np.repeat(same_size, s.size)
    t_keep = np.repeat(same_size, t.size)
    where = np.flatnonzero(s.stream[s_keep] != t.stream[t_keep])
    kept = np.where(same_size, s.size, 0)
    return np.union1d(np.flatnonzero(~same_size), np.searchsorted(np.cumsum(kept), where, side="right"))


def _walk_batch(s: _Batch, t: _Batch, student: Vocab, teacher: Vocab) -> list[SampleAlignment]:
    """The byte walk over every text at once, in one shared coordinate: text k occupies
    [base_k, base_k + L_k] with a one-byte gap after it, so no boundary is shared across texts."""
    differing = _differing(s, t)
    skip = np.zeros(len(s.count), dtype=bool)
    skip[differing] = True
    length = np.maximum(s.size, t.size)
    base = np.cumsum(length + 1) - (length + 1)
    shared = np.zeros(int(base[-1] + length[-1]) + 2, dtype=bool)
    shared[base] = True
    shared[base[s.text] + s.end] = True
    t_mark = np.zeros_like(shared)
    t_mark[base] = True
    t_mark[base[t.text] + t.end] = True
    shared &= t_mark
    bound = np.cumsum(shared)  # bound[x]: shared boundaries at or before x
    first_chunk = bound[base] - 1  # chunk ids are global here; text k's run from first_chunk[k]
    last_chunk = np.where(length > 0, bound[base + length] - 2, -1)  # the chunk ending at base + L_k

    def chunks(side: _Batch) -> np.ndarray:
        chunk = np.minimum(bound[base[side.text] + side.start] - 1, last_chunk[side.text])
        return np.where(side.special | skip[side.text] | (length[side.text] == 0), -1, chunk)

    s_chunk, t_chunk = chunks(s), chunks(t)
    n_all = int(bound[-1])
    on_s, on_t = np.zeros(n_all + 1, dtype=bool), np.zeros(n_all + 1, dtype=bool)  # slot n_all stands for -1
    on_s[s_chunk] = True
    on_t[t_chunk] = True
    valid = on_s & on_t
    valid[s_chunk[s.first[s.count > 0]]] = False  # a text's first token has no position predicting it
    valid[t_chunk[t.first[t.count > 0]]] = False
    valid[n_all] = False
    before = np.cumsum(valid) - valid  # valid chunks before each global chunk
    n_chunks = np.diff(np.append(before[first_chunk], before[n_all]))

    def shifted(side: _Batch, chunk: np.ndarray) -> list[np.ndarray]:
        local = np.where(valid[chunk], before[chunk] - before[first_chunk[side.text]], -1)
        out = np.append(local[1:], -1)
        out[(side.first + side.count - 1)[side.count > 0]] = -1  # each text's last position predicts nothing
        return np.split(out, np.cumsum(side.count)[:-1])

    labels = np.append(s.ids[1:], -100)
    labels[(s.first + s.count - 1)[s.count > 0]] = -100
    cut = np.cumsum(s.count)[:-1]
    results = [
        SampleAlignment(a, b, c, d, e, int(k))
        for a, b, c, d, e, k in zip(
            np.split(s.ids, cut),
            np.split(t.ids, np.cumsum(t.count)[:-1]),
            shifted(s, s_chunk),
            shifted(t, t_chunk),
            np.split(labels, cut),
            n_chunks,
            strict=True,
        )
    ]
    for k in differing.tolist():  # a normaliser changed the text: one text at a time
        results[k] = _walk_bytes(_side(student, results[k].student_ids), _side(teacher, results[k].teacher_ids))
    return results


def _walk_bytes(s: _Side, t: _Side) -> SampleAlignment:
    """The byte walk for one text."""
    size = len(s.stream)
    if s.stream != t.stream:
        return _finish(s.ids, t.ids, *_walk_diverging(s, t))
    if size == 0:
        return _finish(s.ids, t.ids, np.full(len(s.ids), -1), np.full(len(t.ids), -1))
    mark = np.zeros(size + 1, dtype=np.int8)
    mark[s.end] = 1
    mark[t.end] += 2  # repeated offsets (zero-width tokens) add once
    mark[0] = 3
    bound = np.add.accumulate(mark == 3, dtype=np.int64)  # bound[x]: shared boundaries at or before x
    last = int(bound[size]) - 2  # the chunk that ends at the end of the text
    s_chunk, t_chunk = np.minimum(bound[s.start] - 1, last), np.minimum(bound[t.start] - 1, last)
    s_chunk[s.special] = -1
    t_chunk[t.special] = -1
    # Every chunk has bytes, so tokens, on both sides: the only one to drop is chunk 0 when a side's
    # first token is in it (no position predicts that token).
    drop = int(s_chunk[:1].tolist() == [0] or t_chunk[:1].tolist() == [0])
    return SampleAlignment(
        s.ids, t.ids, _shift(s_chunk - drop), _shift(t_chunk - drop), _labels(s.ids), last + 1 - drop
    )


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


def _walk_diverging(s: _Side, t: _Side) -> tuple[np.ndarray, np.ndarray]:
    """Token-level chunks of a text that a normaliser changed on one side: trust the common prefix
    [0, p) and the common suffix of q bytes; the chunk that spans the differing middle is dropped."""
    a, b = np.frombuffer(s.stream, dtype=np.uint8), np.frombuffer(t.stream, dtype=np.uint8)
    ls, lt = len(a), len(b)
    n = min(ls, lt)
    differ = np.flatnonzero(a[:n] != b[:n])
    p = int(differ[0]) if len(differ) else n
    tail = np.flatnonzero(a[ls - n + p :][::-1] != b[lt - n + p :][::-1])
    q = int(tail[0]) if len(tail) else n - p
    s_bounds, t_bounds = np.union1d(s.end, [0]), np.union1d(t.end, [0])
    head = np.intersect1d(s_bounds[s_bounds <= p], t_bounds[t_bounds <= p], assume_unique=True)
    back = np.intersect1d(s_bounds[s_bounds >= ls - q] - ls, t_bounds[t_bounds >= lt - q] - lt, assume_unique=True)
    s_cut, t_cut = np.concatenate([head, back + ls]), np.concatenate([head, back + lt])
    dirty = len(head) - 1  # the chunk from the prefix's last shared offset to the suffix's first
    s_chunk = np.minimum(np.searchsorted(s_cut, s.start, side="right") - 1, len(s_cut) - 2)
    t_chunk = np.minimum(np.searchsorted(t_cut, t.start, side="right") - 1, len(t_cut) - 2)
    return np.where(s.special | (s_chunk == dirty), -1, s_chunk), np.where(t.special | (t_chunk == dirty), -1, t_chunk)


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
