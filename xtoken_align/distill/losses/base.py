"""What every distillation loss shares: the traits it declares for the registry, what it is built
from (`LossSetup`), and the frame of the chunk losses (`ChunkLoss`: flatten, cut padded columns,
lay out chunks, reduce, scale by τ²).

Output widths V_S' ≥ V_S, V_T' ≥ V_T may be padded (Qwen3's lm_head has 151,936 rows for 151,669
tokens): `real_columns` keeps exactly the first V_S student and V_T teacher columns, the ids the
tokenizers define, so padded columns take no part in any softmax and get zero gradient. Left out:
the per-chunk formulas (one module per loss family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from xtoken_align.distill.aggregate import ChunkLayout, check_aggregation, compute_dtype

if TYPE_CHECKING:
    from xtoken_align.distill.config import LossSpec, TeacherSpec
    from xtoken_align.projection import Projection
    from xtoken_align.vocab import Vocab


@dataclass(frozen=True)
class LossSetup:
    """What a teacher's loss is built from: its spec, the run's loss options, its W (None when no
    `projection:` is given) and both vocabularies."""

    teacher: TeacherSpec
    options: LossSpec
    projection: Projection | None
    student_vocab: Vocab
    teacher_vocab: Vocab


class TeacherLoss(nn.Module):
    """A teacher's KD term. Subclasses declare their traits and are registered with `@register_loss`;
    `stats` holds detached diagnostics of the last call (P-KL: "unreachable")."""

    name: ClassVar[str]  # the config's `teachers[].loss`
    needs_projection: ClassVar[bool] = False  # a cross-tokenizer teacher needs a W file (`projection:`)
    same_tokenizer_only: ClassVar[bool] = False  # the teacher must use the student's tokenizer
    learns_w: ClassVar[bool] = False  # `learn_w: true` trains the values of its W (`self.w`)

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, Tensor] = {}

    @classmethod
    def from_teacher(cls, setup: LossSetup) -> TeacherLoss:
        """The loss of one teacher of a run."""
        raise NotImplementedError


def zero_loss(logits: Tensor) -> Tensor:
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


class ChunkLoss(TeacherLoss):
    """Shared frame: flatten, cut the padded columns, build the chunk layout, reduce per-chunk losses,
    scale by τ²."""

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

    @staticmethod
    def chunk_options(setup: LossSetup) -> dict:
        """The run's options every chunk loss takes: aggregation and τ."""
        return {"aggregation": setup.options.aggregation, "tau": setup.options.tau}

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
            return zero_loss(student_logits)
        flat = [None if x is None else x.reshape(-1) for x in (labels, teacher_labels)]
        with torch.autocast(z_s.device.type, enabled=False):  # float32 math even inside a bf16 region
            total = self.chunk_losses(z_s, z_t, layout, *flat).sum() * self.tau**2
        return total / layout.n_chunks if self.reduction == "mean" else total

    def chunk_losses(
        self, z_s: Tensor, z_t: Tensor, layout: ChunkLayout, labels: Tensor | None, teacher_labels: Tensor | None
    ) -> Tensor:
        """(K,) loss of each valid chunk."""
        raise NotImplementedError
