"""The NeMo-RL / TRL X-Token W file: a `torch.save`d dict of `indices` and `likelihoods`.

What the reference tools write (NVIDIA-NeMo/RL `tools/x_token/`): `indices` int64 [V_S, K]
(teacher ids, -1 for an empty slot), `likelihoods` bfloat16 [V_S, K], plus `student_model_id`,
`teacher_model_id` and `enable_scale_trick`; no vocabulary sizes. V_S there is the model config's
vocabulary size, which can exceed the tokenizer's (padding rows); their loader sums duplicate
(student, teacher) entries. We write the same layout (float32 likelihoods unless asked for
bfloat16) and read it back into a checked `Projection`, tolerating bfloat16 rounding but nothing
else: NaN, negative weights, ids out of range and rows far from 1 are refused with a message, and
so is a file whose recorded model ids name other tokenizers than the ones given (`check_model_ids`).
torch is imported inside the two functions that need it, so importing this module costs nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from xtoken_align.assemble import assemble_entries
from xtoken_align.atomic import atomic_path
from xtoken_align.errors import XTokenError
from xtoken_align.projection import ROW_SUM_TOLERANCE, Projection, TokenizerInfo
from xtoken_align.report import Report
from xtoken_align.rules import RULE_CODES
from xtoken_align.vocab import Vocab

# bfloat16 keeps 8 bits of mantissa: a row of K such weights can miss 1 by about K·2^-9.
IMPORT_ROW_TOLERANCE = 2e-2
Recorded = str | bool | int | float | None  # a value as a foreign file records it


class ImportSummary(Report):
    """What `import_reference` read and what it adjusted to make a valid W."""

    file: str
    shape: list[int]  # [V_S, K] as stored, padding rows included
    dtype: str  # of the likelihoods: "float32", "bfloat16", ...
    student_model_id: Recorded
    teacher_model_id: Recorded
    enable_scale_trick: Recorded
    padding_rows_dropped: int
    padding_mass_dropped: float
    duplicate_entries_summed: int
    rows_renormalised: int
    entries: int  # of the imported W
    output: str | None = None  # the W file it was saved as, once saved


def import_text(summary: ImportSummary) -> str:
    """What `xtoken-align import` prints: the file written, then each field of the summary."""
    fields = summary.model_dump(exclude={"output", "entries"})
    lines = [f"wrote {summary.output}: {summary.entries:,} entries", *(f"  {k}: {v}" for k, v in fields.items())]
    return "\n".join(lines)


def export_reference(
    projection: Projection,
    path: str | Path,
    *,
    top_k: int | None = None,
    student_rows: int | None = None,
    bf16: bool = False,
) -> Path:
    """Write W as [V_S, K] `indices`/`likelihoods`; `student_rows` pads to a model's vocabulary size,
    `bf16` stores the likelihoods in bfloat16 as the reference tools do (default float32)."""
    import torch

    m = projection.matrix
    per_row = np.diff(m.indptr)
    k = top_k if top_k is not None else max(int(per_row.max(initial=1)), 1)
    if per_row.max(initial=0) > k:
        raise XTokenError(f"W has rows with {int(per_row.max())} entries; export with top_k >= that")
    rows = student_rows if student_rows is not None else m.shape[0]
    if rows < m.shape[0]:
        raise XTokenError(f"student_rows {rows} is smaller than the student vocabulary ({m.shape[0]})")
    # Slot of each entry within its row, heaviest first (ties: lower teacher id), vectorised.
    entry_rows = np.repeat(np.arange(m.shape[0]), per_row)
    order = np.lexsort((m.indices, -m.data, entry_rows))
    slot = np.arange(len(order)) - np.searchsorted(entry_rows[order], entry_rows[order], side="left")
    indices = np.full((rows, k), -1, dtype=np.int64)
    likelihoods = np.zeros((rows, k), dtype=np.float32)
    indices[entry_rows[order], slot] = m.indices[order]
    likelihoods[entry_rows[order], slot] = m.data[order]
    indices, likelihoods = torch.from_numpy(indices), torch.from_numpy(likelihoods)
    payload = {
        "indices": indices,
        "likelihoods": likelihoods.to(torch.bfloat16 if bf16 else torch.float32),
        "student_model_id": projection.student.source,
        "teacher_model_id": projection.teacher.source,
        "enable_scale_trick": False,
    }
    path = Path(path)
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def _torch_reason(exc: Exception) -> str:
    """One sentence out of torch's paragraphs: the weights-only unpickler's own complaint, else the first."""
    text = str(exc)
    lines = [line for line in (text.partition("WeightsUnpickler error:")[2] or text).splitlines() if line.strip()]
    detail = " ".join(lines[0].split(". ")[0].split()) if lines else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def recorded_model_ids(payload: dict) -> tuple[object, object]:
    """(student, teacher) model ids as the file records them; older files say model_A/model_B."""
    return (
        payload.get("student_model_id", payload.get("model_A_id")),
        payload.get("teacher_model_id", payload.get("model_B_id")),
    )


def check_model_ids(path: Path, payload: dict, student: Vocab, teacher: Vocab) -> None:
    """Refuse a file whose recorded model ids name other tokenizers than the ones given.

    The format records only the two ids: hub model ids from the reference tools, tokenizer sources
    from `export_reference`; no vocabulary size or fingerprint. An id that differs from the given
    source is checked by what it names: a demo tokenizer or local file at hand is loaded and
    fingerprinted (llama2 and mistral-v1 share one vocabulary); two hub ids must be equal; anything
    else (a hub id against a local path, a path not on this machine) cannot be compared and passes.
    """
    ids = recorded_model_ids(payload)
    if student.fingerprint != teacher.fingerprint and ids == (teacher.source, student.source):
        raise XTokenError(f"{path} records student {ids[0]} and teacher {ids[1]}: --student and --teacher are swapped")
    for side, recorded, vocab in zip(("student", "teacher"), ids, (student, teacher), strict=True):
        if isinstance(recorded, str) and recorded and not _same_tokenizer(recorded, vocab):
            raise XTokenError(
                f"{path} was made for {side} {recorded}, not --{side} {vocab.source} ({vocab.name}); "
                f"give --{side} {recorded}"
            )


def _same_tokenizer(recorded: str, vocab: Vocab) -> bool:
    """False only when `recorded` demonstrably names another tokenizer than `vocab` (see above)."""
    from xtoken_align.demo import demo_path
    from xtoken_align.vocab import load_vocab

    if recorded in (vocab.source, vocab.name):
        return True
    hub = [_hub_id(name) for name in (recorded, vocab.source)]
    if all(hub):
        return hub[0] == hub[1]
    try:
        if recorded.startswith("demo:"):
            demo_path(recorded, fetch=False)  # only a demo already on this machine: no download
        elif not Path(recorded).exists():
            return True
        return load_vocab(recorded).fingerprint == vocab.fingerprint
    except XTokenError:
        return True  # not at hand or not a tokenizer: nothing to compare against


def _recorded(value: object) -> Recorded:
    """A recorded value as it is when it is a plain scalar, else as text: `_recorded(tensor(1))` -> "tensor(1)"."""
    return value if value is None or isinstance(value, str | bool | int | float) else str(value)


def _hub_id(name: str) -> str | None:
    """`hf:Org/Name` or `Org/Name` not on disk -> "org/name" (hub ids ignore case); else None."""
    bare = name.removeprefix("hf:")
    if name.startswith("demo:") or bare.count("/") != 1 or Path(name).exists() or bare.startswith((".", "/")):
        return None
    return bare.lower()


def import_reference(path: str | Path, student: Vocab, teacher: Vocab) -> tuple[Projection, ImportSummary]:
    """Read a reference-format file for these tokenizers. Returns W and a summary of what was
    adjusted (padding rows dropped, duplicate entries summed, rows renormalised)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise XTokenError(f"no such file: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated zips and foreign pickles
        raise XTokenError(
            f"{path}: not a readable PyTorch/reference W file (truncated, corrupt, or holding more than "
            f"tensors: {_torch_reason(exc)})"
        ) from None
    if not isinstance(payload, dict) or not {"indices", "likelihoods"} <= payload.keys():
        raise XTokenError(f"{path}: expected a dict with 'indices' and 'likelihoods' (NeMo-RL X-Token format)")
    check_model_ids(path, payload, student, teacher)
    indices, likelihoods = payload["indices"], payload["likelihoods"]
    if not (isinstance(indices, torch.Tensor) and isinstance(likelihoods, torch.Tensor)):
        raise XTokenError(f"{path}: 'indices' and 'likelihoods' must be tensors")
    if indices.dim() != 2 or indices.shape != likelihoods.shape:
        raise XTokenError(
            f"{path}: 'indices' {tuple(indices.shape)} and 'likelihoods' {tuple(likelihoods.shape)} "
            "must both be [V_S, K]"
        )
    idx = indices.long().numpy()
    weights = likelihoods.float().numpy().astype(np.float64)
    if not np.all(np.isfinite(weights)):
        raise XTokenError(f"{path}: {int(np.sum(~np.isfinite(weights)))} likelihoods are NaN or infinite")
    if np.any(weights < 0):
        raise XTokenError(f"{path}: {int(np.sum(weights < 0))} likelihoods are negative")
    if idx.shape[0] < student.size:
        raise XTokenError(f"{path}: {idx.shape[0]:,} rows, fewer than the student's {student.size:,} tokens")
    padding = idx[student.size :]
    padding_mass = float(weights[student.size :][padding >= 0].sum())
    idx, weights = idx[: student.size], weights[: student.size]
    live = (idx >= 0) & (weights > 0)
    if np.any((idx < -1) | (idx >= teacher.size) & live):
        raise XTokenError(f"{path}: teacher ids outside 0..{teacher.size - 1} carry weight")
    if np.any((idx == -1) & (weights > 0)):
        raise XTokenError(f"{path}: empty slots (-1) carry weight")
    rows = np.repeat(np.arange(student.size), idx.shape[1]).reshape(idx.shape)[live]
    cols, values = idx[live], weights[live]
    sums = np.bincount(rows, weights=values, minlength=student.size)
    filled = np.bincount(rows, minlength=student.size) > 0
    off = np.flatnonzero(filled & (np.abs(sums - 1) > IMPORT_ROW_TOLERANCE))
    if len(off):
        raise XTokenError(f"{path}: {len(off)} rows do not sum to 1 (first: row {off[0]} sums to {sums[off[0]]:.4f})")
    duplicates = len(rows) - len(np.unique(rows * teacher.size + cols))
    codes = np.full(len(rows), RULE_CODES.index("imported"), dtype=np.uint8)
    matrix, rule_codes, scores = assemble_entries(
        rows, cols, values, codes, (student.size, teacher.size), top_k=idx.shape[1], keep_within=ROW_SUM_TOLERANCE / 2
    )
    student_id, teacher_id = recorded_model_ids(payload)
    summary = ImportSummary(
        file=str(path),
        shape=list(indices.shape),
        dtype=str(likelihoods.dtype).removeprefix("torch."),
        student_model_id=_recorded(student_id),
        teacher_model_id=_recorded(teacher_id),
        enable_scale_trick=_recorded(payload.get("enable_scale_trick")),
        padding_rows_dropped=int(len(padding)),
        padding_mass_dropped=round(padding_mass, 4),
        duplicate_entries_summed=int(duplicates),
        rows_renormalised=int(np.sum(filled & (np.abs(sums - 1) > 1e-6))),
        entries=int(matrix.nnz),
    )
    projection = Projection(
        matrix, rule_codes, scores, TokenizerInfo.of(student), TokenizerInfo.of(teacher), config=None,
        history=[{"action": "import", **summary.model_dump(exclude={"output", "entries"})}],
    )  # fmt: skip
    projection.check()
    return projection, summary
