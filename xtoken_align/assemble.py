"""Raw rule entries to W's CSR arrays: sum duplicates, keep the top K per row, normalise rows.

Shared by `build_projection`, the corpus blend (`rules/corpus.py`) and the reference importer.
Left out: which entries to propose (the rules) and the `Projection` around the arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # rules/ imports this module: no import of the package at run time
    from xtoken_align.rules.context import Entries


def assemble_parts(parts: list[tuple[int, Entries]], shape: tuple[int, int], top_k: int):
    """Sum duplicate (row, col) entries, keep the top K per row, normalise rows; all vectorised."""
    rows = np.concatenate([np.asarray(e.rows, dtype=np.int64) for _, e in parts] or [np.zeros(0, np.int64)])
    cols = np.concatenate([np.asarray(e.cols, dtype=np.int64) for _, e in parts] or [np.zeros(0, np.int64)])
    scores = np.concatenate([np.asarray(e.scores, dtype=np.float64) for _, e in parts] or [np.zeros(0)])
    codes = np.concatenate([np.full(len(e), code, dtype=np.uint8) for code, e in parts] or [np.zeros(0, np.uint8)])
    return assemble_entries(rows, cols, scores, codes, shape, top_k)


def assemble_entries(rows, cols, scores, codes, shape: tuple[int, int], top_k: int, keep_within: float = 0.0):
    """(CSR W, rule codes, raw scores) from raw entries. A duplicate (row, col) sums its scores and
    keeps the rule of its largest contribution; ties in the top K go to the lower teacher id. Rows
    already summing to 1 within `keep_within` keep their values exactly (lossless re-import)."""
    keys = rows * shape[1] + cols
    order = np.lexsort((-scores, keys))  # by key, largest contribution first
    keys, scores, codes = keys[order], scores[order], codes[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    group = np.cumsum(first) - 1
    summed = np.bincount(group, weights=scores) if len(keys) else np.zeros(0)
    keys, codes = keys[first], codes[first]
    rows, cols = keys // shape[1], keys % shape[1]

    order = np.lexsort((cols, -summed, rows))  # per row: heaviest first, then lower teacher id
    rows, cols, summed, codes = rows[order], cols[order], summed[order], codes[order]
    row_start = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - row_start) < top_k
    rows, cols, summed, codes = rows[keep], cols[keep], summed[keep], codes[keep]

    totals = np.bincount(rows, weights=summed, minlength=shape[0])[rows]
    weights = np.where(np.abs(totals - 1) <= keep_within, summed, summed / totals)
    order = np.lexsort((cols, rows))  # CSR order: by row, then column
    rows, cols, weights, summed, codes = rows[order], cols[order], weights[order], summed[order], codes[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))]).astype(np.int64)
    matrix = sp.csr_array((weights.astype(np.float32), cols.astype(np.int32), indptr), shape=shape)
    return matrix, codes.astype(np.uint8), summed.astype(np.float32)
