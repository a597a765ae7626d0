"""Distillation losses (method.md §4) as nn.Modules, plus cross-entropy and the Eq. 7 combination.

Every chunk loss takes (docs/distill-interfaces.md)
    student_logits (B, T_s, V_S), teacher_logits (B, T_t, V_T), student_chunk (B, T_s),
    teacher_chunk (B, T_t), labels (B, T_s)[, teacher_labels (B, T_t), needed only by `chain`]
and returns a scalar: the mean over valid chunks (or the sum, `reduction="sum"`, for a caller that
normalises across ranks) of the per-chunk loss, times τ². Chunk distributions q_S, q_T come from
`aggregate.py` at temperature τ. Math is float32 (float64 inputs stay float64). Teacher logits are
constants (detached). With no valid chunk the result is 0 with the student's graph intact.

- P-KL   L_k = Σ_{t∈top-k} p_T[t] (log p_T[t] − log p̃[t]),  p̃ = Wᵀ q_S (not renormalised),
         top-k = the micro-batch's k teacher ids with the highest teacher logit over valid positions,
         p_T = teacher softmax renormalised within them.
- hybrid L_k = Σ_{(s,t)∈C} q_T[t] (log q_T[t] − log q_S[s]) + ‖top_L(q_S|U_S) − top_L(q_T|U_T)‖₁,
         U = the ids outside the common set C, top_L = descending top-L values, L = min(tail, |U_S|, |U_T|).
         H-KL takes C from W (threshold 0.6), GOLD from raw string matches.
- ULD    L_k = ‖top_L(q_S) − top_L(q_T)‖₁, L = min(tail, V_S, V_T).
- KD     same tokenizer: forward KL per position where labels ≠ -100, mean over those positions.

Logs are taken as log(max(x, tiny)) (aggregate.safe_log), so a teacher id that W cannot reach adds a
large constant to P-KL but never inf or NaN. Left out: alignment, several teachers, the training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xtoken_align.distill.aggregate import (
    IGNORE_INDEX,
    ChunkLayout,
    check_aggregation,
    chunk_distribution,
    chunk_sum,
    compute_dtype,
    log_scale,
    safe_log,
    softmax,
)
from xtoken_align.distill.hybrid import hybrid_student
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.score import HKL_THRESHOLD
from xtoken_align.vocab import Vocab

LOSSES = ("p_kl", "h_kl", "gold", "uld", "kd")


def _zero(logits: Tensor) -> Tensor:
    """0 that still backpropagates (zeros) into the student."""
    return logits.sum().to(compute_dtype(logits)) * 0.0


class ChunkLoss(nn.Module):
    """Shared frame: flatten, build the chunk layout, reduce per-chunk losses, scale by τ²."""

    def __init__(self, aggregation: str = "mean", tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"temperature must be positive, got {tau}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.aggregation, self.tau, self.reduction = check_aggregation(aggregation), float(tau), reduction

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        student_chunk: Tensor,
        teacher_chunk: Tensor,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        z_s = student_logits.reshape(-1, student_logits.shape[-1])  # (N_s, V_S)
        z_t = teacher_logits.detach().reshape(-1, teacher_logits.shape[-1])  # (N_t, V_T)
        layout = ChunkLayout.build(student_chunk.reshape(-1), teacher_chunk.reshape(-1))
        if layout.n_chunks == 0:
            return _zero(student_logits)
        flat = [None if x is None else x.reshape(-1) for x in (labels, teacher_labels)]
        with torch.autocast(z_s.device.type, enabled=False):  # float32 math even inside a bf16 region
            total = self.chunk_losses(z_s, z_t, layout, *flat).sum() * self.tau**2
        return total / layout.n_chunks if self.reduction == "mean" else total

    def chunk_losses(
        self, z_s: Tensor, z_t: Tensor, layout: ChunkLayout, labels: Tensor | None, teacher_labels: Tensor | None
    ) -> Tensor:
        """(K,) loss of each valid chunk."""
        raise NotImplementedError


class PKLLoss(ChunkLoss):
    """P-KL (Eq. 2): KL(p_T ‖ Wᵀ q_S) over the micro-batch's top-k teacher ids. W may be learnable.
    `chain` on the teacher side equals `first`: renormalising within the top-k cancels the chain factor."""

    def __init__(self, w: ProjectionW, topk: int = 8192, aggregation: str = "mean", tau: float = 1.0, **kw) -> None:
        super().__init__(aggregation, tau, **kw)
        self.w, self.topk = w, int(topk)

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels):
        (v_s, v_t), student, teacher = self.w.shape, layout.student, layout.teacher
        if z_s.shape[-1] < v_s or z_t.shape[-1] < v_t:
            raise ValueError(f"logits of widths {z_s.shape[-1]}, {z_t.shape[-1]} are narrower than W ({v_s}x{v_t})")
        z_t = z_t[:, :v_t]  # teacher ids beyond W (model padding) are left out, as in the reference code
        columns = None
        if self.topk < v_t:  # (k,) sorted teacher ids: highest logit at any valid position of the micro-batch
            columns = torch.topk(column_max(z_t, teacher.valid), self.topk, sorted=False).indices.sort().values
        k, agg, tau, dtype = layout.n_chunks, self.aggregation, self.tau, compute_dtype(z_s)
        t_small = z_t if columns is None else z_t.index_select(1, columns)  # (N_t, k)
        p_t = chunk_sum(softmax(t_small, tau, dtype), teacher.targets(agg), k)
        p_t = p_t / p_t.sum(-1, keepdim=True)  # renormalised within the top-k (cancels chain's factor)
        projected = self.w.project_logits(z_s.to(dtype) if tau == 1.0 else z_s.to(dtype) / tau, columns)  # (N_s, k)
        q = chunk_sum(projected, student.targets(agg), k) * log_scale(z_s, student, agg, tau, labels).exp()[:, None]
        return (p_t * (safe_log(p_t) - safe_log(q))).sum(-1)


def column_max(z: Tensor, valid: Tensor) -> Tensor:
    """(N, V) -> (V,) max over the valid rows, without copying them out."""
    if bool(valid.all()):
        return z.amax(0)
    out = torch.full((2, z.shape[-1]), -torch.inf, dtype=z.dtype, device=z.device)
    return out.scatter_reduce_(0, (~valid).long().unsqueeze(1).expand_as(z), z, "amax")[0]


class HybridLoss(ChunkLoss):
    """KL through the student softmax on a 1:1 common set C plus sorted L1 on the rest (Eq. 3-4).
    common_student / common_teacher: (C,) paired ids. The teacher side runs without gradient; the
    student side is one fused autograd Function (hybrid.py)."""

    def __init__(
        self, common_student: Tensor, common_teacher: Tensor, tail: int = 8192, aggregation: str = "mean", **kw
    ) -> None:
        super().__init__(aggregation, **kw)
        if common_student.shape != common_teacher.shape:
            raise ValueError("common_student and common_teacher must pair up one to one")
        self.register_buffer("common_student", common_student.long(), persistent=False)
        self.register_buffer("common_teacher", common_teacher.long(), persistent=False)
        self.tail = int(tail)

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels):
        agg, tau, dtype = self.aggregation, self.tau, compute_dtype(z_s)
        common_s, common_t = self.common_student, self.common_teacher
        q_t = chunk_distribution(z_t, layout.teacher, agg, tau, teacher_labels)  # (K, V_T)
        if len(common_s):  # one gather; a = teacher mass on C (K, C) and the uncommon rest are views of it
            tail_s = _complement(common_s, z_s.shape[-1])
            q_t = q_t.index_select(1, torch.cat([common_t, _complement(common_t, z_t.shape[-1])]))
            a, teacher_tail = q_t[:, : len(common_t)], q_t[:, len(common_t) :]
        else:  # ULD: the tails are the whole distributions
            tail_s, a, teacher_tail = None, q_t[:, :0], q_t
        length = min(self.tail, z_s.shape[-1] if tail_s is None else len(tail_s), teacher_tail.shape[-1])
        b = torch.topk(teacher_tail, length, dim=-1).values  # (K, L) descending
        scale = log_scale(z_s, layout.student, agg, tau, labels)
        return hybrid_student(z_s.to(dtype), scale, layout.student.targets(agg), common_s, tail_s, a, b, tau)


def _complement(ids: Tensor, size: int) -> Tensor:
    keep = torch.ones(size, dtype=torch.bool, device=ids.device)
    keep[ids] = False
    return torch.nonzero(keep).squeeze(1)


class HKLLoss(HybridLoss):
    """H-KL: the hybrid loss with C = W's common set (top weight ≥ threshold, collisions per §4)."""

    def __init__(self, w: ProjectionW, threshold: float = HKL_THRESHOLD, tail: int = 8192, **kw) -> None:
        super().__init__(*w.common_set(threshold), tail=tail, **kw)


