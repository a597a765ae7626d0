"""Distillation losses (method.md §4) as nn.Modules, registered by name, plus cross-entropy and the
Eq. 7 combination.

Every chunk loss takes (docs/distill-interfaces.md)
    student_logits (B, T_s, V_S'), teacher_logits (B, T_t, V_T'), student_chunk (B, T_s),
    teacher_chunk (B, T_t), labels (B, T_s)[, teacher_labels (B, T_t), needed only by `chain`]
and returns a scalar: the mean over valid chunks (or the sum, `reduction="sum"`, for a caller that
normalises across ranks) of the per-chunk loss, times τ². Chunk distributions q_S, q_T come from
`aggregate.py` at temperature τ. Math is float32 (float64 inputs stay float64). Teacher logits are
constants (detached). With no valid chunk the result is 0 with the student's graph intact. Every loss
uses exactly the tokenizers' columns of padded output layers (W's shape for P-KL/H-KL, the
vocabularies' sizes for GOLD, `student_size`/`teacher_size` for ULD, `size` for KD).
Either side's logits may instead be an `OutputHead` (final hidden states and output layer): the same
per-chunk formula then runs on `chunk_positions` positions at a time, forward and backward, and no
(N, V) tensor is kept (chunked.py; docs/distill-interfaces.md).

    registry.py        the one list of losses: register_loss, loss_names, loss_class, make_loss, build_loss
    base.py            TeacherLoss (the traits a loss declares), LossSetup, ChunkLoss (the shared frame)
    projected.py       p_kl   P-KL through W
    hybrid.py          h_kl, gold, uld   common set + sorted tail (student side: hybrid_student.py)
    same_tokenizer.py  kd     plain KL for a teacher with the student's tokenizer
    reference.py       `loss.semantics: reference`: P-KL, H-KL, GOLD as NeMo-RL computes them
    objective.py       cross_entropy, kd_scale, combine (Eq. 7)
    chunked.py         OutputHead: the losses from hidden states and output layer, in position chunks

Importing this package registers every loss, in the order above (p_kl, h_kl, gold, uld, kd). Logs are
log(max(x, LOG_FLOOR)) with one floor for every dtype (aggregate.safe_log). Left out: alignment,
weighting several teachers, the training loop.
"""

from __future__ import annotations

# The import order is the registration order, the order error messages list the names in.
from xtoken_align.distill.losses.projected import PKLLoss  # isort: split

from xtoken_align.distill.losses.hybrid import GoldLoss, HKLLoss, HybridLoss, ULDLoss  # isort: split

from xtoken_align.distill.losses.same_tokenizer import KDLoss  # isort: split

from xtoken_align.distill.losses.reference import ReferencePKLLoss  # isort: split

from xtoken_align.distill.losses.base import ChunkLoss, LossSetup, TeacherLoss, real_columns
from xtoken_align.distill.losses.chunked import OutputHead
from xtoken_align.distill.losses.objective import SCALE_BOUNDS, combine, cross_entropy, kd_scale
from xtoken_align.distill.losses.registry import (
    build_loss,
    loss_class,
    loss_names,
    make_loss,
    register_loss,
    register_reference,
    unregister_loss,
)

__all__ = [
    "SCALE_BOUNDS",
    "ChunkLoss",
    "GoldLoss",
    "HKLLoss",
    "HybridLoss",
    "KDLoss",
    "LossSetup",
    "OutputHead",
    "PKLLoss",
    "ReferencePKLLoss",
    "TeacherLoss",
    "ULDLoss",
    "build_loss",
    "combine",
    "cross_entropy",
    "kd_scale",
    "loss_class",
    "loss_names",
    "make_loss",
    "real_columns",
    "register_loss",
    "register_reference",
    "unregister_loss",
]
