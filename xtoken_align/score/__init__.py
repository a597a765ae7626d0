"""How good a W is, before any GPU is spent: coverage, off-piece mass, and corpus agreement.

- Coverage per student category: rows that are filled, exact one-hot, and in the H-KL common set
  (`Projection.common_set`, method.md §4: top weight ≥ 0.6; collisions on a teacher id go to the
  row that is the teacher token, then the highest weight, then the lowest student id).
- Off-piece mass: weight on teacher tokens that are neither the token's exact match nor among the
  teacher's own pieces of its text. Zero for W built with the default rules; the reference builder's
  "scale trick" puts about 29% of every non-exact row there.
- Corpus agreement: tokenise a corpus with both tokenizers, align by byte offsets, and count how
  often W's top teacher token for a student token is the teacher token that starts at the same byte
  (agreement@1), and the W mass on it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from xtoken_align.projection import ROW_SUM_TOLERANCE, Projection
from xtoken_align.rules import RULE_CODES, RuleContext
from xtoken_align.score.agreement import TokenAgreement, corpus_agreement, token_agreement
from xtoken_align.score.coverage import coverage, off_piece_mass
from xtoken_align.score.report import RowCounts, ScoreReport, SpecialToken, score_text
from xtoken_align.vocab import Vocab

__all__ = [
    "ScoreReport",
    "TokenAgreement",
    "corpus_agreement",
    "coverage",
    "off_piece_mass",
    "score_projection",
    "score_text",
    "token_agreement",
]


def score_projection(
    projection: Projection,
    student: Vocab,
    teacher: Vocab,
    texts: list[str] | None,
    corpus_name: str = "",
    context: RuleContext | None = None,
) -> ScoreReport:
    """The whole `xtoken-align score` report; the corpus section only with `texts`. `context`: a
    RuleContext of the pair to reuse (scoring several Ws of one pair computes its pieces once)."""
    regular = np.asarray([i for i in range(student.size) if student.is_regular(i)], dtype=np.int64)
    filled = projection.filled()
    sums = projection.row_sums()
    empty_specials = [i for i in sorted(student.special) if not filled[i]]
    unused = [i for i in empty_specials if student.categories[i] == "special:unused"]
    return ScoreReport(
        student=projection.student,
        teacher=projection.teacher,
        shape=projection.shape,
        nnz=int(projection.matrix.nnz),
        config=projection.config,
        entries_per_rule=dict(Counter(RULE_CODES[c] for c in projection.rules.tolist()).most_common()),
        rows=RowCounts(
            regular=len(regular),
            regular_filled=int(filled[regular].sum()),
            regular_summing_to_1=int((np.abs(sums[regular] - 1) <= ROW_SUM_TOLERANCE).sum()),
            special_unmatched=[
                SpecialToken(id=i, piece=student.pieces[i], roles=student.special[i])
                for i in empty_specials
                if i not in unused
            ],
            special_unused_unmatched=len(unused),
        ),
        coverage=coverage(projection, student),
        off_piece_mass=off_piece_mass(projection, student, teacher, context),
        corpus=None if texts is None else corpus_agreement(projection, student, teacher, texts, corpus_name),
    )