class GoldLoss(HybridLoss):
    """GOLD: the hybrid loss with C = raw exact string matches of the two vocabularies."""

    def __init__(self, student_vocab: Vocab, teacher_vocab: Vocab, tail: int = 8192, **kw) -> None:
        super().__init__(*ProjectionW.string_common_set(student_vocab, teacher_vocab), tail=tail, **kw)


class ULDLoss(HybridLoss):
    """ULD: sorted L1 between whole chunk distributions, capped at `tail` values (the hybrid with C = ∅)."""

    def __init__(self, tail: int = 8192, **kw) -> None:
        nothing = torch.zeros(0, dtype=torch.long)
        super().__init__(nothing, nothing, tail=tail, **kw)


class KDLoss(nn.Module):
    """Same-tokenizer KD: Σ_v p_T[v](log p_T[v] − log p_S[v]) per position, mean over positions whose
    label is not -100 (all positions when labels is None), times τ². Chunk ids are ignored."""

    def __init__(self, tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.tau, self.reduction = float(tau), reduction

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        student_chunk: Tensor | None = None,
        teacher_chunk: Tensor | None = None,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"kd needs the same positions and vocabulary, got {student_logits.shape} and "
                             f"{teacher_logits.shape}")  # fmt: skip
        z_s = student_logits.reshape(-1, student_logits.shape[-1])
        z_t = teacher_logits.detach().reshape(-1, teacher_logits.shape[-1])
        if labels is not None:
            keep = labels.reshape(-1) != IGNORE_INDEX
            if not bool(keep.any()):
                return _zero(student_logits)
            if not bool(keep.all()):
                z_s, z_t = z_s[keep], z_t[keep]
        dtype = compute_dtype(z_s)
        z_s, z_t = z_s.to(dtype), z_t.to(dtype)
        if self.tau != 1.0:
            z_s, z_t = z_s / self.tau, z_t / self.tau
        log_p_s, log_p_t = torch.log_softmax(z_s, -1), torch.log_softmax(z_t, -1)
        total = (log_p_t.exp() * (log_p_t - log_p_s)).sum() * self.tau**2
        return total / z_s.shape[0] if self.reduction == "mean" else total


