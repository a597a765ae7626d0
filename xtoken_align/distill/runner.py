"""`DistillRunner`: one readable training lifecycle for cross-tokenizer distillation.

    prepare (tokenizers, W files, checks: no model loaded yet)
    -> data (encode + align every sample once) -> models (student trains; teachers eval, no grad)
    -> loop: micro-batches x grad_accum, CE + KD per teacher, AdamW, warm-up + cosine, clipping
    -> metrics.jsonl, checkpoints (exact resume), evaluation, curves plot, learned W files.

Runs unchanged under `torchrun --nproc_per_node=N` (DDP, gloo on CPU, nccl on GPU): the global
sequence of micro-batches is the same whatever the world size, and rank r takes every N-th one, so
N processes with accumulation A follow the same curve as one process with accumulation N*A.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.teachers import TeacherPlan, prepare_teachers, teacher_weights
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab, load_vocab


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        rank = dist.get_rank()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
        return cls(rank, world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world


class DistillRunner:
    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.dist = Distributed.from_env()
        self.out = Path(config.output.dir)
        # Everything that can be wrong with the config fails here, before any model is loaded.
        self.student_vocab: Vocab = load_vocab(config.student.tokenizer or config.student.model)
        self.teachers: list[TeacherPlan] = prepare_teachers(config, self.student_vocab)

    # ---- set-up -------------------------------------------------------------------------------
    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _load_data(self) -> None:
        from xtoken_align.distill.data import DistillDataset, encode_texts, load_texts

        cfg = self.config
        texts = load_texts(cfg.data.train, limit=cfg.data.limit)
        vocabs = {t.name: (None if t.same_tokenizer else t.vocab) for t in self.teachers}
        encoded = encode_texts(texts, self.student_vocab, vocabs, cfg.data.max_length)
        self.dataset = DistillDataset(encoded, self.student_vocab, vocabs)
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
            model = AutoModelForCausalLM.from_pretrained(plan.spec.model, dtype=self.dtype)
            plan.model = model.to(self.dist.device).eval().requires_grad_(False)
            plan.loss.to(self.dist.device)
        self.wrapped = self.student
        if self.dist.world > 1:
            if cfg.training.fsdp:
                from torch.distributed.fsdp import FullyShardedDataParallel

                self.wrapped = FullyShardedDataParallel(self.student)
            else:
                from torch.nn.parallel import DistributedDataParallel

                self.wrapped = DistributedDataParallel(self.student)

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
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict:
        """Train to `training.steps` (or stop, checkpointed, after step `stop_after`: for time-boxed
        or pre-emptible jobs; a later `resume` continues exactly where it stopped)."""
        cfg = self.config
        self._seed(cfg.training.seed)
        self._load_data()
        self._load_models()
        self._optimiser()
        start = self._restore() if resume else 0
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(cfg.dump())
        metrics_path = self.out / "metrics.jsonl"
        end = min(cfg.training.steps, stop_after or cfg.training.steps)
        bar = tqdm(range(start, end), desc="distill", disable=not self.dist.main or None)
        last: dict = {}
        for step in bar:
            started = time.perf_counter()
            record = self._train_step(step)
            record["tokens_per_s"] = round(record.pop("tokens") / (time.perf_counter() - started), 1)
            last = record
            if self.dist.main:
                bar.set_postfix(
                    loss=f"{record['loss']:.3f}", kd=f"{record['kd']:.3f}", ce=f"{record['ce']:.3f}",
                    tok_s=f"{record['tokens_per_s']:.0f}",
                )  # fmt: skip
                if step % cfg.output.log_every == 0 or step + 1 == cfg.training.steps:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
            if (step + 1) % cfg.output.save_every == 0 or step + 1 == end:
                self._save(step + 1)
            if cfg.output.eval_every and (step + 1) % cfg.output.eval_every == 0:
                self._evaluate(step + 1)
        if end < cfg.training.steps:
            return {"last": last, "stopped_at": end}
        summary = self._evaluate(end) if start < end else {}
        if self.dist.main:
            self._finish()
        return {"last": last, "eval": summary}

    def _train_step(self, step: int) -> dict:
        from xtoken_align.distill.losses import combine, cross_entropy, kd_scale

        cfg = self.config
        batches = self._batches_for_step(step)
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "kd_scale": 0.0, "tokens": 0}
        per_teacher: dict[str, float] = {}  # "kd/<name>", and "unreachable/<name>" for P-KL teachers
        accum = len(batches)
        for number, batch in enumerate(batches):
            batch = {k: _to(v, self.dist.device) for k, v in batch.items()}
            sync = number + 1 == accum
            # Gradients are all-reduced once per step, on the last micro-batch.
            skip_sync = self.dist.world > 1 and not sync and hasattr(self.wrapped, "no_sync")
            context = self.wrapped.no_sync() if skip_sync else _Null()
            with context, torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self._bf16()):
                logits = self.wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                ce = cross_entropy(logits, batch["labels"])
                kds, stats = [], []
                for plan in self.teachers:
                    with torch.no_grad():
                        t_ids = batch["teacher_input_ids"][plan.name]
                        t_mask = batch["teacher_attention_mask"][plan.name]
                        t_logits = plan.model(input_ids=t_ids, attention_mask=t_mask).logits
                    kds.append(
                        plan.loss(
                            logits,
                            t_logits,
                            batch["student_chunk"][plan.name],
                            batch["teacher_chunk"][plan.name],
                            batch["labels"],
                            teacher_labels=_next_tokens(t_ids, t_mask),
                        )
                    )
                    stats.append(_teacher_stats(t_logits[..., : plan.vocab.size], t_ids, t_mask))
                alphas = teacher_weights([p.spec.weight for p in self.teachers], stats, cfg.loss.teacher_weighting)
                kd = sum(a * k for a, k in zip(alphas, kds, strict=True))
                options = (cfg.loss.combine, cfg.loss.kd_weight)
                loss = combine(ce, kd, *options, cfg.loss.ce_weight, cfg.loss.scale_bounds())
                (loss / accum).backward()
            sums["loss"] += float(loss.detach()) / accum
            sums["ce"] += float(ce.detach()) / accum
            sums["kd"] += float(kd.detach()) / accum
            sums["kd_scale"] += float(kd_scale(ce, kd, *options, cfg.loss.scale_bounds())) / accum
            sums["tokens"] += int(batch["attention_mask"].sum())
            for plan, value in zip(self.teachers, kds, strict=True):
                found = {f"kd/{plan.name}": value.detach()}
                if "unreachable" in plan.loss.stats:  # teacher mass W cannot reach (P-KL)
                    found[f"unreachable/{plan.name}"] = plan.loss.stats["unreachable"]
                for key, x in found.items():
                    per_teacher[key] = per_teacher.get(key, 0.0) + float(x) / accum
        self._sync_loss_gradients()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), cfg.training.clip)
        self.optimizer.step()
        self.scheduler.step()
        record = {
            "step": step + 1,
            **{k: round(self.dist.mean(v), 6) for k, v in sums.items() if k != "tokens"},
            **{k: round(self.dist.mean(v), 6) for k, v in per_teacher.items()},
            "grad_norm": round(float(grad_norm), 4),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens": sums["tokens"] * self.dist.world,
        }
        if not all(math.isfinite(v) for k, v in record.items() if isinstance(v, float)):
            raise XTokenError(f"non-finite loss at step {step + 1}: {record}")
        return record

    def _sync_loss_gradients(self) -> None:
        """A learned W lives in its loss, outside DDP: average its gradient across ranks here."""
        if self.dist.world == 1:
            return
        for plan in self.teachers:
            for parameter in plan.loss.parameters():
                if parameter.grad is not None:
                    dist.all_reduce(parameter.grad)
                    parameter.grad /= self.dist.world

    # ---- checkpoints ----------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        if not self.dist.main:
            return
        final = self.out / "checkpoints" / f"step-{step:07d}"
        temp = final.with_name(final.name + ".tmp")
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        self.student.save_pretrained(temp / "student", safe_serialization=True)
        state = {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "losses": {plan.name: plan.loss.state_dict() for plan in self.teachers},
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        torch.save(state, temp / "state.pt")
        (temp / "config.yaml").write_text(self.config.dump())
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        (self.out / "checkpoints" / "latest").write_text(final.name)

    def _restore(self) -> int:
        from safetensors.torch import load_file

        pointer = self.out / "checkpoints" / "latest"
        if not pointer.is_file():
            raise XTokenError(f"nothing to resume: no checkpoint in {self.out / 'checkpoints'}")
        folder = self.out / "checkpoints" / pointer.read_text().strip()
        self.student.load_state_dict(load_file(folder / "student" / "model.safetensors"), strict=False)
        state = torch.load(folder / "state.pt", map_location=self.dist.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for plan in self.teachers:
            plan.loss.load_state_dict(state["losses"][plan.name])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        return int(state["step"])

    # ---- evaluation and outputs ---------------------------------------------------------------
    def _evaluate(self, step: int) -> dict:
        from xtoken_align.distill.evaluate import evaluate_student

        if not self.dist.main:
            return {}
        summary = evaluate_student(self.student, self.student_vocab, self.config, self.dist.device)
        summary["step"] = step
        with (self.out / "eval.jsonl").open("a") as f:
            f.write(json.dumps(summary) + "\n")
        return summary

    def _finish(self) -> None:
        from xtoken_align.distill.evaluate import plot_metrics
        from xtoken_align.formats import save_projection

        plot_metrics(self.out / "metrics.jsonl", self.out / "metrics.html")
        for plan in self.teachers:
            learned = plan.learned_projection()
            if learned is not None:
                save_projection(learned, self.out / f"W-learned-{plan.name}.safetensors")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _to(value, device):
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _next_tokens(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) next token at each position, -100 where there is none (padding, last position)."""
    following = torch.full_like(ids, -100)
    following[:, :-1] = torch.where(mask[:, 1:].bool(), ids[:, 1:], -100)
    return following


def _teacher_stats(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-batch teacher CE on its own next tokens, mean entropy and mean max-probability."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = ids[:, 1:]
    valid = mask[:, 1:].bool()
    ce = -(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1))[valid].mean()
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)[valid].mean()
    max_prob = probs.max(-1).values[valid].mean()
    return {"ce": ce, "entropy": entropy, "max_prob": max_prob}
