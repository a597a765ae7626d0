"""Token byte spans and shared chunks: the one place that says where tokens sit in a text.

Every consumer (the pair view, `score`, `diagnose`, the distillation aligner) lays tokens out and
chunks two tokenisations through this module, so they agree chunk for chunk.

- Spans. A token covers its canonical bytes (`Vocab.token_bytes`); special tokens (BOS, turn
  markers) have zero width. The text a sequence stands for is those bytes joined, with the
  tokenizer's start-of-text rule applied: a decoder that strips SentencePiece's dummy prefix drops
  the stream's first byte when it is a space (`Vocab.strips_leading_space`, read from the decoder
  itself). That text is `tokenizer.decode(ids, skip_special_tokens=True)`, byte for byte; it equals
  the encoded text wherever the tokenizer round-trips it (`round_trips` says where it does not).
- Chunks. A chunk closes wherever both sides reach the same byte offset (method.md §3). Where the
  two byte streams differ (a normaliser such as NFC rewrote one side, or a tokenizer does not
  round-trip), the common prefix and suffix are trusted and the stretch between them belongs to no
  chunk (-1), as do special tokens.

Everything is vectorised over many texts at once; only texts whose streams differ go one by one.
Left out: what a chunk means for training (which chunks a model predicts, the one-position shift:
`distill/align.py`) or for reports (`score`, `diagnose.corpus`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from xtoken_align.vocab import Vocab


@dataclass(frozen=True)
class Spans:
    """Many tokenisations back to back: token arrays (N,), per-text arrays (n,), bytes (sum size,)."""

    ids: np.ndarray  # int64 (N,)
    text: np.ndarray  # int64 (N,) which text each token belongs to
    special: np.ndarray  # bool (N,) zero-width special token
    start: np.ndarray  # int64 (N,) byte offset in its own text (zero width: start == end)
    end: np.ndarray  # int64 (N,)
    count: np.ndarray  # int64 (n,) tokens per text
    first: np.ndarray  # int64 (n,) index of each text's first token
    size: np.ndarray  # int64 (n,) bytes per text
    stream: np.ndarray  # uint8 (sum size,) every text's bytes back to back

    @property
    def texts(self) -> int:
        return len(self.count)

    def text_bytes(self, k: int) -> bytes:
        at = int(self.size[:k].sum())
        return self.stream[at : at + int(self.size[k])].tobytes()

    def tokens(self, k: int) -> slice:
        """The token positions of text `k`."""
        return slice(int(self.first[k]), int(self.first[k] + self.count[k]))


def token_spans(vocab: Vocab, sequences: Sequence) -> Spans:
    """Byte spans of many id sequences (each may include BOS/EOS and other special tokens).

    Llama-3's `<|begin_of_text|>`, `201`, ` x`, `<|eot_id|>` spell `201 x`: starts [0, 0, 3, 5],
    ends [0, 3, 5, 5] (tests/test_spans.py checks exactly this).
    """
    table = vocab.byte_table
    arrays = [np.asarray(x, dtype=np.int64).reshape(-1) for x in sequences]
    count = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
    ids = arrays[0] if len(arrays) == 1 else np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    text = np.zeros(len(ids), np.int64) if len(arrays) == 1 else np.repeat(np.arange(len(arrays)), count)
    first = np.cumsum(count) - count
    width = table.width[ids]
    ends = np.cumsum(width)
    total = int(ends[-1]) if len(ends) else 0
    starts = ends - width  # in the joined stream
    stream = table.flat[np.repeat(table.offset[ids] - starts, width) + np.arange(total)]
    byte_first = np.append(starts, total)[first]
    size = np.diff(np.append(byte_first, total))
    start = starts - byte_first[text]
    end = start + width
    if vocab.strips_leading_space and total:  # the decoder drops each text's first space
        strip = (size > 0) & (stream[np.minimum(byte_first, total - 1)] == 32)
        keep = np.ones(total, dtype=bool)
        keep[byte_first[strip]] = False
        stream, size = stream[keep], size - strip
        start, end = np.maximum(start - strip[text], 0), np.maximum(end - strip[text], 0)
    return Spans(ids, text, table.special[ids], start, end, count, first, size, stream)


def encode_spans(vocab: Vocab, texts: Sequence[str]) -> Spans:
    """Tokenise texts (no BOS/EOS added) in one batch and lay the tokens out."""
    encodings = vocab.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    counts = [len(e.ids) for e in encodings]
    flat = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=sum(counts))
    return token_spans(vocab, np.split(flat, np.cumsum(counts)[:-1]) if counts else [])


def round_trips(spans: Spans, texts: Sequence[str]) -> np.ndarray:
    """(n,) bool: the tokens' text is exactly the text they were encoded from."""
    encoded = [t.encode("utf-8") for t in texts]
    want = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    return _equal_streams(spans.size, spans.stream, want, np.frombuffer(b"".join(encoded), dtype=np.uint8))


