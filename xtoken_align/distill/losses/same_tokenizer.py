"""KD for a teacher that shares the student's tokenizer: forward KL position by position,

    L = mean over positions with labels ≠ -100 of Σ_v p_T[v] (log p_T[v] − log p_S[v]), times τ².

No chunks and no W: both models predict over the same ids. Left out: teachers with other tokenizers
(projected.py, hybrid.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import IGNORE_INDEX, compute_dtype
from xtoken_align.distill.losses.base import LossSetup, TeacherLoss, real_columns, zero_loss
from xtoken_align.distill.losses.chunked import OutputHead, chunked_head_sum, head_zero, position_groups, source_rows
from xtoken_align.distill.losses.registry import register_loss
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher


@register_loss
class KDLoss(TeacherLoss):
    """Same-tokenizer KD: Σ_v p_T[v](log p_T[v] − log p_S[v]) per position, mean over positions whose
    label is not -100 (all positions when labels is None), times τ². Chunk ids are ignored. With
    `size` (the tokenizer's), both sides use their first `size` columns: the two models may pad their
    output layers differently."""

    name = "kd"
    same_tokenizer_only = True

    def __init__(self, tau: float = 1.0, reduction: str = "mean", size: int | None = None) -> None:
        super().__init__()
        self.tau, self.reduction, self.size = float(tau), reduction, size

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> KDLoss:
        return cls(tau=setup.options.tau, size=setup.student_vocab.size)  # padded output columns left out

    def forward(
        self,
        student: Tensor | OutputHead,
        teacher: Tensor | OutputHead | SparseTeacher,
        student_chunk: Tensor | None = None,
        teacher_chunk: Tensor | None = None,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        """student / teacher: logits (B, T, V') or an `OutputHead` (position chunks, chunked.py); the
        teacher may be a cache's `SparseTeacher`."""
        sparse = isinstance(teacher, SparseTeacher)  # a cache: only its stored ids carry teacher mass
        n_rows = student.rows.shape[0] if isinstance(student, OutputHead) else student[..., 0].numel()
        keep = None if labels is None else labels.reshape(-1) != IGNORE_INDEX
        if keep is not None and not bool(keep.any()):
            return head_zero(student) if isinstance(student, OutputHead) else zero_loss(student)
        if isinstance(student, OutputHead):
            device = student.rows.device
            groups = position_groups(torch.ones(n_rows, dtype=torch.bool, device=device) if keep is None else keep,
                                     student.chunk_positions)  # fmt: skip

            def group_sum(z: Tensor, number: int) -> Tensor:
                rows = groups[number].teacher
                return self.position_sum(z, teacher.select(rows) if sparse else source_rows(teacher, rows))

            total = chunked_head_sum(group_sum, student, groups)
        else:
            z_s = student.reshape(-1, student.shape[-1])
            z_t = teacher.flat() if sparse else teacher.detach().reshape(-1, teacher.shape[-1])
            if keep is not None and not bool(keep.all()):
                rows = torch.nonzero(keep).squeeze(1)
                z_s = z_s.index_select(0, rows)
                z_t = z_t.select(rows) if sparse else z_t.index_select(0, rows)
            total = self.position_sum(z_s, z_t)
        count = n_rows if keep is None else int(keep.sum())
        return total / count if self.reduction == "mean" else total

    def count(self, student_chunk: Tensor | None, teacher_chunk: Tensor | None, labels: Tensor) -> int:
        """The micro-batch's positions with a label (what the mean is over)."""
        return int((labels != IGNORE_INDEX).sum())

    def position_sum(self, z_s: Tensor, z_t: Tensor | SparseTeacher) -> Tensor:
        """τ² Σ over rows of KL(p_T ‖ p_S); z_s (n, V_S'), z_t (n, V_T') the same positions."""
        z_s, z_t = real_columns(z_s, self.size, "student"), real_columns(z_t, self.size, "teacher")
        if isinstance(z_t, SparseTeacher):
            return self._sparse_sum(z_s, z_t)
        if z_s.shape != z_t.shape:
            raise ValueError(
                f"kd needs the same positions and vocabulary, got {tuple(z_s.shape)} and {tuple(z_t.shape)}"
            )
        dtype = compute_dtype(z_s)
        z_s, z_t = z_s.to(dtype), z_t.to(dtype)
        if self.tau != 1.0:
            z_s, z_t = z_s / self.tau, z_t / self.tau
        log_p_s, log_p_t = torch.log_softmax(z_s, -1), torch.log_softmax(z_t, -1)
        p_t = log_p_t.exp()  # 0 where a cached teacher stores nothing (log p = −inf): 0·log 0 = 0
        return torch.where(p_t > 0, p_t * (log_p_t - log_p_s), 0.0).sum() * self.tau**2

    def _sparse_sum(self, z_s: Tensor, z_t: SparseTeacher) -> Tensor:
        """`position_sum` against a cache's rows: the KL's terms live on the stored ids only, and its
        teacher term is Σ p̂ log p, with the drawn ids' own log p (sparse_teacher.py: an unbiased value)."""
        if z_s.shape[-1] != z_t.size:
            raise ValueError(f"kd needs the same vocabulary, got {z_s.shape[-1]:,} and {z_t.size:,} ids")
        dtype = compute_dtype(z_s)
        z_s, logp = z_s.to(dtype), z_t.logp.to(dtype)
        if self.tau != 1.0:
            z_s, logp = z_s / self.tau, logp / self.tau
        log_p_t = logp - torch.logsumexp(logp, -1, keepdim=True)  # (n, M)
        log_p_s = torch.log_softmax(z_s, -1).gather(1, z_t.ids)  # (n, M)
        p_t = log_p_t.exp()
        total = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), 0.0).sum()
        fix = z_t.kl_correction() if self.tau == 1.0 else None  # p̂^{1/τ}: no stored log p
        return (total if fix is None else total + fix.to(total.dtype).sum()) * self.tau**2
