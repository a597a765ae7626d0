"""Rules that match whole tokens: `exact` (same canonical bytes) and `special` (same role).

Left out: anything that re-tokenises; see `pieces.py`.
"""

from __future__ import annotations

from xtoken_align.config import ExactRule, SpecialRule
from xtoken_align.rules.context import Entries, RuleContext

# Roles in the order they decide a special token's counterpart: what a marker *is* (turn_end)
# before what a config *uses* it for (eos), so Llama's <|eot_id|> meets Qwen's <|im_end|>.
ROLE_PRIORITY = (
    "turn_start",
    "turn_end",
    "header_start",
    "header_end",
    "message_end",
    "tool_call",
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
    """One-hot rows for special tokens whose role the teacher also has."""
    teacher_roles = ctx.teacher.roles()
    entries = Entries()
    for row in rows:
        roles = ctx.student.special.get(row)
        if not roles:
            continue
        for role in sorted(roles, key=lambda r: ROLE_PRIORITY.index(r) if r in ROLE_PRIORITY else len(ROLE_PRIORITY)):
            if role in teacher_roles and role in ROLE_PRIORITY:
                entries.add(row, teacher_roles[role], 1.0)
                break
    return entries
