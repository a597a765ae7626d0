"""The rules that fill W, one module each, and what they share.

A rule is a function `rule(ctx, rows, config) -> Entries`: given the student rows it may fill, it
proposes (row, teacher id, score) entries. `build_projection` runs the rules in the configured
order; see `xtoken_align.config` for which rules claim rows and which only add to them. The
blending rule, `corpus`, is not in RULES: it counts a corpus and `build_projection` blends the counts
into the assembled rows (`rules/corpus.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from xtoken_align.rules.context import Entries, RuleContext
from xtoken_align.rules.pieces import bytes_rule, digits_rule, multitoken_rule
from xtoken_align.rules.reverse import reverse_rule
from xtoken_align.rules.similar import fuzzy_rule
from xtoken_align.rules.strings import exact_rule, special_rule

Rule = Callable[..., Entries]

RULES: dict[str, Rule] = {
    "special": special_rule,
    "exact": exact_rule,
    "digits": digits_rule,
    "bytes": bytes_rule,
    "multitoken": multitoken_rule,
    "fuzzy": fuzzy_rule,
    "reverse": reverse_rule,
}
# Provenance codes stored per entry in W files; append only, never reorder.
RULE_CODES: tuple[str, ...] = (
    "exact", "special", "digits", "bytes", "multitoken", "fuzzy", "reverse", "edit", "imported",
    "corpus",
)  # fmt: skip
# Rules whose entry says the student token *is* the teacher token: their rows stay one-hot, and they
# win H-KL common-set collisions.
ONE_HOT_RULES: tuple[str, ...] = ("exact", "special")
ONE_HOT_CODES: tuple[int, ...] = tuple(RULE_CODES.index(name) for name in ONE_HOT_RULES)

__all__ = ["ONE_HOT_CODES", "ONE_HOT_RULES", "RULES", "RULE_CODES", "Entries", "RuleContext"]
