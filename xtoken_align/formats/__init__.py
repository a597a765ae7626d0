"""W on disk: every format xtoken-align writes or reads, and one `export` that chooses between them.

- `safetensors` (`formats.native`): our own W file and its JSON sidecar; read back checked.
- `nemo` (`formats.reference`): the NeMo-RL / TRL X-Token `.pt`; imported back with `import_reference`.
- `csv`, `parquet` (`formats.tables`): one row per W entry, for reading; not read back.
- `hub` (`formats.hub`): a folder to share on a model hub: W, sidecar, `.pt`, both tokenizers and a
  README model card whose numbers (`card.json`) are the `score` and `diagnose` reports of W; read
  back by `load_projection(folder)`.

`export(projection, student, teacher, path, fmt)` writes any of them and returns an
`ExportSummary`; the CLI's `export` and the web's download both go through it, so a format means
the same file everywhere. Only `formats.reference` needs torch, and imports it only when called.
"""

from __future__ import annotations

from pathlib import Path

from xtoken_align.diagnose.report import DiagnoseReport
from xtoken_align.errors import XTokenError
from xtoken_align.formats.hub import export_hub, is_hub_folder, role_tokenizer
from xtoken_align.formats.native import (
    FORMAT,
    FORMAT_VERSION,
    load_projection,
    save_projection,
    sidecar_path,
)
from xtoken_align.formats.reference import (
    IMPORT_ROW_TOLERANCE,
    ImportSummary,
    check_model_ids,
    export_reference,
    import_reference,
    import_text,
    recorded_model_ids,
)
from xtoken_align.formats.tables import TABLE_FORMATS, export_table, mapping_table
from xtoken_align.projection import Projection
from xtoken_align.report import Report
from xtoken_align.score.report import ScoreReport
from xtoken_align.vocab import Vocab

EXPORT_SUFFIXES = {"safetensors": ".safetensors", "nemo": ".pt", "csv": ".csv", "parquet": ".parquet"}
FOLDER_FORMATS = ("hub",)  # written as a folder, not a file with a suffix

__all__ = [
    "EXPORT_SUFFIXES", "FOLDER_FORMATS", "FORMAT", "FORMAT_VERSION", "IMPORT_ROW_TOLERANCE", "TABLE_FORMATS",
    "ExportSummary", "ImportSummary", "check_model_ids", "export", "export_hub", "export_reference",
    "export_table", "export_text", "import_reference", "import_text", "is_hub_folder", "load_projection",
    "mapping_table", "recorded_model_ids", "role_tokenizer", "save_projection", "sidecar_path",
]  # fmt: skip


class ExportSummary(Report):
    """What `export` wrote: the document `xtoken-align export --json` prints."""

    format: str
    path: str
    files: list[str]  # every file written: for safetensors, W and its sidecar; for hub, the folder's files
    student: str
    teacher: str
    shape: list[int]  # W's [V_S, V_T]
    entries: int
    student_rows: int | None = None  # nemo: rows written, padding included
    dtype: str | None = None  # nemo: of the likelihoods, "float32" or "bfloat16"


def export(
    projection: Projection,
    student: Vocab | None,
    teacher: Vocab | None,
    path: str | Path,
    fmt: str,
    *,
    student_rows: int | None = None,
    bf16: bool = False,
    reports: tuple[ScoreReport, DiagnoseReport] | None = None,
) -> ExportSummary:
    """Write W to `path` as `fmt` (a key of EXPORT_SUFFIXES, `path` carrying its suffix, or "hub",
    `path` a new folder).

    The tables and hub need both tokenizers (they show pieces and text); safetensors and nemo do not,
    and given ones are checked against W. `student_rows` (pad to a model's vocabulary size) and `bf16`
    (bfloat16 likelihoods) apply to nemo only; `reports` (W's score and diagnosis, for the card) to hub only.
    """
    path = Path(path)
    if fmt not in EXPORT_SUFFIXES and fmt not in FOLDER_FORMATS:
        raise XTokenError(f"unknown export format '{fmt}' ({', '.join([*EXPORT_SUFFIXES, *FOLDER_FORMATS])})")
    if (fmt == "hub") != (reports is not None):
        raise XTokenError("the hub format, and only it, needs W's score and diagnosis reports")
    if fmt in EXPORT_SUFFIXES and path.suffix != EXPORT_SUFFIXES[fmt]:
        raise XTokenError(f"{path}: {fmt} files end in {EXPORT_SUFFIXES[fmt]}")
    if fmt != "nemo" and (student_rows is not None or bf16):
        raise XTokenError(f"student_rows and bf16 apply to the nemo format, not {fmt}")
    projection.check_tokenizers(student, teacher)
    files = [path]
    if fmt == "safetensors":
        files.append(sidecar_path(save_projection(projection, path)))
    elif fmt == "nemo":
        export_reference(projection, path, student_rows=student_rows, bf16=bf16)
    elif fmt == "hub":
        if student is None or teacher is None:
            raise XTokenError("a hub folder needs both tokenizers")
        files = export_hub(projection, student, teacher, path, *reports)
    else:
        if student is None or teacher is None:
            raise XTokenError(f"a {fmt} table needs both tokenizers")
        export_table(projection, student, teacher, path, fmt)
    nemo = fmt == "nemo"
    return ExportSummary(
        format=fmt,
        path=str(path),
        files=[str(f) for f in files],
        student=projection.student.name,
        teacher=projection.teacher.name,
        shape=list(projection.shape),
        entries=int(projection.matrix.nnz),
        student_rows=(student_rows or projection.shape[0]) if nemo else None,
        dtype=("bfloat16" if bf16 else "float32") if nemo else None,
    )


def export_text(summary: ExportSummary) -> str:
    """What `xtoken-align export` prints: `wrote out/W.pt (nemo)`."""
    return f"wrote {summary.path} ({summary.format})"
