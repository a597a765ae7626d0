"""Impact order: which student tokens carry the most training signal that the current W puts at risk.

`token_impact(projection, student, teacher, texts)` measures, for every student id v, on a corpus:

- frequency f(v): how many times the student tokenizer emits v over the texts (no BOS/EOS added):
  the next-token targets v is in training.
- three risk checks, each in [0, 1]:
  - unmatched u(v) = 1 unless W's row is a one-hot exact/special match (its heaviest entry's rule
    is in `ONE_HOT_RULES`: what the vocabulary view calls "matched"), else 0;
  - uncommon c(v) = 1 unless v is in the H-KL common set (`Projection.common_set`, method.md §4:
    top weight ≥ 0.6, collisions resolved), else 0: outside it H-KL pushes v down;
  - disagreement d(v) = 1 − agreement@1 of v: of the chunks v opens on the corpus, the share whose
    opening teacher token is not W's top teacher token for v (`score.agreement.token_agreement`,
    the pairs `xtoken-align score` counts). Measured only where v opens at least one chunk.
- risk r(v) = the mean of the checks that apply: (u + c + d) / 3 where d is measured, else
  (u + c) / 2. 0: an exact, common row whose top teacher token is the one the teacher emits there;
  1: no one-hot match, not common, and never right where measured.
- impact(v) = f(v) × r(v), in tokens: the corpus targets that v's row puts at risk. Sorting by it,
  highest first, puts the rows worth fixing first; a token the corpus never emits has impact 0,
  whatever its risk.

On GSM8K (first 500 test problems) with Llama-3 as student and Qwen3 as teacher, `Ġthe` (2,057
times) is an exact, common row that always agrees: risk 0, impact 0. Llama-3's `20` (565 times)
has a `digits` row, 0.91 on Qwen's `2` and 0.09 on its `0`: unmatched, and uncommon (the common
set gives Qwen's `2` to Llama-3's own `2`), while its top token `2` does open every chunk `20`
opens: risk (1 + 1 + 0) / 3 = 0.67, impact 376.7, the highest of the vocabulary.

Left out: anything that needs a model (teacher probabilities, gradients); which corpus to use (the
caller's; the web layer passes the diagnosis page's GSM8K problems).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xtoken_align.projection import Projection
from xtoken_align.rules import ONE_HOT_CODES
from xtoken_align.score.agreement import token_agreement
from xtoken_align.spans import encode_spans
from xtoken_align.vocab import Vocab


@dataclass(frozen=True)
class TokenImpact:
    """Per student id, every array (V_S,): the impact order's inputs and result (module docstring)."""

    frequency: np.ndarray  # int64: times the student tokenizer emits the token on the corpus
    unmatched: np.ndarray  # bool: W's row is not a one-hot exact/special match
    uncommon: np.ndarray  # bool: not in the H-KL common set
    opened: np.ndarray  # int64: chunks the token opens on the corpus
    agreement: np.ndarray  # float64: agreement@1 where it opens a chunk, NaN where it never does
    risk: np.ndarray  # float64 in [0, 1]
    impact: np.ndarray  # float64: frequency × risk

    def explain(self, sid: int) -> str:
        """One line saying why token `sid` ranks where it does.

        "frequency 12 × risk 0.67 (unmatched, uncommon, agreement@1 1.00 over 12 chunk openings) = 8.0"
        """
        checks = [name for name, flag in (("unmatched", self.unmatched), ("uncommon", self.uncommon)) if flag[sid]]
        checks.append(
            f"agreement@1 {self.agreement[sid]:.2f} over {self.opened[sid]} chunk openings"
            if self.opened[sid]
            else "opens no chunk"
        )
        risk = f"risk {self.risk[sid]:.2f} ({', '.join(checks)})"
        return f"frequency {self.frequency[sid]} × {risk} = {self.impact[sid]:.1f}"


def combine_risk(unmatched: np.ndarray, uncommon: np.ndarray, agreement: np.ndarray) -> np.ndarray:
    """(V_S,) risk: the mean of u, c and 1 − agreement, or of u and c where agreement is NaN.

    >>> combine_risk(np.array([False, True, True]), np.array([False, True, False]), np.array([0.7, 0.0, np.nan]))
    array([0.1, 1. , 0.5])
    """
    measured = ~np.isnan(agreement)
    disagreement = np.where(measured, 1 - np.nan_to_num(agreement), 0.0)
    total = unmatched.astype(np.float64) + uncommon + disagreement
    return total / np.where(measured, 3.0, 2.0)


def token_impact(projection: Projection, student: Vocab, teacher: Vocab, texts: Sequence[str]) -> TokenImpact:
    """Frequency, risk and impact of every student token under W on `texts` (module docstring)."""
    projection.check_tokenizers(student, teacher)
    size = projection.shape[0]
    s, t = encode_spans(student, texts), encode_spans(teacher, texts)
    frequency = np.bincount(s.ids, minlength=size)
    leading = projection.leading()
    unmatched = ~np.isin(leading.rule, ONE_HOT_CODES)  # empty rows have rule -1: unmatched
    uncommon = np.ones(size, dtype=bool)
    uncommon[np.fromiter(projection.common_set(), dtype=np.int64)] = False
    agreement = token_agreement(projection, s, t)
    at_1 = agreement.at_1()
    risk = combine_risk(unmatched, uncommon, at_1)
    return TokenImpact(frequency, unmatched, uncommon, agreement.opened, at_1, risk, frequency * risk)
