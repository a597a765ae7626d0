"""Where GOLD's partition bites on real text: two tokenisations of a corpus, chunked by byte offsets.

`tokenize` encodes a corpus in one batch (no BOS: every token is a next-token target) and keeps the
ids flat. `one_to_one` closes a chunk wherever both tokenisations end a token at the same byte offset
(method.md §3) and flags the student positions whose chunk is one student token facing one teacher
token. `corpus_mass` counts, per student category, the targets outside GOLD's strict set: the mass
its common-set KL pushes down. Everything is vectorised over the whole corpus; 10,000 texts cost
little more than tokenising them. Left out: the training aligner (`distill/`), one-sided BOS, and
normalisers that change the text's bytes (the tail of a text whose lengths disagree is one chunk).
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from xtoken_align.vocab import Vocab

TokenBatch = tuple[np.ndarray, np.ndarray, np.ndarray]  # (ids of all texts, concatenated; tokens, bytes per text)
TEXT_STRIDE = 1 << 40  # a (text index, byte offset) pair packed into one int64 key


def tokenize(vocab: Vocab, texts: list[str]) -> TokenBatch:
    encodings = vocab.tokenizer.encode_batch(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lengths.sum()))
    return ids, lengths, np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts))


def end_keys(vocab: Vocab, tokens: TokenBatch) -> np.ndarray:
    """(N,) increasing keys `text * TEXT_STRIDE + byte offset where the token ends`, from canonical
    byte lengths. A SentencePiece dummy prefix (the text's tokens hold one byte more than the text and
    the first starts with a space) is taken off; a text that already starts with a space has none."""
    ids, lengths, text_bytes = tokens
    sizes = np.fromiter((len(b) for b in vocab.token_bytes), dtype=np.int64, count=vocab.size)[ids]
    ends = np.cumsum(sizes)
    first = (np.cumsum(lengths) - lengths)[lengths > 0]
    base = np.zeros(len(lengths), dtype=np.int64)
    base[lengths > 0] = ends[first] - sizes[first]
    if vocab.strips_leading_space:
        spaced = np.fromiter((b.startswith(b" ") for b in vocab.token_bytes), dtype=bool, count=vocab.size)
        extra = np.add.reduceat(sizes, first) - text_bytes[lengths > 0] if len(first) else 0
        base[lengths > 0] += spaced[ids[first]] & (extra > 0)
    text = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return text * TEXT_STRIDE + ends - np.repeat(base, lengths)


def one_to_one(student_keys: np.ndarray, teacher_keys: np.ndarray) -> np.ndarray:
    """(N_S,) bool: the student token's chunk holds exactly one student and one teacher token.

    >>> one_to_one(np.array([1, 3, 4]), np.array([1, 4])).tolist()  # "a" | "bc"+"d" vs "a" | "bcd"
    [True, False, False]
    """
    if not len(student_keys) or not len(teacher_keys):
        return np.zeros(len(student_keys), dtype=bool)
    common = student_keys[_isin_sorted(student_keys, teacher_keys)]
    names, counts, inverse = _runs(_chunk_keys(student_keys, common))
    t_names, t_counts, _ = _runs(_chunk_keys(teacher_keys, common))
    facing = np.where(_isin_sorted(names, t_names), t_counts[_clipped_search(t_names, names)], 0)
    return ((counts == 1) & (facing == 1))[inverse]


def _clipped_search(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))


def _isin_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    return sorted_keys[_clipped_search(sorted_keys, keys)] == keys


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, length, run index of every element) of the runs of a sorted array.

    >>> [x.tolist() for x in _runs(np.array([5, 5, 7]))]
    [[5, 7], [2, 1], [0, 0, 1]]
    """
    starts = np.flatnonzero(np.diff(values, prepend=values[:1] - 1)) if len(values) else np.zeros(0, np.int64)
    counts = np.diff(np.append(starts, len(values)))
    return values[starts], counts, np.repeat(np.arange(len(starts)), counts)


def _chunk_keys(keys: np.ndarray, common: np.ndarray) -> np.ndarray:
    """Each token's chunk, named by the shared offset that closes it (the first at or after its
    end, in the same text), or by its text's tail when no shared offset follows it."""
    text = keys // TEXT_STRIDE
    tail = text * TEXT_STRIDE + TEXT_STRIDE - 1
    if not len(common):
        return tail
    closing = common[_clipped_search(common, keys)]
    return np.where((closing >= keys) & (closing // TEXT_STRIDE == text), closing, tail)


def corpus_mass(
    student: Vocab,
    teacher: Vocab,
    student_tokens: TokenBatch,
    teacher_tokens: TokenBatch,
    uncommon: np.ndarray,
    codes: np.ndarray,
    names: list[str],
    critical_codes: list[int],
) -> dict:
    """The corpus section of a diagnose report. `uncommon`: (V_S,) bool, outside the strict set;
    `codes`: (V_S,) index into `names`, the student categories."""
    ids = student_tokens[0]
    single = one_to_one(end_keys(student, student_tokens), end_keys(teacher, teacher_tokens))
    cats, off = codes[ids], uncommon[ids]
    tokens = np.bincount(cats, minlength=len(names))
    lost = np.bincount(cats, weights=off, minlength=len(names)).astype(np.int64)
    split = np.bincount(cats, weights=~single, minlength=len(names)).astype(np.int64)
    n = max(len(ids), 1)
    return {
        "student_tokens": len(ids),
        "teacher_tokens": len(teacher_tokens[0]),
        "suppressed_tokens": int(off.sum()),
        "suppressed_mass": round(float(off.sum()) / n, 6),
        "critical_suppressed_mass": round(float(lost[critical_codes].sum()) / n, 6),
        "not_one_to_one": round(float((~single).sum()) / n, 6),
        "categories": {
            names[k]: {
                "tokens": int(tokens[k]),
                "uncommon": int(lost[k]),
                "suppressed_mass": round(float(lost[k]) / n, 6),
                "not_one_to_one": int(split[k]),
            }
            for k in np.flatnonzero(tokens).tolist()
        },
    }
