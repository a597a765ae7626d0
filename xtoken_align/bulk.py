"""Bulk edits: one action on a selection of student rows, planned as the rows it changes.

Actions (`BulkAction`, told apart by `kind`):
- `rule`: re-run one rule, with the parameters given, on the selection. A claiming rule (special,
  exact, digits, bytes, multitoken) replaces the rows it fills; an adding rule (fuzzy, reverse) adds
  its entries to each selected row's current ones, by raw score, then keeps the top K and
  renormalises, as `build` does (exact and special rows are left one-hot). Rows the rule has
  nothing for are left as they are.
- `leading`: a leading-piece policy β·γ^i. Each selected row whose heaviest entry comes from a
  re-tokenising rule (digits, bytes, multitoken) is rebuilt by that rule with β, γ (γ = 0: the
  first piece only).
- `reset`: back to the rows the rules built (the base W), undoing hand edits.
- `clear`: empty rows; like a single-row edit, only for tokens that cannot appear in text.
- `copy`: the rows of another W of the same tokenizer pair (one given with `serve --compare`).

`plan_bulk` returns only the rows that change. Left out: how rows are selected (the vocabulary
search) and how changes are stored and undone (the web layer's edit store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xtoken_align.assemble import assemble_entries
from xtoken_align.config import CLAIMING, BuildConfig, BytesRule, DigitsRule, MultitokenRule, RuleConfig
from xtoken_align.edits import Row, same_row
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, build_projection, csr_row
from xtoken_align.rules import ONE_HOT_RULES, RULE_CODES, RULES, RuleContext

RETOKENISING = {"digits": DigitsRule, "bytes": BytesRule, "multitoken": MultitokenRule}


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleAction(_Action):
    kind: Literal["rule"] = "rule"
    rule: RuleConfig


class LeadingAction(_Action):
    kind: Literal["leading"] = "leading"
    beta: Annotated[float, Field(gt=0, le=1)] = 1.0
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.0


class ResetAction(_Action):
    kind: Literal["reset"] = "reset"


class ClearAction(_Action):
    kind: Literal["clear"] = "clear"


class CopyAction(_Action):
    kind: Literal["copy"] = "copy"
    source: str = Field(min_length=1, max_length=200)  # the name of a W given with `serve --compare`


BulkAction = Annotated[RuleAction | LeadingAction | ResetAction | ClearAction | CopyAction, Field(discriminator="kind")]


def describe(action: BulkAction) -> str:
    """One line for the edit history: `bulk rule digits beta=1 gamma=0`."""
    if isinstance(action, RuleAction):
        params = " ".join(f"{k}={v:g}" for k, v in action.rule.model_dump().items() if isinstance(v, float | int))
        return f"bulk rule {action.rule.name} {params}".rstrip()
    if isinstance(action, LeadingAction):
        return f"bulk leading pieces beta={action.beta:g} gamma={action.gamma:g}"
    if isinstance(action, CopyAction):
        return f"bulk copy from {action.source}"
    return f"bulk {action.kind}"


def plan_bulk(
    action: BulkAction,
    ids: Iterable[int],
    current: Callable[[int], Row],
    base: Projection,
    context: RuleContext,
    source: Projection | None = None,
) -> dict[int, Row]:
    """The rows `action` changes among `ids` (student id -> new row); `current(sid)` is a row now.
    `base` is the W the rules built (reset's target; its config's K is kept), `source` copy's W."""
    ids = sorted(set(ids))
    top_k = base.config.top_k if base.config else BuildConfig().top_k
    if isinstance(action, RuleAction):
        proposed = _rerun(action.rule, ids, current, context, top_k)
    elif isinstance(action, LeadingAction):
        proposed = {}
        for name, kind in RETOKENISING.items():
            rows = [sid for sid in ids if (row := current(sid)) and row[0].rule == name]
            rule = kind(beta=action.beta, gamma=action.gamma)
            proposed |= _rerun(rule, rows, current, context, top_k) if rows else {}
    elif isinstance(action, ResetAction):
        proposed = {sid: base.row(sid) for sid in ids}
    elif isinstance(action, ClearAction):
        regular = [sid for sid in ids if context.student.is_regular(sid)]
        if regular:
            raise XTokenError(
                f"{len(regular):,} of the selected tokens can appear in text and need a row with an entry "
                f"(first: #{regular[0]}); select special tokens only, or use reset to go back to the rules"
            )
        proposed = {sid: [] for sid in ids}
    elif isinstance(action, CopyAction):
        if source is None:
            raise XTokenError(f"no W named '{action.source}' to copy rows from")
        proposed = {sid: source.row(sid) for sid in ids if source.row(sid) or not context.student.is_regular(sid)}
    else:  # pragma: no cover - the union is closed
        raise XTokenError(f"unknown bulk action {action!r}")
    return {sid: row for sid, row in proposed.items() if not same_row(row, current(sid))}


def _rerun(rule: RuleConfig, ids: list[int], current: Callable[[int], Row], ctx: RuleContext, top_k: int):
    """Rows that `rule` alone gives the selected rows (see the module docstring)."""
    if rule.name == "corpus":
        raise XTokenError("the corpus rule reads files named on the command line; rebuild W with it instead")
    if rule.name in CLAIMING:
        config = BuildConfig(top_k=top_k, rules=(rule,))
        built = build_projection(ctx.student, ctx.teacher, config, rows=ids, context=ctx, progress=False)
        return {sid: row for sid in ids if (row := built.row(sid))}
    open_rows = [sid for sid in ids if (row := current(sid)) and row[0].rule not in ONE_HOT_RULES]
    added = RULES[rule.name](ctx, open_rows, rule)
    touched = sorted(set(added.rows))
    old = [(sid, entry) for sid in touched for entry in current(sid)]
    rows = np.asarray([sid for sid, _ in old] + added.rows, dtype=np.int64)
    cols = np.asarray([e.teacher for _, e in old] + added.cols, dtype=np.int64)
    scores = np.asarray([e.score for _, e in old] + added.scores, dtype=np.float64)
    codes = np.asarray([RULE_CODES.index(e.rule) for _, e in old] + [RULE_CODES.index(rule.name)] * len(added))
    shape = (ctx.student.size, ctx.teacher.size)
    matrix, rule_codes, raw = assemble_entries(rows, cols, scores, codes.astype(np.uint8), shape, top_k)
    return {sid: csr_row(matrix, rule_codes, raw, sid) for sid in touched}
