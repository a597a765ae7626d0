"""The per-category audit of one teacher, and the loss it recommends (method.md §5).

Definitions are those of the `diagnose` package docstring: strict, exact, common, covered, and the
severity of a category's H-KL common share.
"""

from __future__ import annotations

import numpy as np

from xtoken_align.categories import is_numeral
from xtoken_align.diagnose.report import CategoryAudit, Loss, WEntry
from xtoken_align.projection import Projection
from xtoken_align.vocab import Vocab

OK_SHARE, WARN_SHARE = 0.95, 0.5


def severity(share: float, critical: bool) -> str:
    """ok / warn / critical for a category's strict share; only critical categories reach "critical".

    >>> severity(0.0, True), severity(0.0, False), severity(0.6, True), severity(1.0, True)
    ('critical', 'warn', 'warn', 'ok')
    """
    if share >= OK_SHARE:
        return "ok"
    return "warn" if share >= WARN_SHARE or not critical else "critical"


def strict_set(student: Vocab, teacher: Vocab) -> np.ndarray:
    """(V_S,) bool: the raw piece is also a teacher piece, as GOLD's `get_vocab()` match."""
    pieces = {piece for piece in teacher.pieces if piece}
    return np.fromiter((bool(p) and p in pieces for p in student.pieces), dtype=bool, count=student.size)


def audit(
    student: Vocab, teacher: Vocab, projection: Projection | None, strict: np.ndarray, critical: list[str]
) -> dict[str, CategoryAudit]:
    """Per student category (unused ids left out): total, strict, exact, common, covered, severity."""
    specials = {teacher.pieces[i] for i in teacher.special}
    exact = np.fromiter(
        (
            student.pieces[i] in specials if i in student.special else teacher.id_of_bytes(data) is not None
            for i, data in enumerate(student.token_bytes)
        ),
        dtype=bool,
        count=student.size,
    )
    if projection is None:  # same canonical vocabulary: the identity map, every id common
        common = covered = np.ones(student.size, dtype=bool)
    else:
        covered = projection.filled()
        common = np.zeros(student.size, dtype=bool)
        common[list(projection.common_set())] = True
    categories = student.category_codes
    n = len(categories.names)
    counts = {
        field: np.bincount(categories.codes, weights=flags, minlength=n).astype(np.int64).tolist()
        for field, flags in (("strict", strict), ("exact", exact), ("common", common), ("covered", covered))
    }
    totals = np.bincount(categories.codes, minlength=n).tolist()
    report = {}
    for k, name in enumerate(categories.names):
        if name == "unused":
            continue
        row = {field: counts[field][k] for field in counts}
        share = row["common"] / totals[k]
        report[name] = CategoryAudit(total=totals[k], severity=severity(share, name in critical), **row)
    return report


def recommend(
    student: Vocab, teacher: Vocab, categories: dict[str, CategoryAudit], critical: list[str], same: bool
) -> tuple[Loss, str]:
    """(recommendation, reason in one sentence), by the rule of method.md §5: critical tokens outside
    W's H-KL common set → P-KL, else H-KL. Every number in the sentence is a number of the table."""
    if same:
        return "kd", (
            f"{teacher.name} has the same canonical vocabulary as {student.name} (fingerprint "
            f"{teacher.fingerprint[:12]}): plain per-position KD, no W needed (method §6)"
        )
    present = [c for c in critical if c in categories]
    if not present:
        return "h_kl", f"{student.name} has no tokens in the critical categories; H-KL's partition is safe (method §5)"
    noun = "numeral" if all(is_numeral(c) for c in present) else "critical"
    total = sum(categories[c].total for c in present)

    def counts(field: str, names: list[str]) -> str:
        return ", ".join(f"{c} {getattr(categories[c], field):,}/{categories[c].total:,}" for c in names)

    def failing(field: str) -> list[str]:
        return [c for c in present if getattr(categories[c], field) / categories[c].total < OK_SHARE]

    outside, gold = failing("common"), failing("strict")
    if outside:
        missing = sum(categories[c].total - categories[c].common for c in outside)
        who = "H-KL and GOLD" if gold else "H-KL"
        return "p_kl", (
            f"{missing:,} of {total:,} {noun} tokens are outside the H-KL common set for {teacher.name} "
            f"({counts('common', outside)} common): {who} would push them down (method §1); use P-KL"
        )
    kept = sum(categories[c].common for c in present)
    reason = (
        f"{kept:,} of {total:,} {noun} tokens are in the H-KL common set for {teacher.name} "
        f"({counts('common', present)} common): the common set keeps them; use H-KL (method §5)"
    )
    if gold:  # H-KL's W finds what GOLD's string match misses: worth saying
        reason += f"; GOLD's string match would miss some ({counts('strict', gold)} strict)"
    return "h_kl", reason


def w_row(projection: Projection | None, teacher: Vocab, index: int) -> list[WEntry]:
    """A student token's W row as the report shows it (the identity for a same-vocabulary teacher)."""
    if projection is None:
        return [WEntry(id=index, display=teacher.display(index), weight=1.0)]
    return [
        WEntry(id=e.teacher, display=teacher.display(e.teacher), weight=round(e.weight, 4))
        for e in projection.row(index)
    ]
