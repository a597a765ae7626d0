"""`loss.semantics: reference`: the losses as NVIDIA NeMo-RL's X-Token code computes them
(`nemo_rl/algorithms/loss/loss_functions.py`, `_compute_p_kl` and `_compute_gold`), for users who
compare runs with that stack. docs/method.md §9 sets them beside this project's.

P-KL differs from `PKLLoss` (projected.py) in four places, each a name in `DIFFERENCES`:

- `log_mean`: a `mean` chunk's teacher is exp(mean_i log softmax_S(z_i)), its positions'
  log-softmax within the columns S averaged in log space (a geometric mean, not renormalised), not
  the arithmetic mean (1/n) Σ_i softmax_S(z_i) of their probabilities;
- `renormalise`: the projected student is renormalised within S whatever `student=` says (this
  project's default, `topk_student: renormalise`, already does);
- `epsilon`: the student side is q / (Σ_S q + ε) and log(q + ε), ε = 1e-10, not clamped at LOG_FLOOR;
- `columns`: S = the `topk` teacher ids with the highest logit at *any* row of the teacher's logits
  (padding and positions in no chunk included), among *all* teacher ids, not only those W reaches.

    L_k = Σ_{t∈S} p_T[t] (log p_T[t] − log q_k[t]),  q_k = mean_i Wᵀ softmax(z_s,i)[S] renormalised.

H-KL and GOLD differ in one place, the same as `log_mean`: with `mean`, both chunk distributions are
exp(mean_i log softmax(z_i)) over the whole vocabulary, so the common-set KL takes the log-space means
directly and the sorted tails compare their exponentials (plain autograd, not hybrid_student.py's fused
backward: several (n, V) temporaries per group of n positions). `first` is the same in both semantics;
`chain` (the reference has none) keeps this project's form. Teacher rows that are −inf on every column
(a cached teacher stored nothing there) count 0, where the reference would give NaN. Left out: ULD and
KD (the reference has no ULD; its same-tokenizer KD is this project's), the reference's ε = 1e-10 in
its chunk-size divisor (n + 1e-10: below 1e-9 of a log-probability) and reverse KL.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import LOG_FLOOR, chunk_sum, compute_dtype, log_scale, safe_log, softmax
from xtoken_align.distill.losses.base import real_columns
from xtoken_align.distill.losses.chunked import OutputHead, source_rows
from xtoken_align.distill.losses.hybrid import GoldLoss, HKLLoss, HybridLoss, _complement
from xtoken_align.distill.losses.projected import PKLLoss
from xtoken_align.distill.losses.registry import register_reference
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher
from xtoken_align.distill.sparse_w import ProjectionW

DIFFERENCES = ("log_mean", "renormalise", "epsilon", "columns")
EPSILON = 1e-10  # the reference's `eps` in P-KL's renormalisation and log


@register_reference
class ReferencePKLLoss(PKLLoss):
    """P-KL with the reference's semantics in each of `differences` (all four by default; none gives
    back `PKLLoss` exactly)."""

    def __init__(self, w: ProjectionW, *, differences: tuple[str, ...] = DIFFERENCES, **kw) -> None:
        unknown = sorted(set(differences) - set(DIFFERENCES))
        if unknown:
            raise ValueError(f"unknown reference differences {unknown}; choose from {', '.join(DIFFERENCES)}")
        super().__init__(w, **kw)
        self.differences = frozenset(differences)
        self._teacher: Tensor | OutputHead | SparseTeacher | None = None  # during forward, for the `columns` pick

    def forward(self, student, teacher, *args, **kwargs) -> Tensor:
        self._teacher = teacher
        try:
            return super().forward(student, teacher, *args, **kwargs)
        finally:
            self._teacher = None

    def batch_context(self, teacher_column_max: Callable[[], Tensor]) -> Tensor | None:
        """(k,) sorted teacher ids: with `columns`, the `topk` with the highest logit over every teacher
        row, any id (reachable or not); None when `topk` covers the vocabulary."""
        if "columns" not in self.differences:
            return super().batch_context(teacher_column_max)
        if self.topk >= self.w.shape[1]:
            return None
        importance = every_row_max(self._teacher, self.w.shape[1])
        known = int(torch.isfinite(importance).sum())  # a cached teacher: among the ids it stored
        return torch.topk(importance, min(self.topk, known), sorted=False).indices.sort().values

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels, context):
        student, teacher, on = layout.student, layout.teacher, self.differences
        k, agg, tau, dtype = layout.n_chunks, self.aggregation, self.tau, compute_dtype(z_s)
        if "log_mean" in on and agg == "mean":  # (N_t, k) log-softmax within the columns, mean in log space
            log_p = torch.log_softmax(z_t.to(dtype) if tau == 1.0 else z_t.to(dtype) / tau, dim=-1)
            log_p = log_p.nan_to_num(nan=-torch.inf, neginf=-torch.inf)  # a row with nothing stored
            log_t = chunk_sum(log_p, teacher.target, k) / teacher.count.to(dtype)[:, None]
            p_t = log_t.exp()
        else:  # this project's: the chunk's probabilities, renormalised within the columns
            p_t = chunk_sum(softmax(z_t, tau, dtype).nan_to_num_(0.0), teacher.targets(agg), k)
            p_t = p_t / p_t.sum(-1, keepdim=True).clamp_min(LOG_FLOOR)
            log_t = safe_log(p_t)
        projected = self.w.project_logits(z_s.to(dtype) if tau == 1.0 else z_s.to(dtype) / tau, context)  # (N_s, k)
        q = chunk_sum(projected, student.targets(agg), k) * log_scale(z_s, student, agg, tau, labels).exp()[:, None]
        if "renormalise" in on or self.student == "renormalise":
            total = q.sum(-1, keepdim=True)
            q = q / (total + EPSILON) if "epsilon" in on else q / total.clamp_min(LOG_FLOOR)
        log_q = torch.log(q + EPSILON) if "epsilon" in on else safe_log(q)
        return torch.where(p_t > 0, p_t * (log_t - log_q), 0.0).sum(-1)


@torch.no_grad()
def every_row_max(teacher: Tensor | OutputHead | SparseTeacher, size: int) -> Tensor:
    """(V_T,) the max teacher logit over every row of `teacher` (logits (..., V'), an `OutputHead`,
    computed `chunk_positions` rows at a time, or a cache's rows), on its first `size` columns."""
    if isinstance(teacher, SparseTeacher):
        return real_columns(teacher, size, "teacher").column_max()
    if not isinstance(teacher, OutputHead):
        return real_columns(teacher.detach().reshape(-1, teacher.shape[-1]), size, "teacher").amax(0)
    rows = torch.arange(teacher.rows.shape[0], device=teacher.rows.device).split(teacher.chunk_positions)
    return torch.stack([real_columns(source_rows(teacher, r), size, "teacher").amax(0) for r in rows]).amax(0)


class ReferenceHybrid(HybridLoss):
    """The hybrid formula on log-space chunk means (`mean`); otherwise `HybridLoss`'s."""

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels, context):
        if self.aggregation != "mean":
            return super().chunk_losses(z_s, z_t, layout, labels, teacher_labels, context)
        log_s, log_t = (log_mean(z, side, self.tau) for z, side in ((z_s, layout.student), (z_t, layout.teacher)))
        log_t = log_t.detach()  # (K, V_T), a constant
        common_s, common_t = self.common_student, self.common_teacher
        a = log_t[:, common_t].exp()
        common = torch.where(a > 0, a * (log_t[:, common_t] - log_s[:, common_s]), 0.0).sum(-1)
        tail_s, tail_t = (_complement(c, z.shape[-1]) for c, z in ((common_s, z_s), (common_t, z_t)))
        length = min(self.tail, len(tail_s), len(tail_t))
        top_s = torch.topk(log_s[:, tail_s], length, dim=-1).values.exp()  # (K, L) descending
        top_t = torch.topk(log_t[:, tail_t], length, dim=-1).values.exp()
        return common + (top_s - top_t).abs().sum(-1)


def log_mean(z: Tensor, side, tau: float) -> Tensor:
    """(N, V) logits -> (K, V) mean over each chunk's positions of log softmax(z / τ)."""
    dtype = compute_dtype(z)
    log_p = torch.log_softmax(z.to(dtype) if tau == 1.0 else z.to(dtype) / tau, dim=-1)
    log_p = log_p.nan_to_num(nan=-torch.inf, neginf=-torch.inf)
    return chunk_sum(log_p, side.target, len(side.count)) / side.count.to(dtype)[:, None]


@register_reference
class ReferenceHKLLoss(ReferenceHybrid, HKLLoss):
    """H-KL with the reference's log-space chunk means."""


@register_reference
class ReferenceGoldLoss(ReferenceHybrid, GoldLoss):
    """GOLD with the reference's log-space chunk means."""
