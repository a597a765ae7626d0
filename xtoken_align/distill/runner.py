"""`DistillRunner`: one readable training lifecycle for cross-tokenizer distillation.

    prepare (tokenizers, W files, checks: no model loaded yet)
    -> data (encode + align every sample once) -> models (student trains; teachers eval, no grad)
    -> loop: micro-batches x grad_accum, CE + KD per teacher, AdamW, warm-up + cosine, clipping
    -> metrics.jsonl, checkpoints (exact resume), evaluation, curves plot, learned W files.

Runs unchanged under `torchrun --nproc_per_node=N` (DDP, gloo on CPU, nccl on GPU; with
`training.fsdp`, FSDP2: sharding.py): the global sequence of micro-batches is the same whatever the
world size, and rank r takes every N-th one, so N processes with accumulation A follow the same curve
as one process with accumulation N*A. One step's arithmetic is training_step.py, checkpoints
checkpoints.py, what a run writes as it goes run_log.py, rank and device distributed.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xtoken_align.distill.checkpoints import restore_checkpoint, save_checkpoint
from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.distributed import Distributed
from xtoken_align.distill.run_log import RunLog
from xtoken_align.distill.student_terms import StudentTerms
from xtoken_align.distill.summary import RunSummary
from xtoken_align.distill.teachers import TeacherPlan, prepare_teachers
from xtoken_align.distill.training_step import train_step
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab, load_vocab


class DistillRunner:
    def __init__(self, config: DistillConfig, log: Callable[[str], None] | None = None) -> None:
        """`log`: where progress lines go (the CLI: stderr, with the time since start); None: nowhere."""
        self.config = config
        self.dist = Distributed.from_env()
        self.out = Path(config.output.dir)
        self.started = time.perf_counter()
        self._log = log
        self.log = RunLog(self.out, config, self.dist.main)
        # Everything that can be wrong with the config fails here, before any model is loaded.
        self.say(f"reading the tokenizers and W of {len(config.teachers)} teacher(s)")
        self.student_vocab: Vocab = load_vocab(config.student.tokenizer or config.student.model)
        self.teachers: list[TeacherPlan] = prepare_teachers(config, self.student_vocab)

    def say(self, message: str) -> None:
        if self._log is not None and self.dist.main:
            self._log(f"[{time.perf_counter() - self.started:6.1f} s] {message}")

    # ---- set-up -------------------------------------------------------------------------------
    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _load_data(self) -> None:
        from xtoken_align.distill.data import training_set

        cfg = self.config
        vocabs = {t.name: (None if t.same_tokenizer else t.vocab) for t in self.teachers}
        self.dataset = training_set(cfg.data.train, cfg.data.limit, cfg.data.max_length, self.student_vocab, vocabs)
        for plan in self.teachers:
            if plan.cache is not None:  # a cache for other samples stops the run here, before any model loads
                plan.cache.verify(self.dataset, plan.name)
        per_step = cfg.training.batch_size * cfg.training.grad_accum * self.dist.world
        if len(self.dataset) < cfg.training.batch_size:
            raise XTokenError(f"{len(self.dataset)} training texts, fewer than one batch of {cfg.training.batch_size}")
        self.micro_per_step = per_step // cfg.training.batch_size

    def _micro_batches(self, epoch: int) -> list[list[int]]:
        """The global order of micro-batches for an epoch (identical on every rank)."""
        generator = torch.Generator().manual_seed(self.config.training.seed * 1000 + epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        size = self.config.training.batch_size
        return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]

    def _batches_for_step(self, step: int) -> list[dict]:
        """This rank's micro-batches of a global step."""
        from xtoken_align.distill.data import collate

        per_epoch = len(self._micro_batches(0))
        picked = []
        for j in range(self.micro_per_step):
            index = step * self.micro_per_step + j
            if index % self.dist.world != self.dist.rank:
                continue
            epoch, position = divmod(index, per_epoch)
            picked.append(collate([self.dataset[i] for i in self._micro_batches(epoch)[position]]))
        return picked

    def _load_models(self) -> None:
        from transformers import AutoModelForCausalLM

        cfg = self.config
        self.dtype = torch.bfloat16 if self._bf16() else torch.float32
        self.student = AutoModelForCausalLM.from_pretrained(cfg.student.model, dtype=torch.float32)
        self.student.to(self.dist.device).train()
        for plan in self.teachers:
            plan.loss.to(self.dist.device)
            if plan.cache is not None:  # a cached teacher: no model, its signal comes from the cache
                continue
            model = AutoModelForCausalLM.from_pretrained(plan.spec.model, dtype=self.dtype)
            plan.model = model.to(self.dist.device).eval().requires_grad_(False)
        # CE and KD are computed in StudentTerms.forward, so the DDP/FSDP wrapper sees the output layer used
        self.wrapped = StudentTerms(self.student, cfg.loss.chunk_positions)
        self.sharded: nn.ModuleDict | None = None  # under FSDP: what sharded checkpoints name and hold
        if self.dist.world > 1 and cfg.training.fsdp:
            from xtoken_align.distill.sharding import shard_student

            self.wrapped = shard_student(self.wrapped)
            losses = nn.ModuleList([plan.loss for plan in self.teachers])  # a learned W's optimiser state
            self.sharded = nn.ModuleDict({"student": self.wrapped, "losses": losses})
        elif self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(self.wrapped)

    def _bf16(self) -> bool:
        wanted = self.config.training.precision
        if wanted == "auto":
            return self.dist.device.type == "cuda" and torch.cuda.is_bf16_supported()
        return wanted == "bf16"

    def _optimiser(self) -> None:
        from transformers import get_cosine_schedule_with_warmup

        cfg = self.config.training
        groups = [{"params": list(self.wrapped.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
        learned = [p for plan in self.teachers for p in plan.loss.parameters() if p.requires_grad]
        if learned:
            groups.append({"params": learned, "lr": cfg.w_lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.steps)

    # ---- training -----------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None) -> RunSummary:
        """Train to `training.steps` (or stop, checkpointed, after step `stop_after`: for time-boxed
        or pre-emptible jobs; a later `resume` continues exactly where it stopped)."""
        cfg = self.config
        self._seed(cfg.training.seed)
        self.say("encoding and aligning the training texts for the student and every teacher")
        self._load_data()
        live = sum(plan.cache is None for plan in self.teachers)
        self.say(f"loading the student and {live} live teacher(s) ({len(self.teachers) - live} from a cache)")
        self._load_models()
        self._optimiser()
        start = self._restore() if resume else 0
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(cfg.dump())
        end = min(cfg.training.steps, stop_after or cfg.training.steps)
        self.say(f"training steps {start + 1}-{end} of {cfg.training.steps} on {len(self.dataset):,} samples")
        bar = self.log.progress(start, end)
        last: dict = {}
        for step in bar:
            started = time.perf_counter()
            batches = self._batches_for_step(step)
            record = train_step(step, batches, self.wrapped, self.teachers, self.optimizer, self.scheduler, cfg,
                                self.dist, self._bf16())  # fmt: skip
            record["tokens_per_s"] = round(record.pop("tokens") / (time.perf_counter() - started), 1)
            last = record
            self.log.step(bar, step, record)
            if (step + 1) % cfg.output.save_every == 0 or step + 1 == end:
                self._save(step + 1, export=step + 1 == end)
            if cfg.output.eval_every and (step + 1) % cfg.output.eval_every == 0:
                self._evaluate(step + 1)
        if end < cfg.training.steps:
            return self._report(RunSummary(output=str(self.out), steps=end, stopped_at=end, last=last, eval=None))
        if start < end:
            self.say("evaluating the student")
        summary = self._evaluate(end) if start < end else {}
        if self.dist.main:
            self._finish()
        return self._report(RunSummary(output=str(self.out), steps=end, stopped_at=None, last=last, eval=summary))

    def _report(self, summary: RunSummary) -> RunSummary:
        """Name every file the run folder holds in the summary, and write it there as summary.json."""
        if not self.dist.main:
            return summary
        summary = summary.with_artifacts(self.out)
        (self.out / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n")
        self.say(f"done: everything is in {self.out}/ (summary.json lists it)")
        return summary

    # ---- checkpoints ----------------------------------------------------------------------------
    def _save(self, step: int, export: bool) -> None:
        """Rank 0 saves, or under FSDP every rank (`export`: the gathered student too)."""
        if self.dist.main or self.sharded is not None:
            losses = {plan.name: plan.loss for plan in self.teachers}
            save_checkpoint(self.out, step, self.student, self.optimizer, self.scheduler, losses, self.config.dump(),
                            self.sharded, export)  # fmt: skip

    def _restore(self) -> int:
        losses = {plan.name: plan.loss for plan in self.teachers}
        return restore_checkpoint(self.out, self.student, self.optimizer, self.scheduler, losses, self.dist.device,
                                  self.sharded)  # fmt: skip

    # ---- evaluation and outputs ---------------------------------------------------------------
    def _evaluate(self, step: int) -> dict:
        from xtoken_align.distill.evaluate import evaluate_student

        if self.sharded is not None:  # every rank runs it, the root's parameters gathered
            from xtoken_align.distill.sharding import gathered_root

            with gathered_root(self.wrapped):
                summary = evaluate_student(self.student, self.student_vocab, self.config, self.dist.device, True)
        elif self.dist.main:
            summary = evaluate_student(self.student, self.student_vocab, self.config, self.dist.device)
        if not self.dist.main:
            return {}
        summary["step"] = step
        self.log.evaluation(summary)
        return summary

    def _finish(self) -> None:
        from xtoken_align.formats import save_projection

        self.log.plot()
        for plan in self.teachers:
            learned = plan.learned_projection()
            if learned is not None:
                save_projection(learned, self.out / f"W-learned-{plan.name}.safetensors")
