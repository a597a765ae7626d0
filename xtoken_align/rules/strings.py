"""Rules that match whole tokens: `exact` (same canonical bytes) and `special` (same role).

Left out: anything that re-tokenises; see `pieces.py`.
"""

from __future__ import annotations

from xtoken_align.config import ExactRule, SpecialRule
from xtoken_align.rules.context import Entries, RuleContext

# Roles in the order they decide a special token's counterpart: what a marker *is* (turn_start,
# header_end, turn_end, ...) before what a config *uses* it for (eos, pad), so Llama's <|eot_id|>
# (eos, turn_end) meets Qwen's <|im_end|> and Gemma's <end_of_turn>. Roles not listed here, `unused`
# (placeholders) and `marker` (no known role), are never mapped: their rows stay empty by design.
ROLE_PRIORITY = (
    "turn_start:system",
    "turn_start:user",
    "turn_start:assistant",
    "turn_start",
    "header_end",
    "turn_end",
    "message_end",
    "tool_call",
    "channel",
    "constrain",
    "end_of_generation",
    "end_of_prompt",
    "fim_prefix",
    "fim_middle",
    "fim_suffix",
    "fim_pad",
    "end_of_text",
    "bos",
    "eos",
    "pad",
    "unk",
)


def exact_rule(ctx: RuleContext, rows: list[int], config: ExactRule) -> Entries:
    """One-hot rows where the teacher has a regular token with the same canonical bytes.

    Only the student token that *is* those bytes (`Vocab.id_of_bytes`: the real `3`, not the
    `<0x33>` fallback piece spelling the same byte) is an exact match; the duplicate is left to
    the `bytes` rule, so the H-KL common set hands the teacher's `3` to the real one.
    """
    entries = Entries()
    for row in rows:
        if ctx.student.is_regular(row) and ctx.student.id_of_bytes(ctx.student.token_bytes[row]) == row:
            match = ctx.teacher.id_of_bytes(ctx.student.token_bytes[row])
            if match is not None:
                entries.add(row, match, 1.0)
    return entries


def special_rule(ctx: RuleContext, rows: list[int], config: SpecialRule) -> Entries:
    """One-hot rows for special tokens whose role the teacher also has (see `special_counterpart`)."""
    teacher_roles = _role_ids(ctx.teacher.special)
    entries = Entries()
    for row in rows:
        match = special_counterpart(ctx.student.special.get(row, []), teacher_roles)
        if match is not None:
            entries.add(row, match, 1.0)
    return entries


def special_counterpart(roles: list[str], teacher_roles: dict[str, int]) -> int | None:
    """The teacher id for a student special with these roles, tried in `ROLE_PRIORITY` order.

    A role-specific opener falls back to the teacher's generic one (Phi's `<|user|>`, roles
    `turn_start:user`, meets ChatML's `<|im_start|>`); not the other way round: a generic opener does
    not say whose turn it opens, so `<|im_start|>` against Phi stays unmapped.

    >>> special_counterpart(["eos", "turn_end"], {"eos": 1, "turn_end": 7})
    7
    >>> special_counterpart(["turn_start:user"], {"turn_start": 3}), special_counterpart(["unused"], {"unused": 9})
    (3, None)
    """
    for role in sorted((r for r in roles if r in ROLE_PRIORITY), key=ROLE_PRIORITY.index):
        for candidate in (role, role.partition(":")[0]):
            if candidate in teacher_roles:
                return teacher_roles[candidate]
    return None


def _role_ids(special: dict[int, list[str]]) -> dict[str, int]:
    """role -> lowest special id carrying it."""
    found: dict[str, int] = {}
    for index in sorted(special):
        for role in special[index]:
            found.setdefault(role, index)
    return found
