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


def off_piece_mass(projection: Projection, student: Vocab, teacher: Vocab) -> OffPieceMass:
    """Weight on teacher tokens outside each regular row's own candidates (exact match or pieces)."""
    ctx = RuleContext(student, teacher)
    filled = projection.filled()
    regular = [r for r in range(student.size) if student.is_regular(r) and filled[r]]
    allowed: dict[int, list[int]] = {}
    needs_pieces = []
    for row in regular:
        exact = teacher.id_of_bytes(student.token_bytes[row])
        if exact is not None:
            allowed[row] = [exact]
        else:
            needs_pieces.append(row)
    spelled = ctx.retokenize(needs_pieces)
    for row in needs_pieces:
        allowed[row] = list(spelled.get(row) or ctx.segment_bytes(student.token_bytes[row]) or [])
    # An entry leaks when its (row, teacher id) is not among the row's allowed pairs.
    v_t = projection.shape[1]
    allowed_keys = np.asarray([row * v_t + col for row, cols in allowed.items() for col in cols], dtype=np.int64)
    rows, cols = projection.entry_rows(), projection.matrix.indices.astype(np.int64)
    checked = np.zeros(student.size, dtype=bool)
    checked[regular] = True
    leaking = checked[rows] & ~np.isin(rows * v_t + cols, allowed_keys)
    per_row = np.bincount(rows[leaking], weights=projection.matrix.data[leaking], minlength=student.size)
    leaks = per_row[regular]
    non_exact = np.isin(np.asarray(regular, dtype=np.int64), np.asarray(needs_pieces, dtype=np.int64))
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
