"""`reverse`: the reference builder's reverse pass, for comparison (off by default).

Every regular teacher token is re-tokenised by the student; student piece i of teacher token t
gets `weight · β·γ^i` in column t. It lets a student token borrow mass from longer teacher tokens
that start with it (`1` from Llama's view of Qwen's `1`), which is also how it leaks.
"""

from __future__ import annotations

from xtoken_align.config import ReverseRule
from xtoken_align.rules.context import Entries, RuleContext


def reverse_rule(ctx: RuleContext, rows: list[int], config: ReverseRule) -> Entries:
    reverse = RuleContext(student=ctx.teacher, teacher=ctx.student)
    allowed = set(rows)
    entries = Entries()
    columns = [t for t in range(ctx.teacher.size) if ctx.teacher.is_regular(t)]
    for col, pieces in reverse.retokenize(columns).items():
        for i, piece in enumerate(pieces):
            if piece in allowed:
                entries.add(piece, col, config.weight * config.beta * config.gamma**i)
    return entries