@dataclass(frozen=True)
class Chunks:
    """Shared chunks of two `Spans` of the same texts. Chunk ids are global: text k owns
    `first[k] .. first[k] + count[k] - 1`, numbered in text order."""

    student: np.ndarray  # int64 (N_s,) chunk of each student token, -1 for none
    teacher: np.ndarray  # int64 (N_t,)
    first: np.ndarray  # int64 (n,) each text's first chunk id
    count: np.ndarray  # int64 (n,) chunks per text
    diverged: np.ndarray  # bool (n,) the two byte streams differ; their middle stretch is in no chunk

    @property
    def total(self) -> int:
        return int(self.count.sum())

    def members(self) -> list[tuple[list[int], list[int]]]:
        """Per chunk, the positions of its student tokens and of its teacher tokens."""
        return chunk_members(self.student, self.teacher, self.total)


def chunk_members(student: np.ndarray, teacher: np.ndarray, total: int) -> list[tuple[list[int], list[int]]]:
    """Per chunk id 0..total-1, (student positions, teacher positions) in it; -1 is no chunk.

    >>> chunk_members(np.array([0, 1]), np.array([0, 0, -1, 1]), 2)
    [([0], [0, 1]), ([1], [3])]
    """
    members: list[tuple[list[int], list[int]]] = [([], []) for _ in range(total)]
    for side, chunks in enumerate((student, teacher)):
        for position, chunk in enumerate(chunks.tolist()):
            if chunk >= 0:
                members[chunk][side].append(position)
    return members


def align_chunks(s: Spans, t: Spans) -> Chunks:
    """Chunks of two tokenisations of the same texts (see the module docstring).

    "201 x": student `201`,` x` against teacher `2`,`0`,`1`,` x` gives student [0, 1], teacher
    [0, 0, 0, 1]: two chunks, the numeral and the word.
    """
    if s.texts != t.texts:
        raise ValueError(f"{s.texts} student texts but {t.texts} teacher texts")
    n = s.texts
    diverged = ~_equal_streams(s.size, s.stream, t.size, t.stream)
    length = np.maximum(s.size, t.size)
    # One shared coordinate: text k occupies [base_k, base_k + L_k] with a one-byte gap after it,
    # so no boundary is shared across texts.
    base = np.cumsum(length + 1) - (length + 1)
    span = int(base[-1] + length[-1]) + 2 if n else 1
    marks = []
    for side in (s, t):
        mark = np.zeros(span, dtype=bool)
        mark[base] = True
        mark[base[side.text] + side.end] = True
        marks.append(mark)
    bound = np.cumsum(marks[0] & marks[1])  # bound[x]: shared boundaries at or before x
    first_global = bound[base] - 1
    count = np.where(length > 0, bound[base + length] - 1 - first_global, 0)

    def local(side: Spans) -> np.ndarray:
        chunk = np.minimum(bound[base[side.text] + side.start] - 1, first_global[side.text] + count[side.text] - 1)
        return np.where(side.special | diverged[side.text], -1, chunk - first_global[side.text])

    s_local, t_local = local(s), local(t)
    for k in np.flatnonzero(diverged).tolist():
        s_local[s.tokens(k)], t_local[t.tokens(k)], count[k] = _diverging(s, t, k)
    first = np.cumsum(count) - count
    s_chunk = np.where(s_local >= 0, s_local + first[s.text], -1)
    t_chunk = np.where(t_local >= 0, t_local + first[t.text], -1)
    return Chunks(s_chunk, t_chunk, first, count, diverged)


