"""Text of the `build` summary."""

from __future__ import annotations

from xtoken_align.report import table
from xtoken_align.vocab import Vocab


def build_text(projection, student: Vocab, path, seconds: float) -> str:
    from collections import Counter

    from xtoken_align.rules import RULE_CODES

    rows_by_rule: Counter[str] = Counter()
    for row in range(projection.shape[0]):
        entries = projection.row(row)
        if entries:
            rows_by_rule[entries[0][2]] += 1
    placeholder = "special:unused"
    unmatched = [i for i in sorted(student.special) if not projection.row(i) and student.categories[i] != placeholder]
    lines = [
        f"wrote {path} and {path.with_suffix('.json').name} in {seconds:.1f} s",
        f"W {projection.shape[0]:,} x {projection.shape[1]:,}, {projection.matrix.nnz:,} entries, K = "
        f"{projection.config.top_k if projection.config else '?'}",
        table(["rows led by rule", "rows"], [[r, rows_by_rule[r]] for r in RULE_CODES if rows_by_rule[r]]),
    ]
    if unmatched:
        names = ", ".join(f"{student.pieces[i]} ({'/'.join(student.special[i])})" for i in unmatched)
        lines.append(f"special tokens with no teacher counterpart (empty rows): {names}")
    return "\n".join(lines)
