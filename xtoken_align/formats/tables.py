"""W as a table, one row per entry: a polars DataFrame, written as CSV or Parquet.

Columns: `student_id`, `student_piece`, `student_text` (canonical bytes, displayed),
`student_category`, `rank` (0 = heaviest entry of the row), `teacher_id`, `teacher_piece`,
`teacher_text`, `weight`, `rule` (the rule that made the entry) and `score` (its raw score before
top-K and normalisation). Rows are ordered by student id, then heaviest first, then teacher id.
Tables are for reading and spreadsheets; they are not read back (the W file is `formats.native`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xtoken_align.atomic import atomic_path
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection
from xtoken_align.rules import RULE_CODES
from xtoken_align.vocab import Vocab, display_bytes

if TYPE_CHECKING:
    import polars as pl

TABLE_FORMATS = ("csv", "parquet")


def mapping_table(projection: Projection, student: Vocab, teacher: Vocab) -> pl.DataFrame:
    """W as a polars DataFrame, one row per entry, heaviest first within each student token."""
    import polars as pl

    m = projection.matrix
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))
    rows, cols = rows[order], m.indices[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    return pl.DataFrame(
        {
            "student_id": rows.astype(np.int64),
            "student_piece": [student.pieces[r] for r in rows],
            "student_text": [display_bytes(student.token_bytes[r]) for r in rows],
            "student_category": [student.categories[r] for r in rows],
            "rank": rank.astype(np.int64),
            "teacher_id": cols.astype(np.int64),
            "teacher_piece": [teacher.pieces[c] for c in cols],
            "teacher_text": [display_bytes(teacher.token_bytes[c]) for c in cols],
            "weight": m.data[order].astype(np.float64),
            "rule": [RULE_CODES[c] for c in projection.rules[order]],
            "score": projection.scores[order].astype(np.float64),
        }
    )


def export_table(projection: Projection, student: Vocab, teacher: Vocab, path: str | Path, fmt: str) -> Path:
    """Write the mapping as CSV or Parquet, atomically."""
    path = Path(path)
    if fmt not in TABLE_FORMATS:
        raise XTokenError(f"unknown table format '{fmt}' (csv or parquet)")
    table = mapping_table(projection, student, teacher)
    with atomic_path(path) as temp:
        table.write_csv(temp) if fmt == "csv" else table.write_parquet(temp)
    return path
