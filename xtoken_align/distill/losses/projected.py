"""P-KL (method.md §4, Eq. 2): the KL between the teacher and the student projected through W.

    L_k = Σ_{t∈S} p_T[t] (log p_T[t] − log p̃[t]),  p̃ = Wᵀ q_S,

S = the teacher ids W reaches (a non-empty column), cut to the micro-batch's `topk` ids with the highest
teacher logit over valid positions; p_T = teacher softmax renormalised within S. `student="renormalise"`
(default) renormalises p̃ within S too, as the reference code does; `"drop"` leaves the projected mass
outside S out unnormalised. On all of W's columns the two are the same loss (Σ_t p̃[t] = 1);
bench/pkl_topk.py measures which top-k is closer to it. Teacher mass on ids W cannot reach is left out
(no student logit can change that term) and reported as `stats["unreachable"]`, so the value does not
depend on a log floor or dtype. Left out: building W (xtoken_align.projection), its torch form (sparse_w).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import LOG_FLOOR, chunk_sum, compute_dtype, log_scale, safe_log, softmax
from xtoken_align.distill.losses.base import ChunkLoss, LossSetup
from xtoken_align.distill.losses.registry import register_loss
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher
from xtoken_align.distill.sparse_w import ProjectionW

STUDENT_TREATMENTS = ("renormalise", "drop")


@register_loss
class PKLLoss(ChunkLoss):
    """P-KL (Eq. 2): KL(p_T ‖ Wᵀ q_S) over the teacher ids W reaches, cut to the micro-batch's top-k.
    W may be learnable. `chain` on the teacher side equals `first`: renormalising cancels the chain
    factor (on the student side too, with `student="renormalise"`)."""

    name = "p_kl"
    needs_projection = True
    learns_w = True

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

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> PKLLoss:
        w = ProjectionW.from_projection(setup.projection, learnable=setup.teacher.learn_w)
        options = setup.options
        return cls(w, topk=options.topk, student=options.topk_student, **cls.chunk_options(setup))

    def batch_context(self, teacher_column_max: Callable[[], Tensor]) -> Tensor | None:
        """(k,) sorted teacher ids the loss compares: those W reaches, the `topk` with the highest teacher
        logit at any valid position of the micro-batch when there are more; None = every id. A cached
        teacher's top-k is taken among the ids it stored (the others' max is −inf: no order among them)."""
        reachable = self.w.reachable
        n_reachable = int(reachable.sum())
        if self.topk >= n_reachable:
            return None if n_reachable == len(reachable) else torch.nonzero(reachable).squeeze(1)
        importance = teacher_column_max().masked_fill(~reachable, -torch.inf)
        known = int(torch.isfinite(importance).sum())
        return torch.topk(importance, min(self.topk, known), sorted=False).indices.sort().values

    def teacher_columns(self, context: Tensor | None) -> Tensor | None:
        return context  # the formula reads the teacher only on its columns

    def kl_ids(self, context: Tensor | None, size: int, device: torch.device) -> Tensor | None:
        """Every id when it compares them all (p̂ then); none on its columns, where a cached teacher
        gives each stored id its own p (SparseTeacher.columns)."""
        return torch.ones(size, dtype=torch.bool, device=device) if context is None else None

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels, context):
        student, teacher, columns = layout.student, layout.teacher, context
        k, agg, tau, dtype = layout.n_chunks, self.aggregation, self.tau, compute_dtype(z_s)
        # a cached teacher's row may be −inf on every column (nothing stored there): it counts 0, not NaN
        p_t = chunk_sum(softmax(z_t, tau, dtype).nan_to_num_(0.0), teacher.targets(agg), k)  # z_t: (N_t, k)
        p_t = p_t / p_t.sum(-1, keepdim=True).clamp_min(LOG_FLOOR)  # renormalised within the columns
        projected = self.w.project_logits(z_s.to(dtype) if tau == 1.0 else z_s.to(dtype) / tau, columns)  # (N_s, k)
        q = chunk_sum(projected, student.targets(agg), k)
        if self.student == "renormalise":
            q = q / q.sum(-1, keepdim=True).clamp_min(LOG_FLOOR)
        else:
            q = q * log_scale(z_s, student, agg, tau, labels).exp()[:, None]
        return (p_t * (safe_log(p_t) - safe_log(q))).sum(-1)

    def chunk_stats(self, z_t, layout, teacher_labels):
        teacher, agg = layout.teacher, self.aggregation
        unreachable = ~self.w.reachable
        return {"unreachable": unreachable_mass(z_t, unreachable, teacher.targets(agg), teacher.count, agg, self.tau)}


@torch.no_grad()
def unreachable_mass(
    z_t: Tensor | SparseTeacher, unreachable: Tensor, target: Tensor, count: Tensor, agg: str, tau: float
) -> Tensor:
    """(K,) the teacher's chunk probability on ids W cannot reach (0 when W reaches all).
    z_t (N_t, V_T) or a cache's rows, unreachable (V_T,) bool, target (N_t,) chunk per row, count (K,)
    positions per chunk."""
    if not bool(unreachable.any()):
        values = z_t.logp if isinstance(z_t, SparseTeacher) else z_t
        return torch.zeros(len(count), dtype=compute_dtype(values), device=values.device)
    if isinstance(z_t, SparseTeacher):
        share = z_t.share(unreachable, tau)  # (N_t,)
    else:
        z = z_t.to(compute_dtype(z_t))
        z = z if tau == 1.0 else z / tau
        share = (torch.logsumexp(z[:, unreachable], -1) - torch.logsumexp(z, -1)).exp()  # (N_t,)
    per_chunk = chunk_sum(share[:, None], target, len(count))[:, 0]  # (K,)
    return per_chunk / count if agg == "mean" else per_chunk  # chain's factor cancels in a share
