"""Bulk planning (xtoken_align/bulk.py) on the real Llama-3 × Qwen3 pair: each action against what a
full build with the same rule gives, and what each refuses."""

from __future__ import annotations

import pytest
from conftest import vocab

from xtoken_align.bulk import ClearAction, LeadingAction, ResetAction, RuleAction, describe, plan_bulk
from xtoken_align.config import BuildConfig, BytesRule, DigitsRule, MultitokenRule, SpecialRule, default_rules
from xtoken_align.errors import XTokenError
from xtoken_align.projection import build_projection
from xtoken_align.rules import RuleContext


@pytest.fixture(scope="module")
def pair():
    student, teacher = vocab("llama3"), vocab("qwen3")
    return student, teacher, build_projection(student, teacher, progress=False), RuleContext(student, teacher)


def ids_of(student, category: str) -> list[int]:
    return [i for i in range(student.size) if student.categories[i] == category]


def test_a_leading_policy_equals_building_with_it(pair) -> None:
    student, teacher, base, ctx = pair
    rows = ids_of(student, "digits:2")[:200] + [student.pieces.index("Hello"), student.pieces.index("ĠAlexander")]
    planned = plan_bulk(LeadingAction(beta=1.0, gamma=0.0), rows, base.row, base, ctx)
    first_only = (DigitsRule(beta=1.0, gamma=0.0), BytesRule(beta=1.0, gamma=0.0), MultitokenRule(beta=1.0, gamma=0.0))
    config = BuildConfig(rules=(*default_rules()[:2], *first_only))
    built = build_projection(student, teacher, config, progress=False)
    assert student.pieces.index("Hello") not in planned  # an exact row has no leading pieces to re-weight
    assert all(planned[sid] == built.row(sid) for sid in planned)
    assert all(len(row) == 1 for row in planned.values()) and len(planned) >= 90  # `77` is one-hot already


def test_only_rows_that_change_are_planned(pair) -> None:
    student, _, base, ctx = pair
    rows = ids_of(student, "digits:3")
    assert plan_bulk(ResetAction(), rows, base.row, base, ctx) == {}  # already the rules' rows
    rerun = RuleAction(rule=DigitsRule())  # the default parameters: what the build gave
    assert plan_bulk(rerun, rows, base.row, base, ctx) == {}


def test_clear_refuses_tokens_that_appear_in_text(pair) -> None:
    student, _, base, ctx = pair
    with pytest.raises(XTokenError, match="1,000 of the selected tokens can appear in text"):
        plan_bulk(ClearAction(), ids_of(student, "digits:3"), base.row, base, ctx)
    specials = [i for i in sorted(student.special) if base.row(i)][:3]
    assert plan_bulk(ClearAction(), specials, base.row, base, ctx) == {i: [] for i in specials}


def test_descriptions_name_the_action_and_its_parameters() -> None:
    assert describe(RuleAction(rule=DigitsRule(beta=1.0, gamma=0.0))) == "bulk rule digits beta=1 gamma=0"
    assert describe(LeadingAction(beta=0.5, gamma=0.25)) == "bulk leading pieces beta=0.5 gamma=0.25"
    assert describe(RuleAction(rule=SpecialRule())) == "bulk rule special"
