"""`DistillConfig`: everything a distillation run needs, consumed by `DistillRunner`.

Loaded from YAML, overridable from the command line with dotted `key=value` pairs
(`training.steps=50 teachers.0.loss=h_kl`), validated at construction, and written next to every
checkpoint so a run can be reproduced from it and its seed. `check_against_tokenizers` runs before
any model is loaded: a cross-tokenizer teacher without W, or a W built for other tokenizers, stops
the run with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from xtoken_align.config import apply_override, read_config
from xtoken_align.distill.losses import loss_class, loss_names
from xtoken_align.errors import XTokenError


def _registered_loss(name: str) -> str:
    loss_class(name)  # ValueError naming every registered loss when `name` is none of them
    return name


LossName = Annotated[str, AfterValidator(_registered_loss)]  # a name in the loss registry (losses/registry.py)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    model: str  # HF causal LM: hub id or local folder
    tokenizer: str | None = None  # tokenizer source (xtoken_align.sources); default: the model folder


class TeacherSpec(ModelSpec):
    model: str | None = None  # HF causal LM (hub id or local folder), or else `cache:`
    cache: str | None = None  # a teacher cache folder (`xtoken-align cache-teacher`, docs/teacher-cache.md)
    name: str | None = None
    projection: str | None = None  # W file (.safetensors); required unless the tokenizer is the student's
    loss: LossName = "p_kl"
    weight: Annotated[float, Field(ge=0)] = 1.0
    learn_w: bool = False  # losses that declare learns_w (P-KL): train W's values (sparsity fixed)

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if (self.model is None) == (self.cache is None):
            raise ValueError("a teacher needs exactly one of model: (a live teacher) and cache: (a cached one)")
        return self


class DataSpec(_Strict):
    train: list[str]
    eval: list[str] = []
    max_length: Annotated[int, Field(ge=8)] = 256
    limit: Annotated[int, Field(ge=1)] | None = None  # use only the first N training texts


class TrainingSpec(_Strict):
    steps: Annotated[int, Field(ge=1)] = 100
    batch_size: Annotated[int, Field(ge=1)] = 4
    grad_accum: Annotated[int, Field(ge=1)] = 1
    lr: Annotated[float, Field(gt=0)] = 1e-4
    w_lr: Annotated[float, Field(gt=0)] = 1e-2
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    clip: Annotated[float, Field(gt=0)] = 1.0
    precision: Literal["auto", "float32", "bf16"] = "auto"  # auto: bf16 on a GPU that supports it
    seed: int = 0
    fsdp: bool = False  # shard the student under torchrun (models too big for one device)


class LossSpec(_Strict):
    aggregation: Literal["mean", "first", "chain"] = "mean"
    topk: Annotated[int, Field(ge=1)] = 8192
    # P-KL: the projected student's mass outside the top-k columns: renormalise within them (as the
    # reference code does; as close or closer to full-vocabulary P-KL in 3 of 4 logit regimes of
    # bench/pkl_topk.py, README "Distillation") or drop it
    topk_student: Literal["renormalise", "drop"] = "renormalise"
    tail: Annotated[int, Field(ge=1)] = 8192
    tau: Annotated[float, Field(gt=0)] = 1.0
    hkl_threshold: Annotated[float, Field(gt=0, le=1)] = 0.6
    combine: Literal["dynamic", "fixed"] = "dynamic"
    # dynamic: KD scale |ce| / |kd| clamped to [min, max] (a magnitude: a negative kd keeps its direction)
    dynamic_scale_min: Annotated[float, Field(gt=0)] = 0.01
    dynamic_scale_max: Annotated[float, Field(gt=0)] = 100.0
    kd_weight: Annotated[float, Field(ge=0)] = 1.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.1
    teacher_weighting: Literal["static", "ce", "entropy", "max_prob", "select"] = "static"
    # losses from the final hidden states and output layer, this many positions at a time (forward and
    # backward), never holding (positions, vocabulary) logits; 0: from full logits (losses/chunked.py)
    chunk_positions: Annotated[int, Field(ge=0)] = 1024
    # ours, or reference: P-KL, H-KL and GOLD as NeMo-RL computes them (losses/reference.py,
    # docs/method.md "Reference semantics")
    semantics: Literal["ours", "reference"] = "ours"

    @model_validator(mode="after")
    def _bounds(self) -> LossSpec:
        if self.semantics == "reference" and self.topk_student == "drop":
            raise ValueError("semantics: reference renormalises the projected student within the top-k "
                             "columns; topk_student: drop contradicts it")  # fmt: skip
        if self.dynamic_scale_min > self.dynamic_scale_max:
            raise ValueError(f"dynamic_scale_min {self.dynamic_scale_min} exceeds dynamic_scale_max "
                             f"{self.dynamic_scale_max}")  # fmt: skip
        return self

    def scale_bounds(self) -> tuple[float, float]:
        return (self.dynamic_scale_min, self.dynamic_scale_max)


class OutputSpec(_Strict):
    dir: str = "runs/distill"
    log_every: Annotated[int, Field(ge=1)] = 1
    save_every: Annotated[int, Field(ge=1)] = 100
    eval_every: Annotated[int, Field(ge=0)] = 0  # 0: only at the end


class EvalSpec(_Strict):
    texts: Annotated[int, Field(ge=0)] = 200  # eval texts for next-token accuracy per category
    gsm8k_problems: Annotated[int, Field(ge=0)] = 0  # greedy-generation exact match; 0 skips
    max_new_tokens: Annotated[int, Field(ge=1)] = 64


class DistillConfig(_Strict):
    student: ModelSpec
    teachers: list[TeacherSpec] = Field(min_length=1)
    data: DataSpec
    training: TrainingSpec = TrainingSpec()
    loss: LossSpec = LossSpec()
    output: OutputSpec = OutputSpec()
    eval: EvalSpec = EvalSpec()

    @model_validator(mode="after")
    def _names(self) -> DistillConfig:
        for position, teacher in enumerate(self.teachers):
            if teacher.learn_w and not loss_class(teacher.loss).learns_w:
                learning = ", ".join(loss_names(learns_w=True))
                raise ValueError(f"teachers.{position}: learn_w is for {learning} only ({teacher.loss} keeps W fixed)")
        names = [t.name or f"teacher{i}" for i, t in enumerate(self.teachers)]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique: {names}")
        return self

    def teacher_names(self) -> list[str]:
        return [t.name or f"teacher{i}" for i, t in enumerate(self.teachers)]

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> DistillConfig:
        data = read_config(path) or {}
        for item in overrides:
            apply_override(data, item)
        return cls.from_dict(data, origin=str(path))

    def overridden(self, overrides: list[str], origin: str = "overrides") -> DistillConfig:
        """This config with dotted `key=value` overrides applied (validated again)."""
        if not overrides:
            return self
        data = self.model_dump(mode="json")
        for item in overrides:
            apply_override(data, item)
        return DistillConfig.from_dict(data, origin=origin)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "config") -> DistillConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
            raise XTokenError(f"{origin}: invalid distillation config: {problems}") from None

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
