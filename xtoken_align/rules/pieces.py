"""Rules that spell a student token with several teacher tokens, weighted β·γ^i by position.

`digits` takes numerals (Llama's `201` → Qwen's `2`,`0`,`1`: 0.9, 0.09, 0.009 before
normalisation), `bytes` takes tokens that are not valid UTF-8 on their own (byte-fallback pieces,
fragments of multi-byte characters), `multitoken` takes everything else. When the teacher's
tokenisation does not reproduce the token's bytes (a normaliser changed them), the row falls back
to a byte-exact segmentation and is credited to `bytes`.
"""

from __future__ import annotations

from xtoken_align.categories import is_numeral
from xtoken_align.config import BytesRule, DigitsRule, MultitokenRule
from xtoken_align.rules.context import Entries, RuleContext

_NOT_TEXT = ("byte", "partial-utf8")


def _spell(ctx: RuleContext, rows: list[int], config: DigitsRule | MultitokenRule) -> Entries:
    entries = Entries()
    for row, pieces in ctx.retokenize(rows).items():
        entries.add_pieces(row, pieces, config.beta, config.gamma)
    return entries


def digits_rule(ctx: RuleContext, rows: list[int], config: DigitsRule) -> Entries:
    return _spell(ctx, [r for r in rows if ctx.student.is_regular(r) and is_numeral(ctx.student.categories[r])], config)


def multitoken_rule(ctx: RuleContext, rows: list[int], config: MultitokenRule) -> Entries:
    text_rows = [r for r in rows if ctx.student.is_regular(r) and ctx.student.categories[r] not in _NOT_TEXT]
    return _spell(ctx, text_rows, config)


def bytes_rule(ctx: RuleContext, rows: list[int], config: BytesRule) -> Entries:
    """Byte tokens and partial UTF-8 always; other rows only if re-tokenising cannot reproduce them."""
    regular = [r for r in rows if ctx.student.is_regular(r)]
    text_rows = [r for r in regular if ctx.student.categories[r] not in _NOT_TEXT]
    spelled = ctx.retokenize(text_rows)
    entries = Entries()
    for row in regular:
        if row in spelled:
            continue
        pieces = ctx.segment_bytes(ctx.student.token_bytes[row])
        if pieces:
            entries.add_pieces(row, pieces, config.beta, config.gamma)
    return entries
