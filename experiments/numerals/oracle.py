"""The oracle teacher of the numerals study: at every teacher position a fixed smoothed distribution,
`mass` on the true next teacher token and (1 − mass) spread uniformly over the other ids.

It is a module the cache writer runs in place of a model folder (`cache_teachers(..., models=)`), so
its cache has the writer's own format (manifest, shards, top-K + sampled tail). It separates "the
Qwen3 teacher is a poor teacher" from "the alignment or the loss damages the student": the oracle
is a perfect teacher with Qwen3's tokenizer, so what damage it still does is not the teacher's.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

MASS = 0.9


class OracleTeacher(torch.nn.Module):
    """`model(input_ids=, attention_mask=).logits`: log `mass` at the next token, log((1 − mass)/(V − 1))
    elsewhere; a position with no next token (the last, padding) gets the uniform distribution."""

    def __init__(self, vocab_size: int, mass: float = MASS) -> None:
        super().__init__()
        if not 0 < mass < 1 or vocab_size < 2:
            raise ValueError(f"oracle teacher: mass {mass} must be in (0, 1), vocab_size {vocab_size} >= 2")
        self.vocab_size, self.mass = vocab_size, mass

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        rest = math.log((1 - self.mass) / (self.vocab_size - 1))
        logits = torch.full((*input_ids.shape, self.vocab_size), rest, device=input_ids.device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        has_next = attention_mask[:, 1:].bool()
        peak = torch.where(has_next, math.log(self.mass), rest).unsqueeze(-1)
        logits[:, :-1].scatter_(2, input_ids[:, 1:].unsqueeze(-1), peak)
        logits[:, -1] = -math.log(self.vocab_size)  # no next token: uniform
        return SimpleNamespace(logits=logits)
