"""Cross-tokenizer distillation inside a Hugging Face `Trainer` (and so under `accelerate launch`).

    XTokenDataCollator          texts -> the batch dict `data.collate` makes: each text encoded for the
                                student and every teacher and aligned once (data.py), then padded
    XTokenDistillationTrainer   a `transformers.Trainer` whose `compute_loss` is the runner's
                                micro-batch objective (training_step.micro_batch_terms: teachers live
                                or cached, CE, KD per teacher, teacher weights, Eq. 7), configured by
                                the same `DistillConfig` (its `student`, `teachers`, `loss`, `data.max_length`)

Gradient accumulation: `_get_num_items_in_batch` counts, over the step's accumulated micro-batches and
every process, CE's labelled positions and each teacher's KD terms (valid chunks, `TeacherLoss.count`),
and each micro-batch's means are weighed by their share of those counts (times the world size, which
DDP's gradient average divides out). A step's gradient is then that of per-token CE plus per-chunk KD
over the whole step, however its samples are split into micro-batches and processes; the Eq. 7 scale
and dynamic teacher weights stay per-micro-batch ratios, as in the runner. A PEFT (LoRA) student trains
its adapters. `learn_w` teachers' W values join the optimizer (their own group, lr `training.w_lr`, on
the Trainer's schedule); W lives in its loss, outside DDP, so a pre-step hook averages its gradient
over the processes as DDP does the student's. Every checkpoint and `save_model` write it as
`W-learned-<teacher>.safetensors`, and its exact parameters as `distill-losses.safetensors`.

Resuming (`train(resume_from_checkpoint=...)`): the checkpoint's student (saved as the student, not as
the `StudentTerms` wrapper Trainer trains) is loaded into the student, a learned W's parameters from
`distill-losses.safetensors`; Trainer restores the optimizer (W's Adam moments too), schedule, RNG and
data position. Tested (tests/test_hf_trainer.py, float32 CPU): resumed halfway through 4 steps with a
learned W and a seeded random order, a full or a LoRA student, steps 3-4 log what the uninterrupted
run logs (tolerance rel 1e-5; measured equal) and end with the same student (adapter) and W; a
learned W under `accelerate launch --num_processes 2` (gloo) ends as one process's with 2x
accumulation (tolerance 1e-4 rel, 1e-6 abs; measured equal, while dropping the averaging leaves a gap
of 3.5e-3).

Left out: the runner's evaluation and curves (use the Trainer's callbacks), `load_best_model_at_end`
(Trainer's loader reads the wrapper), several GPUs in one process (`nn.DataParallel`: launch one
process per GPU with accelerate or torchrun instead), FSDP and DeepSpeed: untested, as no GPU was at
hand and accelerate (1.16) has no FSDP on CPUs. Its `AcceleratorState` turns the FSDP plugin on only
for GPU-like process groups (MULTI_GPU, _NPU, _XPU, ...), so `accelerate launch --use_fsdp
--fsdp_version 2` or `TrainingArguments(fsdp=...)` with `use_cpu=True` run as MULTI_CPU with the
module in DDP, without an error (checked: no DTensor parameters, `is_fsdp_enabled` False). The
runner's FSDP2 path (`training.fsdp`, sharding.py) is tested.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, Trainer
from transformers.utils import logging

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.data import DistillDataset, collate, encode_texts, load_texts
from xtoken_align.distill.student_terms import StudentTerms
from xtoken_align.distill.teachers import TeacherPlan, prepare_teachers
from xtoken_align.distill.training_step import micro_batch_terms, term_counts, term_shares
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab, load_vocab

CONFIG_NAME = "distill-config.yaml"  # the DistillConfig, written next to every saved student
LOSSES_NAME = "distill-losses.safetensors"  # learned W's parameters, `<teacher>/<key>`, for resuming
logger = logging.get_logger(__name__)


def training_texts(config: DistillConfig) -> list[dict]:
    """The run's training texts as Trainer items, `{"text", "index"}`: the index is the sample's
    position in the training set, what a teacher cache is keyed by."""
    texts = load_texts(config.data.train, limit=config.data.limit)
    return [{"text": text, "index": i} for i, text in enumerate(texts)]


class XTokenDataCollator:
    """items (str, or {"text": str, "index": int}; the index is required by a cached teacher) -> the
    batch dict of `collate`: input_ids, attention_mask, labels (B, T_s), index (B,), and per teacher
    teacher_input_ids, teacher_attention_mask (B, T_t), student_chunk (B, T_s), teacher_chunk (B, T_t)."""

    def __init__(self, student: Vocab, teachers: Sequence[TeacherPlan], max_length: int) -> None:
        self.student, self.teachers, self.max_length = student, list(teachers), max_length
        self.vocabs = {t.name: (None if t.same_tokenizer else t.vocab) for t in self.teachers}

    def __call__(self, items: Sequence[str | Mapping]) -> dict:
        texts = [item if isinstance(item, str) else item["text"] for item in items]
        indices = [None if isinstance(item, str) else item.get("index") for item in items]
        encoded = encode_texts(texts, self.student, self.vocabs, self.max_length)
        samples = DistillDataset(encoded, self.student, self.vocabs).samples  # aligned once, here
        for sample, index in zip(samples, indices, strict=True):
            sample.index = -1 if index is None else int(index)
            for plan in self.teachers:
                if plan.cache is not None:
                    if index is None:
                        raise XTokenError(f"teacher '{plan.name}' is cached: items need their training-set "
                                          "index ({'text': ..., 'index': i}, see training_texts)")  # fmt: skip
                    plan.cache.verify_sample(sample, plan.name)
        return collate(samples)


def _unwrapped_peft(model: nn.Module) -> nn.Module:
    """The causal LM under a PEFT wrapper (its LoRA layers are in place there), else the model itself."""
    return model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model


class XTokenDistillationTrainer(Trainer):
    """`Trainer(model=student, args=..., train_dataset=...)` plus `config`: the student's tokenizer, the
    teachers (`teacher_models` by name, else loaded from `teachers[].model`; cached ones need none) and
    the loss options. The module Trainer trains (and accelerate wraps in DDP) is `StudentTerms(student)`;
    `save_model` saves the student itself (a PEFT student: its adapter)."""

    loss_is_scaled_for_ga = True  # compute_loss normalises by the step's counts (num_items_in_batch)

    def __init__(
        self,
        model: nn.Module,
        config: DistillConfig,
        args=None,
        teacher_models: Mapping[str, nn.Module] | None = None,
        data_collator=None,
        **kwargs,
    ) -> None:
        self.config, self.student = config, model
        self.student_vocab = load_vocab(config.student.tokenizer or config.student.model)
        self.teachers = prepare_teachers(config, self.student_vocab)  # refuses a bad config before loading
        collator = data_collator or XTokenDataCollator(self.student_vocab, self.teachers, config.data.max_length)
        terms = StudentTerms(_unwrapped_peft(model), config.loss.chunk_positions)
        super().__init__(model=terms, args=args, data_collator=collator, **kwargs)
        device, dtype = self.args.device, torch.bfloat16 if self.args.bf16 else torch.float32
        given = dict(teacher_models or {})
        for plan in self.teachers:
            plan.loss.to(device)
            if plan.cache is None:
                teacher = given.get(plan.name)
                if teacher is None:
                    teacher = AutoModelForCausalLM.from_pretrained(plan.spec.model, dtype=dtype)
                plan.model = teacher.to(device).eval().requires_grad_(False)
        self._sums: dict[str, float] = {}  # ce, kd, kd_scale, kd/<teacher>... of the micro-batches since the last log
        self._micro = 0

    def learned_parameters(self) -> list[nn.Parameter]:
        return [p for plan in self._learning() for p in plan.loss.parameters() if p.requires_grad]

    def _learning(self) -> list[TeacherPlan]:
        """The teachers whose loss trains parameters of its own (a `learn_w` W)."""
        return [plan for plan in self.teachers if any(p.requires_grad for p in plan.loss.parameters())]

    # ---- the items reach XTokenDataCollator whole (Trainer would drop the columns forward does not name)
    def _remove_unused_columns(self, dataset, description: str | None = None):
        return dataset

    def _get_collator_with_removed_columns(self, data_collator, description: str | None = None):
        return data_collator

    # ---- the loss -------------------------------------------------------------------------------
    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """(1 + teachers,) int64: CE's labelled positions and each teacher's KD terms over the step's
        micro-batches, summed over every process."""
        if not batch_samples:
            return None
        counts = torch.tensor([term_counts(batch, self.teachers) for batch in batch_samples]).sum(0)
        return self.accelerator.reduce(counts.to(device), reduction="sum")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        shares = None  # no step counts (evaluation): the micro-batch's own means
        if num_items_in_batch is not None:
            world = self.accelerator.num_processes  # DDP averages gradients over processes: undo it
            totals = num_items_in_batch.tolist()
            shares = term_shares(inputs, self.teachers, totals, world)
        terms = micro_batch_terms(inputs, model, self.teachers, self.config.loss, shares)
        if model.training:
            for key, value in terms.metrics(self.teachers).items():
                if key != "loss":  # Trainer's `loss` is the step's normalised objective
                    self._sums[key] = self._sums.get(key, 0.0) + value
            self._micro += 1
        return (terms.loss, {}) if return_outputs else terms.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer's logs plus the runner's terms (ce, kd, kd_scale, kd/<teacher>, unreachable/<teacher>),
        averaged over the micro-batches since the last log and over processes."""
        if self._micro and "loss" in logs:
            keys = sorted(self._sums)
            means = torch.tensor([self._sums[k] / self._micro for k in keys], device=self.args.device)
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({k: round(float(v), 6) for k, v in zip(keys, means, strict=True)})
            self._sums, self._micro = {}, 0
        super().log(logs, start_time)

    # ---- resuming: Trainer restores the optimizer (W's group included), scheduler, RNG and data position
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """The student's weights (a PEFT student: its adapter) into the student, not the `StudentTerms`
        wrapper whose keys carry a `model.` prefix, and each learned W's parameters from `LOSSES_NAME`."""
        super()._load_from_checkpoint(resume_from_checkpoint, self.student)
        learning = self._learning()
        if not learning:
            return
        path = Path(resume_from_checkpoint) / LOSSES_NAME
        if not path.is_file():
            names = ", ".join(plan.name for plan in learning)
            raise XTokenError(f"{path} is missing: the checkpoint holds no learned W for {names} (learn_w)")
        states = load_file(path)
        for plan in learning:
            prefix = f"{plan.name}/"
            state = {k[len(prefix) :]: v for k, v in states.items() if k.startswith(prefix)}
            plan.loss.load_state_dict(state)  # strict: a W of another shape is refused

    def _issue_warnings_after_load(self, load_result) -> None:
        """Trainer's check of a loaded checkpoint, on the student (Trainer's own reads `self.model`): tied
        weights (an output layer that is the embedding, not saved) are tied again, other gaps reported."""
        missing, unexpected = set(load_result.missing_keys), set(load_result.unexpected_keys)
        if missing <= set(self.student.all_tied_weights_keys):
            self.student.tie_weights()
        else:
            logger.warning(f"the checkpoint's student lacks {sorted(missing)}")
        if unexpected:
            logger.warning(f"the checkpoint's student has keys the student lacks: {sorted(unexpected)}")

    # ---- a learned W: its own learning rate, averaged over processes, saved as a W file -----------
    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        learned = self.learned_parameters()
        if fresh and learned:
            optimizer.add_param_group({"params": learned, "lr": self.config.training.w_lr, "weight_decay": 0.0})
            optimizer.register_step_pre_hook(lambda *_: self._average_learned(learned))
            optimizer.register_step_post_hook(lambda *_: [setattr(p, "grad", None) for p in learned])
        return optimizer

    def _average_learned(self, learned: list[nn.Parameter]) -> None:
        """W lives in its loss, outside DDP: average its gradient over processes before the step."""
        world = self.accelerator.num_processes
        if world == 1:
            return
        for parameter in learned:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= world

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from xtoken_align.formats import save_projection

        if not self.args.should_save:
            return
        out = Path(output_dir if output_dir is not None else self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.student.save_pretrained(out)  # a PEFT student: its adapter
        (out / CONFIG_NAME).write_text(self.config.dump())
        for plan in self.teachers:
            learned = plan.learned_projection()
            if learned is not None:
                save_projection(learned, out / f"W-learned-{plan.name}.safetensors")
        states = {f"{plan.name}/{key}": value.detach().cpu().contiguous() for plan in self._learning()
                  for key, value in plan.loss.state_dict().items()}  # fmt: skip
        if states:
            save_file(states, out / LOSSES_NAME)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(out)
        torch.save(self.args, os.path.join(out, "training_args.bin"))
