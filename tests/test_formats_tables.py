"""`formats.tables`: W as a CSV or Parquet table, one row per entry, on W built from the demo tokenizers."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import vocab

from xtoken_align.errors import XTokenError
from xtoken_align.formats.tables import export_table
from xtoken_align.projection import Projection, build_projection

STUDENT, TEACHER = "llama3", "qwen3"


@cache
def built() -> Projection:
    return build_projection(vocab(STUDENT), vocab(TEACHER), progress=False)


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


def row_201() -> int:
    return vocab(STUDENT).id_of_bytes(b"201")


def read_table(path: Path, fmt: str) -> pl.DataFrame:
    if fmt == "parquet":
        return pl.read_parquet(path)
    text_columns = ("student_piece", "student_text", "student_category", "teacher_piece", "teacher_text", "rule")
    return pl.read_csv(path, schema_overrides={name: pl.String for name in text_columns})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_table_reads_back_with_the_digit_row(tmp_path: Path, fmt: str) -> None:
    projection = built()
    path = export_table(projection, vocab(STUDENT), vocab(TEACHER), tmp_path / f"W.{fmt}", fmt)
    table = read_table(path, fmt)
    assert table.height == projection.matrix.nnz
    assert no_temp_files(tmp_path)

    rows = table.filter(pl.col("student_id") == row_201()).sort("rank")
    assert rows["student_piece"].to_list() == ["201"] * 3
    assert rows["teacher_piece"].to_list() == ["2", "0", "1"]
    assert rows["teacher_id"].to_list() == [vocab(TEACHER).id_of_bytes(d) for d in (b"2", b"0", b"1")]
    assert rows["rank"].to_list() == [0, 1, 2]
    assert rows["rule"].to_list() == ["digits"] * 3
    assert abs(rows["weight"].sum() - 1) < 1e-6
    assert rows["weight"].to_list() == sorted(rows["weight"].to_list(), reverse=True)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_table_rows_are_ranked_and_sum_to_one(tmp_path: Path, fmt: str) -> None:
    projection = built()
    table = read_table(export_table(projection, vocab(STUDENT), vocab(TEACHER), tmp_path / f"W.{fmt}", fmt), fmt)
    per_row = table.group_by("student_id").agg(
        pl.col("weight").sum().alias("total"), pl.len().alias("n"), pl.col("rank").max().alias("last_rank")
    )
    assert per_row.height == int(np.sum(np.diff(projection.matrix.indptr) > 0))
    assert (per_row["total"] - 1).abs().max() < 1e-5
    assert (per_row["last_rank"] == per_row["n"] - 1).all()


def test_export_table_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="unknown table format 'xlsx'"):
        export_table(built(), vocab(STUDENT), vocab(TEACHER), tmp_path / "W.xlsx", "xlsx")
    assert not list(tmp_path.iterdir())