def opening_pairs(s: Spans, t: Spans, chunks: Chunks) -> tuple[np.ndarray, np.ndarray]:
    """Student tokens that open a chunk, and the teacher token opening the same chunk: a (N_s,) bool
    mask and, for the masked tokens, teacher positions. Both corpus agreement and the corpus rule
    read exactly these pairs. "201 x", student `201`,` x` against `2`,`0`,`1`,` x`: mask
    [True, True], teacher positions [0, 3]."""
    s_opens, t_opens = _chunk_openers(chunks.student, chunks.total), _chunk_openers(chunks.teacher, chunks.total)
    opens = (chunks.student >= 0) & (s_opens[chunks.student] == np.arange(len(s.ids)))
    return opens, t_opens[chunks.student[opens]]


def _chunk_openers(chunk: np.ndarray, total: int) -> np.ndarray:
    """(total + 1,) position of the first token of each chunk (slot `total`, for -1: unused)."""
    opens = np.full(total + 1, -1, dtype=np.int64)
    kept = np.flatnonzero(chunk >= 0)
    opens[chunk[kept[::-1]]] = kept[::-1]  # reversed: the earliest position is written last
    return opens


def _equal_streams(a_size: np.ndarray, a: np.ndarray, b_size: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) bool: text k of stream `a` equals text k of stream `b`."""
    same = a_size == b_size
    where = np.flatnonzero(a[np.repeat(same, a_size)] != b[np.repeat(same, b_size)])
    kept = np.cumsum(np.where(same, a_size, 0))
    same[np.searchsorted(kept, where, side="right")] = False
    return same


def _diverging(s: Spans, t: Spans, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Local chunks of text k, whose two streams differ: trust the common prefix [0, p) and the
    common suffix of q bytes; tokens of the stretch between them get -1. Returns (student chunks,
    teacher chunks, number of chunks)."""
    s_end, t_end = s.end[s.tokens(k)], t.end[t.tokens(k)]
    a, b = np.frombuffer(s.text_bytes(k), dtype=np.uint8), np.frombuffer(t.text_bytes(k), dtype=np.uint8)
    ls, lt = len(a), len(b)
    n = min(ls, lt)
    differ = np.flatnonzero(a[:n] != b[:n])
    p = int(differ[0]) if len(differ) else n
    tail = np.flatnonzero(a[ls - n + p :][::-1] != b[lt - n + p :][::-1])
    q = int(tail[0]) if len(tail) else n - p
    s_bounds, t_bounds = np.union1d(s_end, [0]), np.union1d(t_end, [0])
    head = np.intersect1d(s_bounds[s_bounds <= p], t_bounds[t_bounds <= p], assume_unique=True)
    back = np.intersect1d(s_bounds[s_bounds >= ls - q] - ls, t_bounds[t_bounds >= lt - q] - lt, assume_unique=True)
    s_cut, t_cut = np.concatenate([head, back + ls]), np.concatenate([head, back + lt])
    dirty = len(head) - 1  # the chunk from the prefix's last shared offset to the suffix's first

    def chunk(side: Spans, cut: np.ndarray) -> np.ndarray:
        tokens = side.tokens(k)
        at = np.minimum(np.searchsorted(cut, side.start[tokens], side="right") - 1, len(cut) - 2)
        return np.where(side.special[tokens] | (at == dirty), -1, np.where(at > dirty, at - 1, at))

    return chunk(s, s_cut), chunk(t, t_cut), max(len(s_cut) - 2, 0)
