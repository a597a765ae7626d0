"""The training objective around the KD terms: next-token cross-entropy and the Eq. 7 combination
(method.md §5) of CE with the teachers' weighted KD. Left out: the KD terms themselves, and how
several teachers are weighted (teachers.teacher_weights).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import IGNORE_INDEX, compute_dtype
from xtoken_align.distill.losses.base import zero_loss
from xtoken_align.distill.losses.chunked import OutputHead, chunked_head_sum, head_zero, position_groups

SCALE_BOUNDS = (0.01, 100.0)  # the dynamic KD scale's range (TRL's X-Token port clamps to the same)


def cross_entropy(student: Tensor | OutputHead, labels: Tensor) -> Tensor:
    """Mean next-token CE in float32 over labels ≠ -100, over every output column; 0 (graph intact) when
    every label is -100. student: logits (B, T, V') or an `OutputHead` (position chunks, chunked.py)."""
    labels = labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    if not bool(keep.any()):
        return head_zero(student) if isinstance(student, OutputHead) else zero_loss(student)
    if isinstance(student, OutputHead):
        groups = position_groups(keep, student.chunk_positions)
        total = chunked_head_sum(
            lambda z, number: ce_sum_and_grad(z, labels[groups[number].student], overwrite=True), student, groups
        )
        return total / int(keep.sum())
    return _CrossEntropySum.apply(student.reshape(-1, student.shape[-1]), labels) / int(keep.sum())


@torch.no_grad()
def ce_sum_and_grad(z: Tensor, labels: Tensor, overwrite: bool = False) -> tuple[Tensor, Tensor]:
    """Σ over rows with a label (≠ -100) of −log softmax(z)[label], z (n, V'), and its gradient
    softmax(z) − one-hot(label) (0 on rows without one), in the compute dtype, in closed form from one
    softmax: a third of the time of autograd's log-softmax and NLL backward, and one (n, V') tensor
    where they make three, none with `overwrite` (the gradient is written over z, which the caller no
    longer needs). Each term is max z − log p[argmax] − z[label] (= logsumexp z − z[label]), exact where
    p[label] underflows: p[argmax] ≥ 1/V' never does."""
    z = z.detach()
    dtype = compute_dtype(z)
    keep = labels != IGNORE_INDEX
    rows, picked_ids = torch.nonzero(keep).squeeze(1), labels[keep]
    top, at = z.max(-1)
    picked = z[rows, picked_ids].to(dtype)
    grad = torch.softmax(z, -1, out=z) if overwrite and z.dtype == dtype else torch.softmax(z.to(dtype), -1)
    terms = top[rows].to(dtype) - grad[rows, at[rows]].log() - picked
    grad[rows, picked_ids] -= 1.0
    if not bool(keep.all()):
        grad[~keep] = 0.0
    return terms.sum(), grad


class _CrossEntropySum(torch.autograd.Function):
    """`ce_sum_and_grad` on logits that carry a graph: the value forward, the saved gradient scaled back."""

    @staticmethod
    def forward(ctx, z: Tensor, labels: Tensor) -> Tensor:
        value, grad = ce_sum_and_grad(z, labels)
        ctx.save_for_backward(grad)
        ctx.dtype = z.dtype
        return value

    @staticmethod
    def backward(ctx, g: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * g).to(ctx.dtype), None


def kd_scale(
    ce: Tensor, kd: Tensor, mode: str = "dynamic", kd_weight: float = 1.0, bounds: tuple[float, float] = SCALE_BOUNDS
) -> Tensor:
    """The factor on kd in the total, without gradient. dynamic (Eq. 7): sg(|ce| / |kd|) clamped to
    `bounds`, from magnitudes so that a negative kd (H-KL, GOLD can be) never turns its gradient into
    ascent; 0 when kd = 0 (no valid chunk). fixed: kd_weight. E.g. ce 2, kd −0.5 -> 4."""
    if mode == "fixed":
        return torch.as_tensor(float(kd_weight))
    if mode != "dynamic":
        raise ValueError(f"unknown loss combination {mode!r}; choose 'dynamic' or 'fixed'")
    low, high = bounds
    if not 0 < low <= high:
        raise ValueError(f"scale bounds must satisfy 0 < low <= high, got {bounds}")
    kd_size, ce_size = kd.detach().abs(), ce.detach().abs()
    ratio = ce_size / torch.where(kd_size > 0, kd_size, 1.0)
    return torch.where(kd_size > 0, ratio.clamp(low, high), 0.0)


def combine(
    ce: Tensor,
    kd: Tensor,
    mode: str = "dynamic",
    kd_weight: float = 1.0,
    ce_weight: float = 0.1,
    bounds: tuple[float, float] = SCALE_BOUNDS,
    parts: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Total loss. dynamic (Eq. 7): kd_scale(ce, kd)·kd + ce, so KD's gradient is rescaled to CE's
    magnitude and keeps its direction (weights unused; kd = 0 gives ce). fixed: kd_weight·kd +
    ce_weight·ce (reference defaults 1.0 / 0.1). `parts`: the (ce, kd) to weigh in place of ce and kd,
    the scale still taken from ce and kd (a micro-batch's means, its parts normalised by the counts of
    the whole accumulated step: distill/hf.py)."""
    scale = kd_scale(ce, kd, mode, kd_weight, bounds)
    ce_part, kd_part = (ce, kd) if parts is None else parts
    return scale * kd_part + (ce_weight * ce_part if mode == "fixed" else ce_part)
