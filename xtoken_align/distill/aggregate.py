"""Chunks of a micro-batch: which logit positions form each chunk, and a chunk's distribution.

Losses see flattened chunk ids (N,) per side (docs/distill-interfaces.md); -1 is ignored. A chunk
counts only when both sides have a position in it; valid chunks are renumbered 0..K-1. A chunk's
distribution over a vocabulary, from the softmax p_i = softmax(z_i / τ) of its positions i_0 < i_1 < …:

- `mean`:  (1/n) Σ_i p_i, probabilities, so it stays a distribution (the reference code averages the
  projected student probabilities in P-KL, but log-probabilities on the teacher side and in GOLD)
- `first`: p_{i_0}, what W's leading-piece weights model
- `chain`: p_{i_0}(v) · Π_{m≥1} p_{i_m}(y_{i_m}), y the actual next token (GOLD's "observed" merge);
  not normalised: it is the probability of "v, then the chunk's actual remaining tokens".

All three are q_k = scale_k · Σ_{i: target_i = k} p_i: `target` sends each position to its chunk (or
to a spare row K when the aggregation does not use it), so a sum is one index_add over every row and
nothing is copied row by row; scale_k is 1/n_k, 1 or the chain factor. No Python loop over chunks or
positions. Left out: computing the chunk ids (align.py / data.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

AGGREGATIONS = ("mean", "first", "chain")
IGNORE_INDEX = -100


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64 (for tests against references); everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


LOG_FLOOR = float(torch.finfo(torch.float32).tiny)  # 1.18e-38, the same floor in float32, float64, bf16


def safe_log(p: Tensor) -> Tensor:
    """log(max(p, LOG_FLOOR)): finite, exact for every probability float32 holds as a normal number,
    no gradient below it. One floor for every dtype (float64 does not get its own, 2.2e-308), so a
    clamped probability costs the same in float32 and float64: `safe_log(tensor([0.0]))` -> −87.34."""
    return torch.log(p.clamp_min(LOG_FLOOR))


def softmax(logits: Tensor, tau: float, dtype: torch.dtype) -> Tensor:
    """softmax(logits / τ) in the compute dtype, (N, V) -> (N, V)."""
    logits = logits.to(dtype)
    return torch.softmax(logits if tau == 1.0 else logits / tau, dim=-1)


@dataclass(frozen=True)
class ChunkSide:
    """One side of the layout. N positions, K valid chunks."""

    valid: Tensor  # (N,) bool: the position belongs to a valid chunk
    target: Tensor  # (N,) its chunk, K when not valid (`mean`)
    target_first: Tensor  # (N,) its chunk when it is the chunk's first position, else K (`first`, `chain`)
    count: Tensor  # (K,) positions per chunk
    later: Tensor  # (m,) valid positions that are not their chunk's first
    later_chunk: Tensor  # (m,)

    def targets(self, aggregation: str) -> Tensor:
        return self.target if aggregation == "mean" else self.target_first


@dataclass(frozen=True)
class ChunkLayout:
    student: ChunkSide
    teacher: ChunkSide
    n_chunks: int

    @classmethod
    def build(cls, student_chunk: Tensor, teacher_chunk: Tensor) -> ChunkLayout:
        """From flattened chunk ids (N_s,), (N_t,), -1 = no chunk."""
        n_ids = max((int(c.max()) if c.numel() else -1) for c in (student_chunk, teacher_chunk)) + 1
        counts = [torch.bincount(c[c >= 0], minlength=n_ids) for c in (student_chunk, teacher_chunk)]
        valid = (counts[0] > 0) & (counts[1] > 0)
        renumber = torch.where(valid, torch.cumsum(valid, 0) - 1, -1)
        n_chunks = int(valid.sum())
        return cls(*(_side(c, renumber, n_chunks) for c in (student_chunk, teacher_chunk)), n_chunks)


def _side(chunk_ids: Tensor, renumber: Tensor, n_chunks: int) -> ChunkSide:
    chunk = renumber[chunk_ids.clamp_min(0)] if len(renumber) else torch.full_like(chunk_ids, -1)
    valid = (chunk_ids >= 0) & (chunk >= 0)
    target = torch.where(valid, chunk, n_chunks)
    positions = torch.arange(len(chunk_ids), device=chunk_ids.device)
    first = torch.full((n_chunks + 1,), len(chunk_ids), dtype=torch.long, device=chunk_ids.device)
    first = first.scatter_reduce(0, target, positions, "amin")[:n_chunks]
    target_first = torch.full_like(target, n_chunks)
    target_first[first] = torch.arange(n_chunks, device=chunk_ids.device)
    count = torch.bincount(target, minlength=n_chunks + 1)[:n_chunks]
    later = torch.nonzero(valid & (target_first == n_chunks)).squeeze(1)
    return ChunkSide(valid, target, target_first, count, later, target[later])


def chunk_sum(x: Tensor, target: Tensor, n_chunks: int) -> Tensor:
    """(N, V) -> (K, V): Σ of the rows sent to each chunk (rows sent to K are dropped)."""
    total = torch.zeros(n_chunks + 1, x.shape[-1], dtype=x.dtype, device=x.device)
    return total.index_add_(0, target, x)[:n_chunks]


def chain_log_weight(logits: Tensor, side: ChunkSide, labels: Tensor | None, tau: float) -> Tensor:
    """(K,) Σ over each chunk's later positions of log p(actual next token) at temperature τ;
    logits (N, V), labels (N,). A later position whose label is -100 contributes nothing."""
    dtype = compute_dtype(logits)
    weight = torch.zeros(len(side.count), dtype=dtype, device=logits.device)
    if not len(side.later):
        return weight
    if labels is None:
        raise ValueError("aggregation 'chain' needs the actual next tokens (labels / teacher_labels) of both sides")
    target = labels[side.later]
    known = target != IGNORE_INDEX
    rows = logits[side.later].to(dtype)  # (m, V)
    rows = rows if tau == 1.0 else rows / tau
    log_p = rows.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1) - torch.logsumexp(rows, dim=-1)
    return weight.index_add(0, side.later_chunk, torch.where(known, log_p, 0.0))


def log_scale(logits: Tensor, side: ChunkSide, aggregation: str, tau: float, labels: Tensor | None) -> Tensor:
    """(K,) log scale_k: −log n_k (mean), 0 (first), the chain factor's log (chain; differentiable)."""
    dtype = compute_dtype(logits)
    if aggregation == "mean":
        return -torch.log(side.count.to(dtype))
    if aggregation == "chain":
        return chain_log_weight(logits, side, labels, tau)
    return torch.zeros(len(side.count), dtype=dtype, device=logits.device)


@torch.no_grad()
def chunk_distribution(logits: Tensor, side: ChunkSide, aggregation: str, tau: float, labels: Tensor | None) -> Tensor:
    """(N, V) teacher logits -> (K, V) chunk distributions q, without gradient."""
    scale = log_scale(logits, side, aggregation, tau, labels).exp()
    q = chunk_sum(softmax(logits, tau, compute_dtype(logits)), side.targets(aggregation), len(side.count))
    return q.mul_(scale.unsqueeze(1))


def check_aggregation(aggregation: str) -> str:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown chunk aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    return aggregation
