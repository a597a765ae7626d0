"""A teacher position's distribution, stored sparsely, and rebuilt as log-probabilities for the losses.

Stored per position i, from p = softmax(z_i) over the tokenizer's V_T ids (padded columns left out):

- the top-K ids and their log p (exact up to the storage dtype),
- log p of the actual next teacher token (exact, float32), whether or not it is in the top-K:
  the `chain` aggregation and the teacher statistics read it,
- S ids drawn with replacement from p restricted to R = the rest (not top-K, not the next token),
  as distinct ids with counts (Sparse Logit Sampling, Anshumann et al., ACL 2025), and
  the residual mass r = Σ_{v∈R} p[v] (float32), and each drawn id's own log p[v] (the log-prob dtype):
  p̂ below is lumpier than p (a drawn id carries the mass of many), so a KL's teacher term Σ p̂ log p̂
  is too high; Σ p̂ log p, with the drawn ids' own log p, is unbiased, and the losses' values use it
  (`SparseTeacher.kl_correction`; the student gradient does not depend on it).

Read back (`slots`: per position the stored ids and their log p̂; `rebuild`: dense): p̂[v] = p[v] on
the top-K and the next token, p̂[v] = r · count(v) / S on a drawn id, 0 elsewhere, so E[p̂] = p and
Σ p̂ = 1 up to rounding. The losses receive log p̂ as a `SparseTeacher` (losses/sparse_teacher.py),
which they read as a live teacher's logits (a softmax of log p̂ is p̂). With K = V_T and S = 0, p̂ = p.
Draws come from a generator seeded per sample, so caching again gives the same draws. Left out: which
positions and samples a shard holds (writer.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xtoken_align.distill.losses.sparse_teacher import SparseTeacher


@torch.no_grad()
def sparse_signal(logp: Tensor, next_ids: Tensor, topk: int, sampled: int, generator: torch.Generator) -> dict:
    """logp (L, V) float32 log-probabilities, next_ids (L,) the next teacher token or -1 -> per-position
    tensors: topk_ids (L, K), topk_logp (L, K), next_logp (L,) (−inf without a next token),
    sample_ids (L, S), sample_counts (L, S) (0 in unused slots), sample_logp (L, S), residual (L,)."""
    rows = torch.arange(len(logp), device=logp.device)
    topk = min(topk, logp.shape[-1])
    topk_logp, topk_ids = torch.topk(logp, topk, dim=-1)  # descending
    has_next = next_ids >= 0
    next_logp = torch.where(has_next, logp[rows, next_ids.clamp_min(0)], -torch.inf)
    rest = logp.exp().scatter_(1, topk_ids, 0.0)
    rest[rows[has_next], next_ids[has_next]] = 0.0
    residual = rest.sum(-1)  # (L,)
    out = {"topk_ids": topk_ids, "topk_logp": topk_logp, "next_logp": next_logp, "residual": residual}
    out["sample_ids"], out["sample_counts"] = _draw(rest, residual, sampled, generator)
    out["sample_logp"] = logp.gather(1, out["sample_ids"])  # (L, S); unused slots: any value, count 0
    return out


def _draw(rest: Tensor, residual: Tensor, sampled: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(L, S) distinct drawn ids (ascending, then unused slots) and their counts."""
    n = len(rest)
    if sampled == 0:
        empty = torch.zeros(n, 0, dtype=torch.long, device=rest.device)
        return empty, empty.clone()
    some = residual > 0
    weights = torch.where(some.unsqueeze(1), rest, 1.0)  # rows without a rest draw anything, counted 0
    draws = torch.multinomial(weights, sampled, replacement=True, generator=generator).sort(-1).values
    new = torch.ones_like(draws, dtype=torch.bool)
    new[:, 1:] = draws[:, 1:] != draws[:, :-1]
    slot = new.cumsum(-1) - 1  # (L, S) the distinct id's slot
    ids = torch.zeros_like(draws).scatter_(1, slot, draws)
    counts = torch.zeros_like(draws).scatter_add_(1, slot, torch.ones_like(draws))
    return ids, torch.where(some.unsqueeze(1), counts, 0)


def slots(signal: dict[str, Tensor], next_ids: Tensor, sampled: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stored tensors of L positions (float32 on one device) -> (L, K + 1 + S) ids, log p̂ and
    log p − log p̂, distinct ids per position: the top-K, the next token unless it is among them, the
    drawn ids (log p̂ −inf where unused or absent; log p − log p̂ 0 there and on the exact slots)."""
    n = len(next_ids)
    has_next = (next_ids >= 0) & ~(signal["topk_ids"] == next_ids.unsqueeze(1)).any(-1)
    next_logp = torch.where(has_next, signal["next_logp"].float(), -torch.inf)
    ids = [signal["topk_ids"], next_ids.clamp_min(0).unsqueeze(1)]
    logp = [signal["topk_logp"].float(), next_logp.unsqueeze(1)]
    ratio = [torch.zeros(n, signal["topk_ids"].shape[1] + 1)]
    if sampled:
        weight = signal["residual"].unsqueeze(1) * signal["sample_counts"].float() / sampled  # (L, S)
        ids.append(signal["sample_ids"])
        logp.append(weight.log())  # 0 for an unused slot: −inf
        ratio.append(torch.where(weight > 0, signal["sample_logp"].float() - weight.log(), 0.0))
    flat = [torch.cat(x, 1).reshape(n, -1) for x in (ids, logp, ratio)]
    return flat[0], flat[1], flat[2].to(flat[1].device)


def rebuild(signal: dict[str, Tensor], next_ids: Tensor, vocab_size: int, sampled: int) -> Tensor:
    """Stored tensors of L positions (float32 on one device) -> (L, V) log p̂ (−inf where p̂ = 0)."""
    ids, logp, _ = slots(signal, next_ids, sampled)
    return SparseTeacher(ids, logp, vocab_size).dense()
