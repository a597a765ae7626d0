"""The student's part of a training step as one module, `StudentTerms`: its forward runs the student
and returns CE and every teacher's KD term, so that DDP or FSDP, wrapping this module, see every use
of the student's parameters, the output layer included (calling a wrapped model's submodules would
bypass DDP's gradient hooks, and FSDP's output layer is only unsharded inside the forward).

With `chunk_positions` > 0 the losses take the model's final hidden states and output layer
(`OutputHead`, losses/chunked.py) and never build the (N, V) logits; 0 gives them full logits. Left
out: teachers' forward passes (given as `TeacherInput`), weighting and combining the terms
(training_step.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xtoken_align.distill.losses import OutputHead, TeacherLoss, cross_entropy
from xtoken_align.distill.losses.chunked import position_groups, source_rows
from xtoken_align.errors import XTokenError


@dataclass(frozen=True)
class TeacherInput:
    """One teacher's side of a micro-batch: its loss, its output (logits (B, T_t, V_T') or an
    `OutputHead`), the chunk ids of both sides and its next tokens (for `chain`)."""

    loss: TeacherLoss
    output: Tensor | OutputHead
    student_chunk: Tensor
    teacher_chunk: Tensor
    teacher_labels: Tensor


def model_output(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, chunk_positions: int):
    """A Hugging Face causal LM's logits (B, T, V') when `chunk_positions` is 0, else its final hidden
    states and output layer as an `OutputHead` (tied embeddings: the output weight is the embedding's)."""
    if not chunk_positions:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    if model.config.to_dict().get("final_logit_softcapping") is not None:
        raise XTokenError(f"{type(model).__name__} soft-caps its logits; set loss.chunk_positions=0 for it")
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    head = model.get_output_embeddings()
    return OutputHead(hidden, head.weight, head.bias, chunk_positions)


class StudentTerms(nn.Module):
    """forward(input_ids, attention_mask, labels, teachers) -> (CE, [KD per teacher])."""

    def __init__(self, model: nn.Module, chunk_positions: int = 1024) -> None:
        super().__init__()
        self.model, self.chunk_positions = model, int(chunk_positions)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, teachers: list[TeacherInput]
    ) -> tuple[Tensor, list[Tensor]]:
        student = model_output(self.model, input_ids, attention_mask, self.chunk_positions)
        ce = cross_entropy(student, labels)
        kds = [
            t.loss(student, t.output, t.student_chunk, t.teacher_chunk, labels, teacher_labels=t.teacher_labels)
            for t in teachers
        ]
        return ce, kds


@torch.no_grad()
def teacher_stats(output: Tensor | OutputHead, ids: Tensor, mask: Tensor, size: int) -> dict[str, Tensor]:
    """Per-batch teacher CE on its own next tokens, mean entropy and mean max-probability over its
    first `size` columns, `chunk_positions` rows at a time for an `OutputHead`."""
    following = torch.full_like(ids, -1)
    following[:, :-1] = torch.where(mask[:, 1:].bool(), ids[:, 1:], -1)
    target = following.reshape(-1)
    limit = output.chunk_positions if isinstance(output, OutputHead) else target.numel()
    sums = torch.zeros(3, dtype=torch.float32, device=ids.device)
    for group in position_groups(target >= 0, limit):
        logp = torch.log_softmax(source_rows(output, group.student)[:, :size].float(), dim=-1)  # (n, V_T)
        probs = logp.exp()
        ce = -logp.gather(-1, target[group.student].unsqueeze(-1)).sum()
        entropy = -torch.where(probs > 0, probs * logp, 0.0).sum()  # 0·log 0 = 0 (cached teachers store zeros)
        sums += torch.stack([ce, entropy, probs.amax(-1).sum()])
    ce, entropy, max_prob = sums / int((target >= 0).sum())
    return {"ce": ce, "entropy": entropy, "max_prob": max_prob}
