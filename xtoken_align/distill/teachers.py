"""Teachers of a run: each with its tokenizer, its W (none for a same-tokenizer teacher), its loss,
and how several teachers' KD terms are weighted (method.md §6).

`prepare_teachers` runs before any model is loaded and refuses what cannot work: a cross-tokenizer
teacher without a W (for P-KL/H-KL), a W built for other tokenizers, plain KD across tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xtoken_align.distill.config import DistillConfig, LossSpec, TeacherSpec
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
    loss: torch.nn.Module
    model: torch.nn.Module | None = None

    def learned_projection(self) -> Projection | None:
        """The trained W (learn_w runs only), as a W file can hold it."""
        w = getattr(self.loss, "w", None)
        if self.projection is None or w is None or not self.spec.learn_w:
            return None
        return w.to_projection(self.projection, note=f"learned jointly with the student (teacher {self.name})")


def prepare_teachers(config: DistillConfig, student: Vocab) -> list[TeacherPlan]:
    from xtoken_align.distill.losses import make_loss

    plans = []
    for name, spec in zip(config.teacher_names(), config.teachers, strict=True):
        vocab = load_vocab(spec.tokenizer or spec.model)
        same = vocab.fingerprint == student.fingerprint
        where = f"teacher '{name}'"
        if spec.loss == "kd" and not same:
            raise XTokenError(f"{where}: loss kd needs the student's tokenizer; {vocab.name} differs (use p_kl, h_kl)")
        if spec.loss in ("p_kl", "h_kl") and spec.projection is None:
            pair = f"--student {student.source} --teacher {spec.tokenizer or spec.model}"
            hint = "use loss kd" if same else f"build one: xtoken-align build {pair} -o W.safetensors"
            raise XTokenError(f"{where}: loss {spec.loss} needs a W file (projection:); {hint}")
        projection = load_projection(spec.projection, student, vocab) if spec.projection else None
        loss = make_loss(spec.loss, **_loss_arguments(spec, config.loss, projection, student, vocab))
        plans.append(TeacherPlan(name, spec, vocab, same, projection, loss))
    return plans


def _loss_arguments(spec: TeacherSpec, options: LossSpec, projection, student: Vocab, teacher: Vocab) -> dict:
    """Constructor arguments of each loss module, from the run's loss options."""
    from xtoken_align.distill.sparse_w import ProjectionW

    if spec.loss == "kd":  # sizes are the tokenizers': padded output columns are left out
        return {"tau": options.tau, "size": student.size}
    shared = {"aggregation": options.aggregation, "tau": options.tau}
    if spec.loss == "p_kl":
        w = ProjectionW.from_projection(projection, learnable=spec.learn_w)
        return {"w": w, "topk": options.topk, "student": options.topk_student, **shared}
    if spec.loss == "h_kl":
        w = ProjectionW.from_projection(projection)
        return {"w": w, "threshold": options.hkl_threshold, "tail": options.tail, **shared}
    if spec.loss == "gold":
        return {"student_vocab": student, "teacher_vocab": teacher, "tail": options.tail, **shared}
    return {"tail": options.tail, "student_size": student.size, "teacher_size": teacher.size, **shared}  # uld


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
