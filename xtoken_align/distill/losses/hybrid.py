"""The hybrid losses (method.md §4, Eq. 3-4): H-KL, GOLD and ULD, which differ only in the common set C.

    L_k = Σ_{(s,t)∈C} q_T[t] (log q_T[t] − log q_S[s]) + ‖top_L(q_S|U_S) − top_L(q_T|U_T)‖₁,

U = the ids outside C, top_L = descending top-L values, L = min(tail, |U_S|, |U_T|). H-KL takes C from
W (threshold 0.6), GOLD from raw string matches, ULD has C = ∅ (L = min(tail, V_S, V_T)). The value can
be negative: the first term is a KL between unnormalised masses, Σ a log(a/s) ≥ A log(A/S) (A, S the
teacher's and student's mass on C), which is < 0 when the student puts more mass on C than the teacher;
untruncated, the L1 term would pay it back (A log(A/S) + S − A ≥ 0), but its sorted tails are cut to L
values, so the mass beyond them is never charged. It measures a mismatch to drive down, not a
divergence; `combine` therefore scales by magnitudes. Left out: the student side's fused autograd
Function (hybrid_student.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import chunk_distribution, compute_dtype, log_scale
from xtoken_align.distill.losses.base import ChunkLoss, LossSetup
from xtoken_align.distill.losses.hybrid_student import hybrid_student
from xtoken_align.distill.losses.registry import register_loss
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.projection import HKL_THRESHOLD
from xtoken_align.vocab import Vocab


class HybridLoss(ChunkLoss):
    """KL through the student softmax on a 1:1 common set C plus sorted L1 on the rest (Eq. 3-4).
    common_student / common_teacher: (C,) paired ids. The teacher side runs without gradient; the
    student side is one fused autograd Function (hybrid_student.py)."""

    def __init__(
        self, common_student: Tensor, common_teacher: Tensor, tail: int = 8192, aggregation: str = "mean", **kw
    ) -> None:
        super().__init__(aggregation, **kw)
        if common_student.shape != common_teacher.shape:
            raise ValueError("common_student and common_teacher must pair up one to one")
        self.register_buffer("common_student", common_student.long(), persistent=False)
        self.register_buffer("common_teacher", common_teacher.long(), persistent=False)
        self.tail = int(tail)

    def kl_ids(self, context, size: int, device: torch.device) -> Tensor | None:
        """C's teacher ids: the common-set term's Σ a log a, a = q_T on C, not renormalised (none for
        ULD, whose C is empty)."""
        if not len(self.common_teacher):
            return None
        return torch.zeros(size, dtype=torch.bool, device=device).index_fill_(0, self.common_teacher.to(device), True)

    def chunk_losses(self, z_s, z_t, layout, labels, teacher_labels, context):
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


@register_loss
class HKLLoss(HybridLoss):
    """H-KL: the hybrid loss with C = W's common set (top weight ≥ threshold, collisions per §4)."""

    name = "h_kl"
    needs_projection = True

    def __init__(self, w: ProjectionW, threshold: float = HKL_THRESHOLD, tail: int = 8192, **kw) -> None:
        super().__init__(*w.common_set(threshold), tail=tail, student_size=w.shape[0], teacher_size=w.shape[1], **kw)

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> HKLLoss:
        w = ProjectionW.from_projection(setup.projection)
        options = setup.options
        return cls(w, threshold=options.hkl_threshold, tail=options.tail, **cls.chunk_options(setup))


@register_loss
class GoldLoss(HybridLoss):
    """GOLD: the hybrid loss with C = raw exact string matches of the two vocabularies."""

    name = "gold"

    def __init__(self, student_vocab: Vocab, teacher_vocab: Vocab, tail: int = 8192, **kw) -> None:
        common = ProjectionW.string_common_set(student_vocab, teacher_vocab)
        sizes = {"student_size": len(student_vocab.pieces), "teacher_size": len(teacher_vocab.pieces)}
        super().__init__(*common, tail=tail, **sizes, **kw)

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> GoldLoss:
        return cls(setup.student_vocab, setup.teacher_vocab, tail=setup.options.tail, **cls.chunk_options(setup))


@register_loss
class ULDLoss(HybridLoss):
    """ULD: sorted L1 between whole chunk distributions, capped at `tail` values (the hybrid with C = ∅).
    Pass `student_size` / `teacher_size` (the tokenizers' sizes) when the output layers are padded."""

    name = "uld"

    def __init__(self, tail: int = 8192, **kw) -> None:
        nothing = torch.zeros(0, dtype=torch.long)
        super().__init__(nothing, nothing, tail=tail, **kw)

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> ULDLoss:
        sizes = {"student_size": setup.student_vocab.size, "teacher_size": setup.teacher_vocab.size}
        return cls(tail=setup.options.tail, **sizes, **cls.chunk_options(setup))
