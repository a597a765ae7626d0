"""`corpus`: what the teacher actually writes where the student writes a token (off by default).

Both tokenizers tokenise the corpus and `spans.opening_pairs` pairs every student token that opens
a chunk with the teacher token opening it; `count_openers` tallies those (student, teacher) pairs,
vectorised (GSM8K train's 7,473 texts: 8–10 s on two busy cores, nearly all of it tokenising). `blend_counts` mixes
the counts into the rows the string rules built (method.md §2):

    row_i = (c_i + prior · w_i) / (n_i + prior),   n_i = Σ_j c_ij,

then keeps the top K and renormalises. Left out: context (a token's counts are pooled over every
place it occurs) and any learning beyond counting.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xtoken_align.assemble import assemble_entries
from xtoken_align.config import CorpusRule
from xtoken_align.corpus import read_corpus
from xtoken_align.errors import XTokenError
from xtoken_align.rules.context import Entries
from xtoken_align.spans import align_chunks, encode_spans, opening_pairs
from xtoken_align.vocab import Vocab


def corpus_texts(config: CorpusRule) -> list[str]:
    """Every text of the rule's corpus files, in order (`read_corpus` refuses a missing or empty file)."""
    return [text for path in config.corpus for text in read_corpus(path, limit=config.limit)]


def checked_corpus(config: CorpusRule) -> CorpusRule:
    """The rule with the sha256 of its files filled in; refused if the rule names other checksums
    (the files changed since the W whose config this is was built)."""
    found = tuple(file_sha256(path) for path in config.corpus)
    if config.sha256 is not None:
        for path, wanted, got in zip(config.corpus, config.sha256, found, strict=False):
            if wanted != got:
                raise XTokenError(
                    f"corpus file {path} changed since this config was written (sha256 {got[:12]}…, the config "
                    f"says {wanted[:12]}…); drop `sha256` to build from the file as it is now"
                )
        if len(config.sha256) != len(found):
            raise XTokenError(f"the corpus rule names {len(found)} files but {len(config.sha256)} sha256 checksums")
    return config.model_copy(update={"sha256": found})


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise XTokenError(f"corpus file {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def count_openers(student: Vocab, teacher: Vocab, texts: list[str]) -> sp.csr_array:
    """(V_S, V_T) int64 counts: how often teacher token j opens the chunk that student token i opens."""
    s, t = encode_spans(student, texts), encode_spans(teacher, texts)
    opens, t_at = opening_pairs(s, t, align_chunks(s, t))
    keys, counts = np.unique(s.ids[opens] * teacher.size + t.ids[t_at], return_counts=True)
    shape = (student.size, teacher.size)
    return sp.coo_array((counts.astype(np.int64), (keys // teacher.size, keys % teacher.size)), shape=shape).tocsr()


def corpus_entries(counts: sp.csr_array, rows: list[int], config: CorpusRule) -> Entries:
    """The counts of `rows` seen at least `min_count` times, as entries (row, teacher id, count)."""
    coo = counts.tocoo()
    seen = np.zeros(counts.shape[0], dtype=bool)
    seen[np.asarray(rows, dtype=np.int64)] = True
    seen &= np.asarray(counts.sum(axis=1)).ravel() >= config.min_count
    keep = seen[coo.row]
    return Entries(coo.row[keep].tolist(), coo.col[keep].tolist(), coo.data[keep].astype(float).tolist())


def blend_counts(
    matrix: sp.csr_array, codes: np.ndarray, scores: np.ndarray, counts: Entries, prior: float, code: int, top_k: int
) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    """W's CSR arrays with the rows in `counts` replaced by their blend (module docstring); other
    rows keep their weights, rule codes and raw scores exactly. A blended entry keeps the rule of
    its larger share (`code` for the corpus's) and its blended weight before top K as raw score."""
    shape = matrix.shape
    c_rows, c_cols = np.asarray(counts.rows, dtype=np.int64), np.asarray(counts.cols, dtype=np.int64)
    c = np.asarray(counts.scores, dtype=np.float64)
    n = np.bincount(c_rows, weights=c, minlength=shape[0])
    rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(matrix.indptr))
    touched = (n > 0)[rows]
    with np.errstate(invalid="ignore"):
        rule_share = prior / (n + prior)  # NaN only for rows with n = 0 and prior = 0, never used
    b_rows = np.concatenate([rows[touched], c_rows])
    b_cols = np.concatenate([matrix.indices[touched].astype(np.int64), c_cols])
    b_weights = np.concatenate([matrix.data[touched] * rule_share[rows[touched]], c / (n[c_rows] + prior)])
    b_codes = np.concatenate([codes[touched], np.full(len(c), code, dtype=np.uint8)])
    positive = b_weights > 0  # prior 0: the rules' entries drop out
    blended, blended_codes, blended_scores = assemble_entries(
        b_rows[positive], b_cols[positive], b_weights[positive], b_codes[positive], shape, top_k
    )
    b_rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(blended.indptr))
    all_rows = np.concatenate([rows[~touched], b_rows])
    all_cols = np.concatenate([matrix.indices[~touched], blended.indices])
    order = np.lexsort((all_cols, all_rows))  # CSR order: by row, then column
    data = np.concatenate([matrix.data[~touched], blended.data])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(all_rows, minlength=shape[0]))]).astype(np.int64)
    result = sp.csr_array((data, all_cols[order].astype(np.int32), indptr), shape=shape)
    return (
        result,
        np.concatenate([codes[~touched], blended_codes])[order],
        np.concatenate([scores[~touched], blended_scores])[order],
    )
