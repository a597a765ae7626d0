"""The `build` summary: what a build wrote and what its W holds, as a typed model and as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtoken_align.projection import Projection
from xtoken_align.report import Report, table
from xtoken_align.rules import RULE_CODES
from xtoken_align.vocab import Vocab


class UnmatchedSpecial(Report):
    """A special student token with no teacher counterpart: its row of W is empty."""

    id: int
    piece: str
    roles: list[str]


class BuildSummary(Report):
    """What a build wrote and what W holds: the document `xtoken-align build --json` prints."""

    path: str
    sidecar: str
    seconds: float
    student: str
    teacher: str
    shape: list[int]  # [V_S, V_T]
    entries: int
    top_k: int | None  # None for a W imported from another tool
    rows_by_rule: dict[str, int]  # filled rows by the rule of their heaviest entry, in rule order
    unmatched_special: list[UnmatchedSpecial]  # placeholder specials (`special:unused`) left out


def summarise_build(projection: Projection, student: Vocab, path: str | Path, seconds: float) -> BuildSummary:
    """Summarise W as built for `student` and saved at `path` (sidecar beside it as .json)."""
    leading = projection.leading().rule
    counts = np.bincount(leading[leading >= 0], minlength=len(RULE_CODES))
    empty = set(projection.empty_rows().tolist())
    unmatched = [
        UnmatchedSpecial(id=i, piece=student.pieces[i], roles=list(student.special[i]))
        for i in sorted(student.special)
        if i in empty and student.categories[i] != "special:unused"
    ]
    return BuildSummary(
        path=str(path),
        sidecar=str(Path(path).with_suffix(".json")),
        seconds=seconds,
        student=projection.student.name,
        teacher=projection.teacher.name,
        shape=list(projection.shape),
        entries=int(projection.matrix.nnz),
        top_k=projection.config.top_k if projection.config else None,
        rows_by_rule={rule: int(n) for rule, n in zip(RULE_CODES, counts, strict=True) if n},
        unmatched_special=unmatched,
    )


def build_text(summary: BuildSummary) -> str:
    """What `xtoken-align build` prints: the files, W's size, rows by leading rule, unmatched specials."""
    v_s, v_t = summary.shape
    lines = [
        f"wrote {summary.path} and {Path(summary.sidecar).name} in {summary.seconds:.1f} s",
        f"W {v_s:,} x {v_t:,}, {summary.entries:,} entries, K = {summary.top_k if summary.top_k is not None else '?'}",
        table(["rows led by rule", "rows"], [[rule, n] for rule, n in summary.rows_by_rule.items()]),
    ]
    if summary.unmatched_special:
        names = ", ".join(f"{s.piece} ({'/'.join(s.roles)})" for s in summary.unmatched_special)
        lines.append(f"special tokens with no teacher counterpart (empty rows): {names}")
    return "\n".join(lines)
