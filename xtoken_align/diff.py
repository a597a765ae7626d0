"""W diff: how two W files of the same tokenizer pair differ, row by row and per student category.

For student row i, with rows a_i and b_i of the two Ws (each a distribution over teacher tokens),

    mass moved(i) = ½ · Σ_t |a_i[t] − b_i[t]|        (total variation distance, in [0, 1])

0 when the rows are equal, 1 when they share no teacher token, 0.5 for a row that moved half its
weight. A row is *changed* when some entry differs by more than `CHANGE_TOLERANCE` (float32 noise
from a save/load round trip is not a change); unchanged rows count 0. `mass_moved` is the sum over
rows (in rows' worth of mass), `mean_mass_moved` its mean over changed rows. An empty row against a
filled one moves ½ (half of the filled row's unit mass has nowhere to go on the other side).

`diff_projections(a, b, student, teacher)` computes it for all rows at once on the CSR difference
(no loop over rows); only the `top` rows that moved most are listed, both rows side by side.
Rules and raw scores are shown but do not count as changes. Left out: reading files (the CLI and
the web layer load the Ws) and figures (the web UI draws the per-category chart).
"""

from __future__ import annotations

import numpy as np

from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection
from xtoken_align.report import Report, TokenRef, table
from xtoken_align.vocab import Vocab

CHANGE_TOLERANCE = 1e-6


class DiffEntry(Report):
    """One entry of a W row, as the diff shows it."""

    teacher_id: int
    display: str
    weight: float
    rule: str


class RowDiff(Report):
    """One changed student row: both sides, heaviest entry first."""

    student: TokenRef
    mass_moved: float
    a: list[DiffEntry]
    b: list[DiffEntry]


class CategoryDiff(Report):
    """The student tokens of one category."""

    rows: int
    rows_changed: int
    mass_moved: float


class DiffReport(Report):
    """How W `b` differs from W `a` (same tokenizer pair): the document `xtoken-align diff --json` prints."""

    a: str  # what each side is (a file name, or "workspace")
    b: str
    student: str
    teacher: str
    rows: int
    rows_changed: int
    mass_moved: float  # Σ over rows of ½·Σ|a_row − b_row|, in rows
    mean_mass_moved: float  # mass_moved / rows_changed (0 when nothing changed)
    categories: dict[str, CategoryDiff]  # per student category, in report order
    top: list[RowDiff]  # the changed rows that moved most, largest first (ties: lower student id)


def check_same_pair(a: Projection, b: Projection) -> None:
    """Refuse two Ws made for different tokenizers, naming the side that differs."""
    for side, ours, theirs in (("student", a.student, b.student), ("teacher", a.teacher, b.teacher)):
        if ours.fingerprint != theirs.fingerprint or ours.size != theirs.size:
            raise XTokenError(
                f"the two Ws are for different {side} tokenizers ({ours.name}, {ours.size:,} tokens vs "
                f"{theirs.name}, {theirs.size:,}): a diff needs Ws of the same tokenizer pair"
            )


def row_mass_moved(a: Projection, b: Projection) -> tuple[np.ndarray, np.ndarray]:
    """(V_S,) float64 mass moved per row (0 for unchanged rows) and (V_S,) bool changed, vectorised."""
    delta = a.matrix.astype(np.float64) - b.matrix.astype(np.float64)  # (V_S, V_T) CSR
    size = a.shape[0]
    rows = np.repeat(np.arange(size, dtype=np.int64), np.diff(delta.indptr))
    gap = np.abs(delta.data)
    changed = np.bincount(rows[gap > CHANGE_TOLERANCE], minlength=size) > 0
    moved = 0.5 * np.bincount(rows, weights=gap, minlength=size)
    return np.where(changed, np.minimum(moved, 1.0), 0.0), changed


def diff_projections(
    a: Projection, b: Projection, student: Vocab, teacher: Vocab, top: int = 50, labels: tuple[str, str] = ("A", "B")
) -> DiffReport:
    """The diff of `b` against `a`; both must be Ws of `student` and `teacher`."""
    check_same_pair(a, b)
    a.check_tokenizers(student, teacher)
    moved, changed = row_mass_moved(a, b)
    codes = student.category_codes
    n = len(codes.names)
    per_rows = np.bincount(codes.codes, minlength=n)
    per_changed = np.bincount(codes.codes, weights=changed, minlength=n)
    per_moved = np.bincount(codes.codes, weights=moved, minlength=n)
    categories = {
        name: CategoryDiff(rows=int(per_rows[k]), rows_changed=int(per_changed[k]), mass_moved=float(per_moved[k]))
        for k, name in enumerate(codes.names)
    }
    ids = np.flatnonzero(changed)
    ids = ids[np.lexsort((ids, -moved[ids]))][:top]
    rows_changed, total = int(changed.sum()), float(moved.sum())
    return DiffReport(
        a=labels[0],
        b=labels[1],
        student=student.name,
        teacher=teacher.name,
        rows=student.size,
        rows_changed=rows_changed,
        mass_moved=total,
        mean_mass_moved=total / rows_changed if rows_changed else 0.0,
        categories=categories,
        top=[_row_diff(int(i), float(moved[i]), a, b, student, teacher) for i in ids],
    )


def _row_diff(sid: int, moved: float, a: Projection, b: Projection, student: Vocab, teacher: Vocab) -> RowDiff:
    def side(projection: Projection) -> list[DiffEntry]:
        return [DiffEntry(teacher_id=e.teacher, display=teacher.display(e.teacher), weight=e.weight, rule=e.rule)
                for e in projection.row(sid)]  # fmt: skip

    token = TokenRef(id=sid, piece=student.pieces[sid], display=student.display(sid), category=student.categories[sid])
    return RowDiff(student=token, mass_moved=moved, a=side(a), b=side(b))


def diff_text(report: DiffReport, shown: int = 20) -> str:
    """The diff for people: summary, per-category table, the rows that moved most side by side."""
    lines = [
        f"W diff, {report.student} -> {report.teacher}: A = {report.a}, B = {report.b}",
        f"rows changed {report.rows_changed:,} of {report.rows:,}; mass moved {report.mass_moved:,.4f} rows "
        f"(mean {report.mean_mass_moved:.4f} per changed row; ½·Σ|A−B| per row)",
        "",
        table(
            ["category", "rows", "changed", "mass moved"],
            [
                [name, c.rows, c.rows_changed, f"{c.mass_moved:.4f}"]
                for name, c in report.categories.items()
                if c.rows_changed
            ],
        ),  # fmt: skip
    ]
    if report.top:
        lines += ["", f"largest changes (first {min(shown, len(report.top))} of {report.rows_changed:,})"]
    for row in report.top[:shown]:
        lines.append(f"  {row.student.id} {row.student.display!r} ({row.student.category}): moved {row.mass_moved:.4f}")
        lines.append(f"    A: {_entries(row.a)}")
        lines.append(f"    B: {_entries(row.b)}")
    return "\n".join(lines)


def _entries(entries: list[DiffEntry]) -> str:
    return "  ".join(f"{e.display!r} {e.weight:.4f} ({e.rule})" for e in entries) or "(empty)"
