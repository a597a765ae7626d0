"""What W's rows hold, per student category: coverage, and the weight it puts off the token's pieces."""

from __future__ import annotations

from collections import Counter

import numpy as np

from xtoken_align.projection import HKL_THRESHOLD, Projection
from xtoken_align.rules import RULE_CODES, RuleContext
from xtoken_align.score.report import Coverage, OffPieceMass, Receiver
from xtoken_align.vocab import Vocab

LEAK_TOLERANCE = 1e-3


def coverage(projection: Projection, student: Vocab, threshold: float = HKL_THRESHOLD) -> dict[str, Coverage]:
    """Per student category (unused ids left out): rows filled, with an `exact` entry, in the H-KL
    common set."""
    exact = np.zeros(student.size, dtype=bool)
    exact[projection.entry_rows()[projection.rules == RULE_CODES.index("exact")]] = True
    common = np.zeros(student.size, dtype=bool)
    common[list(projection.common_set(threshold))] = True
    categories = student.category_codes
    n = len(categories.names)

    def count(flags: np.ndarray) -> list[int]:
        return np.bincount(categories.codes, weights=flags, minlength=n).astype(np.int64).tolist()

    totals, covered = np.bincount(categories.codes, minlength=n).tolist(), count(projection.filled())
    exacts, commons = count(exact), count(common)
    return {
        name: Coverage(total=totals[k], covered=covered[k], exact=exacts[k], common=commons[k])
        for k, name in enumerate(categories.names)
        if name != "unused"
    }


def off_piece_mass(
    projection: Projection, student: Vocab, teacher: Vocab, context: RuleContext | None = None
) -> OffPieceMass:
    """Weight on teacher tokens outside each regular row's own candidates (exact match or pieces);
    `context`: a RuleContext of the pair to reuse (it keeps the candidates once computed)."""
    allowed_keys, non_exact_rows = (context or RuleContext(student, teacher)).own_pieces
    filled = projection.filled()
    regular = np.asarray([r for r in range(student.size) if student.is_regular(r) and filled[r]], dtype=np.int64)
    # An entry leaks when its (row, teacher id) is not among the row's allowed pairs.
    v_t = projection.shape[1]
    rows, cols = projection.entry_rows(), projection.matrix.indices.astype(np.int64)
    checked = np.zeros(student.size, dtype=bool)
    checked[regular] = True
    leaking = checked[rows] & ~np.isin(rows * v_t + cols, allowed_keys, assume_unique=False)
    per_row = np.bincount(rows[leaking], weights=projection.matrix.data[leaking], minlength=student.size)
    leaks = per_row[regular]
    non_exact = non_exact_rows[regular]
    leaky = leaks > LEAK_TOLERANCE
    receivers = Counter(cols[leaking].tolist())
    return OffPieceMass(
        rows_checked=len(regular),
        rows_with_off_piece_mass=int(leaky.sum()),
        total_off_piece_mass=round(float(leaks.sum()), 4),
        mean_of_affected_rows=round(float(leaks[leaky].mean()), 4) if leaky.any() else 0.0,
        mean_of_non_exact_rows=round(float(leaks[non_exact].mean()), 4) if non_exact.any() else 0.0,
        top_receivers=[
            Receiver(teacher_id=col, piece=teacher.pieces[col], rows=count) for col, count in receivers.most_common(5)
        ],
    )
