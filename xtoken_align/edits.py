"""Hand edits of W rows: validate and normalise a new row, and apply edited rows to a W.

A row edit is a list of (teacher id, weight) pairs. `normalise_row` refuses what cannot be a row
of W (unknown ids, NaN, negative or absurd weights, duplicates, an empty row for a token that can
appear in text) and scales the rest to sum to 1. Entries that keep their teacher id and weight (as
given, or after normalising) keep their rule and score, even when other entries' changes rescale
them; anything new or reweighted is credited to the rule `edit`. `replay_edits` carries edited
rows over to a rebuilt W where the rules did not change under them. Left out: where edits are
stored (the web layer keeps them in SQLite).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, RowEntry
from xtoken_align.rules import RULE_CODES

MAX_WEIGHT = 1e6
Row = list[RowEntry]  # heaviest first, as `Projection.row` gives them


def normalise_row(
    entries: Iterable[tuple[int, float]], current: Row, teacher_size: int, *, allow_empty: bool, top_k: int = 64
) -> Row:
    """A validated row summing to 1, heaviest first.

    >>> kept, new = normalise_row([(5, 3.0), (7, 1.0)], [RowEntry(5, 0.75, "digits", 0.9)], 10, allow_empty=False)
    >>> kept
    RowEntry(teacher=5, weight=0.75, rule='digits', score=0.9)
    >>> new
    RowEntry(teacher=7, weight=0.25, rule='edit', score=1.0)
    """
    pairs = list(entries)
    if len(pairs) > top_k:
        raise XTokenError(f"a row holds at most {top_k} entries, got {len(pairs)}")
    seen: set[int] = set()
    for col, weight in pairs:
        if not 0 <= col < teacher_size:
            raise XTokenError(f"teacher id {col} is outside 0..{teacher_size - 1}")
        if col in seen:
            raise XTokenError(f"teacher id {col} appears twice in the row")
        seen.add(col)
        if not math.isfinite(weight) or weight < 0 or weight > MAX_WEIGHT:
            raise XTokenError(f"weight {weight} for teacher id {col} must be a finite number in [0, {MAX_WEIGHT:g}]")
    pairs = [(col, weight) for col, weight in pairs if weight > 0]
    if not pairs:
        if allow_empty:
            return []
        raise XTokenError("a token that can appear in text needs at least one entry with a positive weight")
    total = math.fsum(weight for _, weight in pairs)
    # Weights too small to survive float32 (what W files store) are dropped, not kept as zeros.
    pairs = [(col, weight) for col, weight in pairs if np.float32(weight / total) > 0]
    before = {col: (weight, rule, score) for col, weight, rule, score in current}
    row: Row = []
    for col, weight in pairs:
        normalised = weight / total
        old = before.get(col)
        if old is not None and abs(old[0] - normalised) <= 1e-6:
            row.append(RowEntry(col, *old))  # unchanged: keep provenance
        elif old is not None and abs(old[0] - weight) <= 1e-9:
            row.append(RowEntry(col, normalised, *old[1:]))  # left as it was, rescaled by other changes
        else:
            row.append(RowEntry(col, normalised, "edit", weight))
    return sorted(row, key=lambda e: (-e.weight, e.teacher))


def same_row(a: Row, b: Row, tolerance: float = 1e-6) -> bool:
    """Whether two rows hold the same teacher ids with the same weights (provenance aside).

    >>> a = [RowEntry(5, 0.5, "digits", 0.9), RowEntry(7, 0.5, "edit", 1.0)]
    >>> same_row(a, [RowEntry(7, 0.5, "edit", 1.0), RowEntry(5, 0.5, "edit", 0.5)])
    True
    >>> same_row(a, [RowEntry(5, 1.0, "digits", 0.9)])
    False
    """
    weights = {entry.teacher: entry.weight for entry in a}
    return len(a) == len(b) and all(abs(weights.get(e.teacher, -1.0) - e.weight) <= tolerance for e in b)


def replay_edits(old: Projection, new: Projection, edited: Mapping[int, Row]) -> tuple[dict[int, Row], list[int]]:
    """Hand edits carried from a W to its rebuild: (kept rows, dropped student ids).

    An edited row is kept, as it is, where the rebuild gives it the row the old W gave it (the
    rules did not change under the edit); where the rules now give another row, the edit no longer
    applies to what it was made against and is dropped, for the caller to list. A row edited back
    to what the old rules gave (an undone edit) is neither: it follows the new rules.
    """
    kept, dropped = {}, []
    for sid, row in sorted(edited.items()):
        was = old.row(sid)
        if same_row(row, was):
            continue
        if same_row(was, new.row(sid)):
            kept[sid] = row
        else:
            dropped.append(sid)
    return kept, dropped


def apply_rows(projection: Projection, rows: Mapping[int, Row], history: list[dict] | None = None) -> Projection:
    """A new Projection with the given rows replaced (everything else identical)."""
    m = projection.matrix
    entry_rows = projection.entry_rows()
    keep = ~np.isin(entry_rows, np.fromiter(rows, dtype=np.int64, count=len(rows)))
    added = [(row, col, weight, RULE_CODES.index(rule), score) for row, row_entries in rows.items()
             for col, weight, rule, score in row_entries]  # fmt: skip
    new = np.asarray(added, dtype=np.float64).reshape(-1, 5)
    all_rows = np.concatenate([entry_rows[keep], new[:, 0].astype(np.int64)])
    all_cols = np.concatenate([m.indices[keep].astype(np.int64), new[:, 1].astype(np.int64)])
    order = np.lexsort((all_cols, all_rows))  # CSR order: by row, then column
    data = np.concatenate([m.data[keep], new[:, 2].astype(np.float32)])[order]
    codes = np.concatenate([projection.rules[keep], new[:, 3].astype(np.uint8)])[order]
    scores = np.concatenate([projection.scores[keep], new[:, 4].astype(np.float32)])[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(all_rows, minlength=m.shape[0]))])
    matrix = sp.csr_array((data, all_cols[order].astype(np.int32), indptr), shape=m.shape)
    return replace(
        projection, matrix=matrix, rules=codes, scores=scores, history=[*projection.history, *(history or [])]
    )
