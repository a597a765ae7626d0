"""`formats.export`: one dispatcher for every format; each file it writes loads back to the same W."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from conftest import vocab

from xtoken_align.errors import XTokenError
from xtoken_align.formats import EXPORT_SUFFIXES, export, import_reference, load_projection
from xtoken_align.projection import Projection, build_projection

STUDENT, TEACHER = "llama2", "mistral-v1"  # 32,000 tokens each: quick to build and to write


@cache
def built() -> Projection:
    return build_projection(vocab(STUDENT), vocab(TEACHER), progress=False)


def target(folder: Path, fmt: str) -> Path:
    return folder / f"W{EXPORT_SUFFIXES[fmt]}"


def same_matrix(a: Projection, b: Projection) -> bool:
    return all(np.array_equal(getattr(a.matrix, n), getattr(b.matrix, n)) for n in ("indptr", "indices", "data"))


def test_safetensors_export_writes_w_and_sidecar_that_load_back(tmp_path: Path) -> None:
    path = target(tmp_path, "safetensors")
    summary = export(built(), vocab(STUDENT), vocab(TEACHER), path, "safetensors")
    assert summary.files == [str(path), str(path.with_suffix(".json"))]
    assert all(Path(f).is_file() for f in summary.files)
    loaded = load_projection(path, vocab(STUDENT), vocab(TEACHER))
    assert same_matrix(loaded, built()) and np.array_equal(loaded.rules, built().rules)
    assert (summary.entries, summary.shape) == (built().matrix.nnz, list(built().shape))
    assert summary.student_rows is None and summary.dtype is None


@pytest.mark.parametrize(("bf16", "dtype"), [(False, "float32"), (True, "bfloat16")])
def test_nemo_export_imports_back(tmp_path: Path, bf16: bool, dtype: str) -> None:
    path = target(tmp_path, "nemo")
    summary = export(built(), None, None, path, "nemo", bf16=bf16)
    assert (summary.files, summary.dtype, summary.student_rows) == ([str(path)], dtype, vocab(STUDENT).size)
    imported, info = import_reference(path, vocab(STUDENT), vocab(TEACHER))
    assert info.dtype == dtype and info.entries == imported.matrix.nnz
    if not bf16:  # float32 round-trips exactly; bfloat16 only within its rounding
        assert same_matrix(imported, built())
    assert np.allclose(imported.matrix[:512].toarray(), built().matrix[:512].toarray(), atol=1e-2)


def test_nemo_export_pads_to_student_rows(tmp_path: Path) -> None:
    rows = vocab(STUDENT).size + 64
    summary = export(built(), vocab(STUDENT), vocab(TEACHER), target(tmp_path, "nemo"), "nemo", student_rows=rows)
    assert summary.student_rows == rows
    imported, info = import_reference(summary.path, vocab(STUDENT), vocab(TEACHER))
    assert info.shape[0] == rows and info.padding_rows_dropped == 64 and same_matrix(imported, built())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_export_reads_back_to_the_same_entries(tmp_path: Path, fmt: str) -> None:
    path = target(tmp_path, fmt)
    summary = export(built(), vocab(STUDENT), vocab(TEACHER), path, fmt)
    table = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
    assert summary.files == [str(path)] and table.height == summary.entries == built().matrix.nnz
    rows, cols = (table[c].cast(pl.Int64).to_numpy() for c in ("student_id", "teacher_id"))
    weights = table["weight"].cast(pl.Float64).to_numpy()
    back = sp.csr_array((weights, (rows, cols)), shape=built().shape)  # the table as W again
    assert abs(back - built().matrix).max() < 1e-6


@pytest.mark.parametrize(
    ("fmt", "name", "kwargs", "message"),
    [
        ("xlsx", "W.xlsx", {}, "unknown export format 'xlsx'"),
        ("nemo", "W.safetensors", {}, r"nemo files end in \.pt"),
        ("csv", "W.csv", {"student_rows": 40_000}, "apply to the nemo format"),
        ("parquet", "W.parquet", {"bf16": True}, "apply to the nemo format"),
    ],
)
def test_bad_requests_are_refused_before_writing(tmp_path: Path, fmt: str, name: str, kwargs, message: str) -> None:
    with pytest.raises(XTokenError, match=message):
        export(built(), vocab(STUDENT), vocab(TEACHER), tmp_path / name, fmt, **kwargs)
    assert not list(tmp_path.iterdir())


def test_tables_need_both_tokenizers(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="needs both tokenizers"):
        export(built(), vocab(STUDENT), None, target(tmp_path, "csv"), "csv")
    assert not list(tmp_path.iterdir())


def test_tokenizers_given_must_be_the_ones_w_was_built_for(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="teacher tokenizer"):
        export(built(), vocab(STUDENT), vocab("llama3"), target(tmp_path, "safetensors"), "safetensors")
    assert not list(tmp_path.iterdir())


def test_the_web_download_offers_exactly_the_export_formats() -> None:
    import typing

    from webapp.routes.export import MEDIA, export_projection

    offered = typing.get_args(typing.get_type_hints(export_projection)["fmt"])
    assert set(offered) == set(EXPORT_SUFFIXES) == set(MEDIA)


@pytest.mark.parametrize("module", ["xtoken_align.formats", "xtoken_align.formats.reference", "xtoken_align.cli"])
def test_importing_does_not_import_torch(module: str) -> None:
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
