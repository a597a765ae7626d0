"""What every distillation loss shares: the traits it declares for the registry, what it is built
from (`LossSetup`), and the frame of the chunk losses (`ChunkLoss`: flatten, cut padded columns,
lay out chunks, reduce, scale by τ²).

Output widths V_S' ≥ V_S, V_T' ≥ V_T may be padded (Qwen3's lm_head has 151,936 rows for 151,669
tokens): `real_columns` keeps exactly the first V_S student and V_T teacher columns, the ids the
tokenizers define, so padded columns take no part in any softmax and get zero gradient. The frame
takes logits or `OutputHead`s (hidden states and output layer) and calls the same per-chunk formula
on the whole batch or group by group (chunked.py). Left out: the per-chunk formulas (one module per
loss family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from xtoken_align.distill.aggregate import ChunkLayout, check_aggregation, chunk_sum, compute_dtype
from xtoken_align.distill.losses.chunked import (
    OutputHead,
    Source,
    chunk_groups,
    chunked_head_sum,
    head_zero,
    narrow_columns,
    source_rows,
)
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher

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

    def count(self, student_chunk: Tensor, teacher_chunk: Tensor, labels: Tensor) -> int:
        """How many terms a micro-batch's mean is over (its denominator), for a caller that normalises
        by the count of several micro-batches (gradient accumulation: distill/hf.py)."""
        raise NotImplementedError


def zero_loss(logits: Tensor) -> Tensor:
    """0 that still backpropagates (zeros) into the student."""
    return logits.sum().to(compute_dtype(logits)) * 0.0


def real_columns(logits: Tensor | SparseTeacher, size: int | None, side: str) -> Tensor | SparseTeacher:
    """(N, V') -> (N, V) view of the first `size` columns (all when None): the tokenizer's ids, without
    the model's padding. `real_columns(z, 151_669, "teacher")` on Qwen3's (N, 151_936) logits."""
    if size is None:
        return logits
    if isinstance(logits, SparseTeacher):  # a cache stores exactly the tokenizer's ids
        if logits.size != size:
            raise ValueError(f"the {side} cache holds {logits.size:,} ids, not its {size:,} tokens")
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

    def count(self, student_chunk: Tensor, teacher_chunk: Tensor, labels: Tensor) -> int:
        """The micro-batch's valid chunks (present on both sides)."""
        return ChunkLayout.build(student_chunk.reshape(-1), teacher_chunk.reshape(-1)).n_chunks

    @staticmethod
    def chunk_options(setup: LossSetup) -> dict:
        """The run's options every chunk loss takes: aggregation and τ."""
        return {"aggregation": setup.options.aggregation, "tau": setup.options.tau}

    def forward(
        self,
        student: Tensor | OutputHead,
        teacher: Tensor | OutputHead,
        student_chunk: Tensor,
        teacher_chunk: Tensor,
        labels: Tensor | None = None,
        teacher_labels: Tensor | None = None,
    ) -> Tensor:
        """student / teacher: logits (B, T, V') or an `OutputHead` (hidden states and output layer,
        computed in position chunks: chunked.py). The same per-chunk formula either way."""
        layout = ChunkLayout.build(student_chunk.reshape(-1), teacher_chunk.reshape(-1))
        self.stats = {}
        if layout.n_chunks == 0:
            return head_zero(student) if isinstance(student, OutputHead) else zero_loss(student)
        flat = [None if x is None else x.reshape(-1) for x in (labels, teacher_labels)]
        if isinstance(student, OutputHead):
            total, stats, context = self._chunked(student, teacher, layout, *flat)
        else:
            z_s = real_columns(student.reshape(-1, student.shape[-1]), self.student_size, "student")  # (N_s, V_S)
            z_t = real_columns(_all_rows(teacher), self.teacher_size, "teacher")  # (N_t, V_T), no gradient
            context = self.batch_context(lambda: column_max(z_t, layout.teacher.valid))
            columns = self.teacher_columns(context)
            read = _dense(z_t) if columns is None else narrow_columns(z_t, columns)  # the columns it reads
            with torch.autocast(z_s.device.type, enabled=False):  # float32 math even inside a bf16 region
                total = self.chunk_losses(z_s, read, layout, *flat, context).sum()
                stats = {k: v.sum() for k, v in self.chunk_stats(z_t, layout, flat[1]).items()}
        self.stats = {k: v / layout.n_chunks for k, v in stats.items()}
        total = (total + self.kl_correction(teacher, layout, context)) * self.tau**2
        return total / layout.n_chunks if self.reduction == "mean" else total

    def _chunked(self, student: OutputHead, teacher, layout: ChunkLayout, labels, teacher_labels):
        """(Σ of the chunk losses, Σ of the chunk stats) group by group (chunked.py). A teacher pass over
        full rows runs only when the context needs the column max or the formula reads fewer columns."""
        groups = chunk_groups(layout, student.chunk_positions)
        t_labels = [_pick(teacher_labels, g.teacher) for g in groups]
        stats: dict[str, Tensor] = {}
        seen: list[Tensor] = []  # (V_T,) column max per group, once the teacher pass has run

        def add_stats(z_t: Tensor, number: int) -> None:
            with torch.autocast(z_t.device.type, enabled=False):
                for key, value in self.chunk_stats(z_t, groups[number].layout, t_labels[number]).items():
                    stats[key] = stats.get(key, 0.0) + value.sum()

        def teacher_pass() -> Tensor:
            if not seen:
                for number, group in enumerate(groups):
                    z_t = real_columns(_stat_rows(teacher, group.teacher), self.teacher_size, "teacher")
                    seen.append(column_max(z_t))
                    add_stats(z_t, number)
            return torch.stack(seen).amax(0)

        context = self.batch_context(teacher_pass)
        columns = self.teacher_columns(context)
        if columns is not None:
            teacher_pass()  # the stats need full rows; the loss pass computes only `columns`
            teacher = narrow_columns(teacher, columns)

        def group_loss(z: Tensor, number: int) -> Tensor:
            group = groups[number]
            z_t = source_rows(teacher, group.teacher)
            z_t = z_t if columns is not None else real_columns(z_t, self.teacher_size, "teacher")
            if not seen:
                add_stats(z_t, number)
            z_s = real_columns(z, self.student_size, "student")
            with torch.autocast(z_s.device.type, enabled=False):
                return self.chunk_losses(z_s, z_t, group.layout, _pick(labels, group.student), t_labels[number],
                                         context).sum()  # fmt: skip

        return chunked_head_sum(group_loss, student, groups, list(self.parameters())), stats, context

    def kl_correction(self, teacher, layout: ChunkLayout, context: object) -> Tensor | float:
        """Σ over the valid chunks of a cache's per-position Σ π̂ (log p − log p̂) on the ids where the
        value holds a KL teacher term Σ π̂ log π̂ (`kl_ids`; sparse_teacher.py), averaged over a chunk's
        teacher positions (`mean`) or its first position's (`first`, `chain`). p̂'s drawn ids make
        Σ π̂ log π̂ too high (p̂ is lumpier than p); with it the value is the live value's estimate, which
        the dynamic CE/KD scale reads. Exact in expectation for one-position chunks, approximate for
        longer ones; no gradient. 0 for a live teacher, a loss without such a term, at τ ≠ 1 (p̂^{1/τ})
        and for a cache without drawn ids."""
        if not (isinstance(teacher, SparseTeacher) and self.tau == 1.0):
            return 0.0
        ids = self.kl_ids(context, teacher.size, teacher.device)
        found = None if ids is None else teacher.kl_correction(ids)
        if found is None:
            return 0.0
        side = layout.teacher
        per_chunk = chunk_sum(found[:, None], side.targets(self.aggregation), layout.n_chunks)[:, 0]  # (K,)
        return (per_chunk / side.count if self.aggregation == "mean" else per_chunk).sum()

    def kl_ids(self, context: object, size: int, device: torch.device) -> Tensor | None:
        """(V_T,) bool: the teacher ids over which the value holds a KL teacher term Σ π̂ log π̂ of a
        cache's p̂; None: no such term (the default)."""
        return None

    def batch_context(self, teacher_column_max: Callable[[], Tensor]) -> object:
        """What the per-chunk formula needs from the whole micro-batch, before any chunk (P-KL: its top-k
        columns); `teacher_column_max()` -> (V_T,) the max teacher logit over valid positions, on demand."""
        return None

    def teacher_columns(self, context: object) -> Tensor | None:
        """(k,) the teacher ids `chunk_losses` reads (P-KL: its top-k columns), None for all: it then gets
        z_t[:, those] only, and a teacher `OutputHead` computes only those logits in the loss pass."""
        return None

    def chunk_losses(
        self,
        z_s: Tensor,
        z_t: Tensor,
        layout: ChunkLayout,
        labels: Tensor | None,
        teacher_labels: Tensor | None,
        context: object,
    ) -> Tensor:
        """(K,) loss of each valid chunk of `layout`; z_s (N_s, V_S), z_t (N_t, V_T) the rows it indexes
        (only the columns `teacher_columns` names, when it names some)."""
        raise NotImplementedError

    def chunk_stats(self, z_t: Tensor, layout: ChunkLayout, teacher_labels: Tensor | None) -> dict[str, Tensor]:
        """Detached diagnostics per valid chunk, {name: (K,)}; `stats` holds their mean over chunks."""
        return {}


def _pick(x: Tensor | None, rows: Tensor) -> Tensor | None:
    return None if x is None else x.index_select(0, rows)


def _all_rows(source: Source) -> Tensor | SparseTeacher:
    """(N, V') every row's logits, without gradient; a cache's rows stay sparse."""
    if isinstance(source, OutputHead):
        return source_rows(source, torch.arange(source.rows.shape[0], device=source.rows.device))
    if isinstance(source, SparseTeacher):
        return source.flat()
    return source.detach().reshape(-1, source.shape[-1])


def _stat_rows(source: Source, rows: Tensor) -> Tensor | SparseTeacher:
    """The teacher rows `chunk_stats` and the column max read: logits, or a cache's rows kept sparse."""
    return source.select(rows) if isinstance(source, SparseTeacher) else source_rows(source, rows)


def _dense(z: Tensor | SparseTeacher) -> Tensor:
    return z.dense() if isinstance(z, SparseTeacher) else z


def column_max(z: Tensor | SparseTeacher, valid: Tensor | None = None) -> Tensor:
    """(N, V) -> (V,) max over the valid rows (all when None), without copying them out."""
    if isinstance(z, SparseTeacher):
        return z.column_max(valid)
    if valid is None or bool(valid.all()):
        return z.amax(0)
    out = torch.full((2, z.shape[-1]), -torch.inf, dtype=z.dtype, device=z.device)
    return out.scatter_reduce_(0, (~valid).long().unsqueeze(1).expand_as(z), z, "amax")[0]
