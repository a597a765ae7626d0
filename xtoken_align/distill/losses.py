"""Distillation losses (method.md §4) as nn.Modules, plus cross-entropy and the Eq. 7 combination.

Every chunk loss takes (docs/distill-interfaces.md)
    student_logits (B, T_s, V_S'), teacher_logits (B, T_t, V_T'), student_chunk (B, T_s),
    teacher_chunk (B, T_t), labels (B, T_s)[, teacher_labels (B, T_t), needed only by `chain`]
and returns a scalar: the mean over valid chunks (or the sum, `reduction="sum"`, for a caller that
normalises across ranks) of the per-chunk loss, times τ². Chunk distributions q_S, q_T come from
`aggregate.py` at temperature τ. Math is float32 (float64 inputs stay float64). Teacher logits are
constants (detached). With no valid chunk the result is 0 with the student's graph intact.

Output widths V_S' ≥ V_S, V_T' ≥ V_T may be padded (Qwen3's lm_head has 151,936 rows for 151,669
tokens): every loss uses exactly the first V_S student and V_T teacher columns, the ids the tokenizers
define (W's shape for P-KL/H-KL, the vocabularies' sizes for GOLD, `student_size`/`teacher_size` for
ULD, `size` for KD), and padded columns take no part in any softmax and get zero gradient.

- P-KL   L_k = Σ_{t∈S} p_T[t] (log p_T[t] − log p̃[t]),  p̃ = Wᵀ q_S,
         S = the teacher ids W reaches (a non-empty column), cut to the micro-batch's `topk` ids with
         the highest teacher logit over valid positions; p_T = teacher softmax renormalised within S.
         `student="renormalise"` (default) renormalises p̃ within S too, as the reference code does;
         `"drop"` leaves the projected mass outside S out unnormalised. On all of W's columns the two
         are the same loss (Σ_t p̃[t] = 1); bench/pkl_topk.py measures which top-k is closer to it.
         Teacher mass on ids W cannot reach is left out (no student logit can change that term) and
         reported as `stats["unreachable"]`, so the value does not depend on a log floor or dtype.
- hybrid L_k = Σ_{(s,t)∈C} q_T[t] (log q_T[t] − log q_S[s]) + ‖top_L(q_S|U_S) − top_L(q_T|U_T)‖₁,
         U = the ids outside the common set C, top_L = descending top-L values, L = min(tail, |U_S|, |U_T|).
         H-KL takes C from W (threshold 0.6), GOLD from raw string matches. The value can be negative:
         the first term is a KL between unnormalised masses, Σ a log(a/s) ≥ A log(A/S) (A, S the
         teacher's and student's mass on C), which is < 0 when the student puts more mass on C than the
         teacher; untruncated, the L1 term would pay it back (A log(A/S) + S − A ≥ 0), but its sorted
         tails are cut to L values, so the mass beyond them is never charged. It measures a mismatch
         to drive down, not a divergence; `combine` therefore scales by magnitudes.
- ULD    L_k = ‖top_L(q_S) − top_L(q_T)‖₁, L = min(tail, V_S, V_T).
- KD     same tokenizer: forward KL per position where labels ≠ -100, mean over those positions.

Other logs are log(max(x, LOG_FLOOR)) with one floor for every dtype (aggregate.safe_log). Left out:
alignment, several teachers, the training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xtoken_align.distill.aggregate import (
    IGNORE_INDEX,
    LOG_FLOOR,
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
from xtoken_align.projection import HKL_THRESHOLD
from xtoken_align.vocab import Vocab

LOSSES = ("p_kl", "h_kl", "gold", "uld", "kd")


def _zero(logits: Tensor) -> Tensor:
    """0 that still backpropagates (zeros) into the student."""
    return logits.sum().to(compute_dtype(logits)) * 0.0


def real_columns(logits: Tensor, size: int | None, side: str) -> Tensor:
    """(N, V') -> (N, V) view of the first `size` columns (all when None): the tokenizer's ids, without
    the model's padding. `real_columns(z, 151_669, "teacher")` on Qwen3's (N, 151_936) logits."""
    if size is None:
        return logits
    if logits.shape[-1] < size:
        raise ValueError(f"{side} logits have {logits.shape[-1]} columns, fewer than its {size:,} tokens")
    return logits if logits.shape[-1] == size else logits[..., :size]


class ChunkLoss(nn.Module):
    """Shared frame: flatten, cut the padded columns, build the chunk layout, reduce per-chunk losses,
    scale by τ². `stats` holds detached diagnostics of the last call (P-KL: "unreachable")."""

    def __init__(
        self,
        aggregation: str = "mean",
        tau: float = 1.0,
        reduction: str = "mean",
        student_size: int | None = None,
        teacher_size: int | None = None,
    ) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"temperature must be positive, got {tau}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.aggregation, self.tau, self.reduction = check_aggregation(aggregation), float(tau), reduction
        self.student_size, self.teacher_size = student_size, teacher_size
        self.stats: dict[str, Tensor] = {}

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        student_chunk: Tensor,
        teacher_chunk: Tensor,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        z_s = student_logits.reshape(-1, student_logits.shape[-1])  # (N_s, V_S'), then (N_s, V_S)
        z_t = teacher_logits.detach().reshape(-1, teacher_logits.shape[-1])  # (N_t, V_T'), then (N_t, V_T)
        z_s, z_t = real_columns(z_s, self.student_size, "student"), real_columns(z_t, self.teacher_size, "teacher")
        self.stats = {}
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


STUDENT_TREATMENTS = ("renormalise", "drop")


class PKLLoss(ChunkLoss):
    """P-KL (Eq. 2): KL(p_T ‖ Wᵀ q_S) over the teacher ids W reaches, cut to the micro-batch's top-k.
    W may be learnable. `chain` on the teacher side equals `first`: renormalising cancels the chain
    factor (on the student side too, with `student="renormalise"`)."""

    def __init__(
        self,
        w: ProjectionW,
        topk: int = 8192,
        aggregation: str = "mean",
        tau: float = 1.0,
        student: str = "renormalise",
        **kw,
    ) -> None:
        if student not in STUDENT_TREATMENTS:
            raise ValueError(f"student must be one of {', '.join(STUDENT_TREATMENTS)}, got {student!r}")
        super().__init__(aggregation, tau, student_size=w.shape[0], teacher_size=w.shape[1], **kw)
        self.w, self.topk, self.student = w, int(topk), student

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels):
        student, teacher, reachable = layout.student, layout.teacher, self.w.reachable
        k, agg, tau, dtype = layout.n_chunks, self.aggregation, self.tau, compute_dtype(z_s)
        columns = self.columns(z_t, teacher.valid)  # (k,) sorted teacher ids, or None for all of them
        self.stats["unreachable"] = unreachable_mass(z_t, ~reachable, teacher.targets(agg), teacher.count, agg, tau)
        t_small = z_t if columns is None else z_t.index_select(1, columns)  # (N_t, k)
        p_t = chunk_sum(softmax(t_small, tau, dtype), teacher.targets(agg), k)
        p_t = p_t / p_t.sum(-1, keepdim=True)  # renormalised within the columns (cancels chain's factor)
        projected = self.w.project_logits(z_s.to(dtype) if tau == 1.0 else z_s.to(dtype) / tau, columns)  # (N_s, k)
        q = chunk_sum(projected, student.targets(agg), k)
        if self.student == "renormalise":
            q = q / q.sum(-1, keepdim=True).clamp_min(LOG_FLOOR)
        else:
            q = q * log_scale(z_s, student, agg, tau, labels).exp()[:, None]
        return (p_t * (safe_log(p_t) - safe_log(q))).sum(-1)

    def columns(self, z_t: Tensor, valid: Tensor) -> Tensor | None:
        """(k,) sorted teacher ids the loss compares: those W reaches, the `topk` with the highest teacher
        logit at any valid position of the micro-batch when there are more; None = every id."""
        reachable = self.w.reachable
        n_reachable = int(reachable.sum())
        if self.topk >= n_reachable:
            return None if n_reachable == len(reachable) else torch.nonzero(reachable).squeeze(1)
        importance = column_max(z_t, valid).masked_fill(~reachable, -torch.inf)
        return torch.topk(importance, self.topk, sorted=False).indices.sort().values


@torch.no_grad()
def unreachable_mass(z_t: Tensor, unreachable: Tensor, target: Tensor, count: Tensor, agg: str, tau: float) -> Tensor:
    """Mean over chunks of the teacher's chunk probability on ids W cannot reach (0 when W reaches all).
    z_t (N_t, V_T), unreachable (V_T,) bool, target (N_t,) chunk per row, count (K,) positions per chunk."""
    if not bool(unreachable.any()):
        return torch.zeros((), dtype=compute_dtype(z_t), device=z_t.device)
    z = z_t.to(compute_dtype(z_t)) / tau
    share = (torch.logsumexp(z[:, unreachable], -1) - torch.logsumexp(z, -1)).exp()  # (N_t,)
    per_chunk = chunk_sum(share[:, None], target, len(count))[:, 0]  # (K,)
    return (per_chunk / count if agg == "mean" else per_chunk).mean()  # chain's factor cancels in a share


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
        super().__init__(*w.common_set(threshold), tail=tail, student_size=w.shape[0], teacher_size=w.shape[1], **kw)


class GoldLoss(HybridLoss):
    """GOLD: the hybrid loss with C = raw exact string matches of the two vocabularies."""

    def __init__(self, student_vocab: Vocab, teacher_vocab: Vocab, tail: int = 8192, **kw) -> None:
        common = ProjectionW.string_common_set(student_vocab, teacher_vocab)
        sizes = {"student_size": len(student_vocab.pieces), "teacher_size": len(teacher_vocab.pieces)}
        super().__init__(*common, tail=tail, **sizes, **kw)


class ULDLoss(HybridLoss):
    """ULD: sorted L1 between whole chunk distributions, capped at `tail` values (the hybrid with C = ∅).
    Pass `student_size` / `teacher_size` (the tokenizers' sizes) when the output layers are padded."""

    def __init__(self, tail: int = 8192, **kw) -> None:
        nothing = torch.zeros(0, dtype=torch.long)
        super().__init__(nothing, nothing, tail=tail, **kw)


class KDLoss(nn.Module):
    """Same-tokenizer KD: Σ_v p_T[v](log p_T[v] − log p_S[v]) per position, mean over positions whose
    label is not -100 (all positions when labels is None), times τ². Chunk ids are ignored. With
    `size` (the tokenizer's), both sides use their first `size` columns: the two models may pad their
    output layers differently."""

    def __init__(self, tau: float = 1.0, reduction: str = "mean", size: int | None = None) -> None:
        super().__init__()
        self.tau, self.reduction, self.size = float(tau), reduction, size
        self.stats: dict[str, Tensor] = {}

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        student_chunk: Tensor | None = None,
        teacher_chunk: Tensor | None = None,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        z_s = real_columns(student_logits.reshape(-1, student_logits.shape[-1]), self.size, "student")
        z_t = real_columns(teacher_logits.detach().reshape(-1, teacher_logits.shape[-1]), self.size, "teacher")
        if z_s.shape != z_t.shape:
            raise ValueError(f"kd needs the same positions and vocabulary, got {student_logits.shape} and "
                             f"{teacher_logits.shape}")  # fmt: skip
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


SCALE_BOUNDS = (0.01, 100.0)  # the dynamic KD scale's range (TRL's X-Token port clamps to the same)


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
) -> Tensor:
    """Total loss. dynamic (Eq. 7): kd_scale(ce, kd)·kd + ce, so KD's gradient is rescaled to CE's
    magnitude and keeps its direction (weights unused; kd = 0 gives ce). fixed: kd_weight·kd +
    ce_weight·ce (reference defaults 1.0 / 0.1)."""
    scale = kd_scale(ce, kd, mode, kd_weight, bounds)
    return scale * kd + (ce_weight * ce if mode == "fixed" else ce)


def make_loss(name: str, **kwargs) -> nn.Module:
    """The loss module called `name`: p_kl (w=, topk=, student=), h_kl (w=, threshold=, tail=), gold
    (student_vocab=, teacher_vocab=, tail=), uld (tail=, student_size=, teacher_size=), kd (size=);
    aggregation=, tau=, reduction= for all but kd (tau=, reduction=)."""
    losses = {"p_kl": PKLLoss, "h_kl": HKLLoss, "gold": GoldLoss, "uld": ULDLoss, "kd": KDLoss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return losses[name](**kwargs)