def cross_entropy(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token CE in float32 over labels ≠ -100; 0 (graph intact) when every label is -100."""
    z = student_logits.reshape(-1, student_logits.shape[-1])
    labels = labels.reshape(-1)
    if not bool((labels != IGNORE_INDEX).any()):
        return _zero(student_logits)
    return nn.functional.cross_entropy(z.to(compute_dtype(z)), labels, ignore_index=IGNORE_INDEX)


def combine(ce: Tensor, kd: Tensor, mode: str = "dynamic", kd_weight: float = 1.0, ce_weight: float = 0.1) -> Tensor:
    """Total loss. dynamic (Eq. 7): sg(ce / kd)·kd + ce, so KD's gradient is rescaled to CE's magnitude
    (weights unused; kd = 0 gives ce). fixed: kd_weight·kd + ce_weight·ce (reference defaults 1.0 / 0.1)."""
    if mode == "fixed":
        return kd_weight * kd + ce_weight * ce
    if mode != "dynamic":
        raise ValueError(f"unknown loss combination {mode!r}; choose 'dynamic' or 'fixed'")
    kd_value = kd.detach()
    scale = torch.where(kd_value != 0, ce.detach() / torch.where(kd_value != 0, kd_value, 1.0), 0.0)
    return scale * kd + ce


def make_loss(name: str, **kwargs) -> nn.Module:
    """The loss module called `name`: p_kl (w=, topk=), h_kl (w=, threshold=, tail=), gold (student_vocab=,
    teacher_vocab=, tail=), uld (tail=), kd; aggregation=, tau=, reduction= for all but kd (tau=, reduction=)."""
    losses = {"p_kl": PKLLoss, "h_kl": HKLLoss, "gold": GoldLoss, "uld": ULDLoss, "kd": KDLoss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return losses[name](**kwargs)
