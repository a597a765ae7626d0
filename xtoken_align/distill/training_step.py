"""One optimiser step of distillation: for each of this rank's micro-batches, the student's CE and
every teacher's KD term, weighted (teachers.teacher_weights) and combined (Eq. 7), backpropagated
with gradients all-reduced once, on the last micro-batch; then clipping, AdamW and the schedule.
Each micro-batch's terms are weighed by its share of the step's counts (`term_shares`), so a step's
gradient is that of per-token CE and per-chunk KD over all its micro-batches and ranks, however
unevenly tokens and chunks fall into them.

`micro_batch_terms` is one micro-batch's objective, the one the Hugging Face Trainer (hf.py) uses too,
with `term_counts` / `term_shares` for normalising it by a whole step's counts.

Returns the step's record for metrics.jsonl (loss, ce, kd, kd_scale, kd/<teacher>, unreachable/<teacher>
for P-KL teachers, grad_norm, lr, tokens), averaged over ranks. Left out: which micro-batches a step
takes and everything around the loop (runner.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule

from xtoken_align.distill.config import DistillConfig, LossSpec
from xtoken_align.distill.distributed import Distributed
from xtoken_align.distill.losses import combine, kd_scale
from xtoken_align.distill.student_terms import TeacherInput, teacher_stats
from xtoken_align.distill.teachers import TeacherPlan, teacher_weights
from xtoken_align.errors import XTokenError


def train_step(
    step: int,
    batches: list[dict],
    model: nn.Module,
    teachers: list[TeacherPlan],
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: DistillConfig,
    where: Distributed,
    bf16: bool,
) -> dict:
    """Train on `batches` (this rank's micro-batches of global step `step`); `model` is the student's
    `StudentTerms` as wrapped for training (DDP/FSDP or itself)."""
    options = config.loss
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}  # loss, ce, kd, kd_scale, kd/<name>, unreachable/<name> (P-KL teachers)
    tokens = 0
    accum = len(batches)
    totals = step_counts(batches, teachers, where)
    for number, batch in enumerate(batches):
        batch = {k: _to(v, where.device) for k, v in batch.items()}
        sync = number + 1 == accum
        # Gradients are all-reduced (FSDP: reduce-scattered) once per step, on the last micro-batch.
        context = _without_gradient_sync(model) if where.world > 1 and not sync else nullcontext()
        with context, torch.autocast(where.device.type, dtype=torch.bfloat16, enabled=bf16):
            shares = term_shares(batch, teachers, totals, where.world)
            terms = micro_batch_terms(batch, model, teachers, options, shares)
            terms.loss.backward()
        for key, value in terms.metrics(teachers).items():
            sums[key] = sums.get(key, 0.0) + value / accum
        tokens += int(batch["attention_mask"].sum())
    _sync_loss_gradients(teachers, where)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.training.clip)
    optimizer.step()
    scheduler.step()
    record = {
        "step": step + 1,
        **{k: round(where.mean(v), 6) for k, v in sums.items()},
        "grad_norm": round(float(grad_norm), 4),
        "lr": scheduler.get_last_lr()[0],
        "tokens": tokens * where.world,
    }
    if not all(math.isfinite(v) for k, v in record.items() if isinstance(v, float)):
        raise XTokenError(f"non-finite loss at step {step + 1}: {record}")
    return record


@dataclass
class MicroBatchTerms:
    """One micro-batch's objective and its parts: CE, the teachers' KD terms (means), their weighted
    sum kd, the Eq. 7 factor on kd, and `loss` the combination (or, given `shares`, its normalised part)."""

    loss: Tensor
    combined: Tensor  # the combination of the means (= loss without shares)
    ce: Tensor
    kd: Tensor
    kds: list[Tensor]
    scale: Tensor

    def metrics(self, teachers: list[TeacherPlan]) -> dict[str, float]:
        """loss (the means' combination), ce, kd, kd_scale, kd/<teacher>, unreachable/<teacher> (P-KL)."""
        found = {"loss": self.combined, "ce": self.ce, "kd": self.kd, "kd_scale": self.scale}
        for plan, value in zip(teachers, self.kds, strict=True):
            found[f"kd/{plan.name}"] = value
            if "unreachable" in plan.loss.stats:  # teacher mass W cannot reach (P-KL)
                found[f"unreachable/{plan.name}"] = plan.loss.stats["unreachable"]
        return {key: float(value.detach()) for key, value in found.items()}


def micro_batch_terms(
    batch: dict, model: nn.Module, teachers: list[TeacherPlan], options: LossSpec, shares: list[float] | None = None
) -> MicroBatchTerms:
    """CE + KD per teacher + teacher weights + Eq. 7 on one micro-batch (`collate`'s dict, on the device);
    `model` the student's `StudentTerms` (wrapped or not). `loss` is the combination of the micro-batch's
    means; with `shares` [CE's, each teacher's] (this micro-batch's count over the step's count,
    `term_counts`) each mean is weighed by its share, the weights and the Eq. 7 scale still taken from
    the means: then the step's micro-batch losses sum to per-token CE and per-chunk KD over the step."""
    inputs, stats = [], []
    for plan in teachers:
        t_ids, t_mask = batch["teacher_input_ids"][plan.name], batch["teacher_attention_mask"][plan.name]
        with torch.no_grad():
            t_out = plan.teacher_output(t_ids, t_mask, batch["index"], options.chunk_positions)
        s_chunk, t_chunk = batch["student_chunk"][plan.name], batch["teacher_chunk"][plan.name]
        inputs.append(TeacherInput(plan.loss, t_out, s_chunk, t_chunk, _next_tokens(t_ids, t_mask)))
        if options.teacher_weighting != "static" and len(teachers) > 1:
            stats.append(teacher_stats(t_out, t_ids, t_mask, plan.vocab.size))
    # CE and KD in the wrapped module's forward, so DDP / FSDP see every use of the parameters
    ce, kds = model(batch["input_ids"], batch["attention_mask"], batch["labels"], inputs)
    alphas = teacher_weights([p.spec.weight for p in teachers], stats, options.teacher_weighting)
    kd = sum(a * k for a, k in zip(alphas, kds, strict=True))
    mode = (options.combine, options.kd_weight)
    combined = combine(ce, kd, *mode, options.ce_weight, options.scale_bounds())
    loss = combined
    if shares is not None:
        parts = (ce * shares[0], sum(a * k * f for a, k, f in zip(alphas, kds, shares[1:], strict=True)))
        loss = combine(ce, kd, *mode, options.ce_weight, options.scale_bounds(), parts=parts)
    return MicroBatchTerms(loss, combined, ce, kd, kds, kd_scale(ce, kd, *mode, options.scale_bounds()))


def term_counts(batch: dict, teachers: list[TeacherPlan]) -> list[int]:
    """[CE's labelled positions, each teacher's KD terms (valid chunks; positions for kd)] of a batch:
    what `micro_batch_terms`'s means are over."""
    labels = batch["labels"]
    chunks = [p.loss.count(batch["student_chunk"][p.name], batch["teacher_chunk"][p.name], labels) for p in teachers]
    return [int((labels != -100).sum()), *chunks]


@contextmanager
def _without_gradient_sync(model: nn.Module) -> Iterator[None]:
    """DDP's `no_sync`; FSDP2 has a switch instead (its gradients then accumulate unsharded)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with model.no_sync():
            yield


def step_counts(batches: list[dict], teachers: list[TeacherPlan], where: Distributed) -> list[int]:
    """`term_counts` summed over a step's micro-batches and every rank's: what the step's per-token CE
    and per-chunk KD are over."""
    counts = torch.tensor([term_counts(batch, teachers) for batch in batches]).sum(0)
    if where.world > 1:
        counts = counts.to(where.device)
        dist.all_reduce(counts)
    return counts.tolist()


def term_shares(batch: dict, teachers: list[TeacherPlan], totals: list[int], world: int) -> list[float]:
    """[CE's, each teacher's] share of the step for `micro_batch_terms`: the micro-batch's count over
    the step's, times `world` because data parallelism averages gradients over ranks."""
    return [c * world / max(n, 1) for c, n in zip(term_counts(batch, teachers), totals, strict=True)]


def _sync_loss_gradients(teachers: list[TeacherPlan], where: Distributed) -> None:
    """A learned W lives in its loss, outside DDP: average its gradient across ranks here."""
    if where.world == 1:
        return
    for plan in teachers:
        for parameter in plan.loss.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= where.world


def _to(value, device):
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _next_tokens(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) next token at each position, -100 where there is none (padding, last position)."""
    following = torch.full_like(ids, -100)
    following[:, :-1] = torch.where(mask[:, 1:].bool(), ids[:, 1:], -100)
    return following
