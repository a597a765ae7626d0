"""Teachers of a run: each with its tokenizer, its W (none for a same-tokenizer teacher), its loss,
and how several teachers' KD terms are weighted (method.md §6).

`prepare_teachers` runs before any model is loaded and refuses what cannot work, from the traits each
loss declares in the registry: a cross-tokenizer teacher without a W (P-KL/H-KL need one), a W built
for other tokenizers, plain KD across tokenizers, a teacher cache made for other inputs (cache/).
A teacher is live (`model:`, run each step) or cached (`cache:`, its signal read from disk).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xtoken_align.distill.cache.reader import TeacherCache
from xtoken_align.distill.config import DistillConfig, TeacherSpec
from xtoken_align.distill.losses import LossSetup, TeacherLoss, build_loss, loss_class, loss_names
from xtoken_align.distill.student_terms import model_output
from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection
from xtoken_align.projection import Projection
from xtoken_align.vocab import Vocab, load_vocab


@dataclass
class TeacherPlan:
    name: str
    spec: TeacherSpec
    vocab: Vocab
    same_tokenizer: bool
    projection: Projection | None
    loss: TeacherLoss
    model: torch.nn.Module | None = None
    cache: TeacherCache | None = None

    def teacher_output(self, ids: torch.Tensor, mask: torch.Tensor, index: torch.Tensor, chunk_positions: int = 0):
        """The teacher's side of a micro-batch for the losses: the cache's rebuilt log-probabilities
        (B, T_t, V_T) for the samples `index` (B,), or the live model's logits (B, T_t, V_T'), or with
        `chunk_positions` its hidden states and output layer (`OutputHead`, logits made per chunk)."""
        if self.cache is not None:
            return self.cache.signal(index, ids.shape[1], ids.device)
        return model_output(self.model, ids, mask, chunk_positions)

    def learned_projection(self) -> Projection | None:
        """The trained W (learn_w runs only), as a W file can hold it."""
        if self.projection is None or not self.spec.learn_w:  # config: learn_w only where the loss learns_w
            return None
        note = f"learned jointly with the student (teacher {self.name})"
        return self.loss.w.to_projection(self.projection, note=note)


def prepare_teachers(config: DistillConfig, student: Vocab) -> list[TeacherPlan]:
    """Each teacher's vocabulary, W and loss module, with what its loss declares (registry.py) checked."""
    plans = []
    for name, spec in zip(config.teacher_names(), config.teachers, strict=True):
        cache = None
        if spec.cache is not None:
            cache, vocab = TeacherCache.open(spec, name, config, student)
        else:
            vocab = load_vocab(spec.tokenizer or spec.model)
        same = vocab.fingerprint == student.fingerprint
        where = f"teacher '{name}'"
        kind = loss_class(spec.loss)
        if kind.same_tokenizer_only and not same:
            others = ", ".join(loss_names(needs_projection=True))
            differs = f"{vocab.name} differs (use {others})"
            raise XTokenError(f"{where}: loss {spec.loss} needs the student's tokenizer; {differs}")
        if kind.needs_projection and spec.projection is None:
            pair = f"--student {student.source} --teacher {spec.tokenizer or spec.model or vocab.source}"
            same_only = ", ".join(loss_names(same_tokenizer_only=True))
            hint = f"use loss {same_only}" if same else f"build one: xtoken-align build {pair} -o W.safetensors"
            raise XTokenError(f"{where}: loss {spec.loss} needs a W file (projection:); {hint}")
        projection = load_projection(spec.projection, student, vocab) if spec.projection else None
        loss = build_loss(LossSetup(spec, config.loss, projection, student, vocab))
        plans.append(TeacherPlan(name, spec, vocab, same, projection, loss, cache=cache))
    return plans


def teacher_weights(static: list[float], stats: list[dict[str, torch.Tensor]], mode: str) -> list[torch.Tensor]:
    """α_m per teacher: the configured weights, or a softmax of −CE, −entropy or max-prob, or a
    one-hot on the lowest-CE teacher. Dynamic weights are computed without gradient."""
    if mode == "static" or len(static) == 1:
        return [torch.tensor(w) for w in static]
    if mode == "select":
        best = min(range(len(stats)), key=lambda m: float(stats[m]["ce"]))
        return [torch.tensor(1.0 if m == best else 0.0) for m in range(len(stats))]
    scores = torch.stack([{"ce": -s["ce"], "entropy": -s["entropy"], "max_prob": s["max_prob"]}[mode] for s in stats])
    return list(torch.softmax(scores.detach().float(), dim=0))
