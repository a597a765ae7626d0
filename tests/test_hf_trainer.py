"""`XTokenDistillationTrainer` (distill/hf.py) on CPU: tiny random Llama/Qwen3 models with the real
Llama-3 and Qwen3 tokenizers, against the runner on the same data, seed and config; a LoRA student;
gradient accumulation normalised by the step's counts; and `accelerate launch` with 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import gsm8k, vocab
from loss_fixtures import distill_assets
from transformers import TrainerCallback

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.hf import XTokenDataCollator, XTokenDistillationTrainer, training_texts
from xtoken_align.distill.runner import DistillRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    texts = gsm8k("train")[:16]
    texts[1] = texts[1][:60]  # a short text: micro-batches of different chunk counts
    return distill_assets(tmp_path_factory.mktemp("hf"), texts)


def config(assets, out: Path, loss: str = "p_kl", options: dict | None = None, **training) -> DistillConfig:
    teacher = {"name": "qwen", "model": str(assets["qwen"]), "loss": loss, "projection": str(assets["w"])}
    return DistillConfig.from_dict(
        {
            "student": {"model": str(assets["student"])},
            "teachers": [teacher | training.pop("teacher", {})],
            "data": {"train": [str(assets["data"])], "max_length": 64},
            "training": {"steps": 3, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1, "seed": 0, **training},
            "loss": {"topk": 2048, "tail": 1024, **(options or {})},
            "output": {"dir": str(out), "save_every": 100},
            "eval": {"texts": 2},
        }
    )


def arguments(out: Path, cfg: DistillConfig, **extra):
    from transformers import TrainingArguments

    t = cfg.training
    settings = dict(
        output_dir=str(out), max_steps=t.steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, warmup_steps=t.warmup_steps,
        lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=t.clip, optim="adamw_torch", seed=t.seed,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, train_sampling_strategy="sequential",
        dataloader_num_workers=0,
    )  # fmt: skip
    return TrainingArguments(**(settings | extra))


def student(assets):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(assets["student"], dtype=torch.float32)


def runner_order(cfg: DistillConfig, steps: int) -> list[int]:
    """The runner's sample order for `steps` steps of one micro-batch (runner._micro_batches)."""
    order = torch.randperm(16, generator=torch.Generator().manual_seed(cfg.training.seed * 1000)).tolist()
    return order[: steps * cfg.training.batch_size]


@pytest.mark.parametrize("teacher", ["live", "cached"])
def test_trainer_follows_the_runner(assets, tmp_path: Path, teacher: str) -> None:
    """Same data (in the runner's order), seed and config, the teacher live or read from its cache: the
    Trainer's ce, kd and loss per step are the runner's to rel 1e-4 (the runner logs 6 decimals)."""
    cfg = config(assets, tmp_path / "runner")
    if teacher == "cached":
        from xtoken_align.distill.cache.writer import cache_teachers

        cache_teachers(cfg, tmp_path / "cache", None, topk=256, sampled=16, seed=0)
        cfg = config(assets, tmp_path / "runner", teacher={"model": None, "cache": str(tmp_path / "cache" / "qwen")})
    DistillRunner(cfg).run()
    expected = [json.loads(line) for line in (tmp_path / "runner" / "metrics.jsonl").read_text().splitlines()]
    texts = training_texts(cfg)
    items = [texts[i] for i in runner_order(cfg, cfg.training.steps)]
    trainer = XTokenDistillationTrainer(student(assets), cfg, arguments(tmp_path / "hf", cfg), train_dataset=items)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "ce" in r]
    assert len(logged) == len(expected) == 3
    for ours, theirs in zip(logged, expected, strict=True):
        for key in ("loss", "ce", "kd", "kd/qwen", "kd_scale", "unreachable/qwen"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key


def test_lora_student_trains_its_adapter_and_a_learned_w(assets, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from xtoken_align.formats import load_projection

    cfg = config(assets, tmp_path, steps=2, teacher={"learn_w": True})
    model = get_peft_model(student(assets), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = XTokenDistillationTrainer(model, cfg, arguments(tmp_path / "hf", cfg), train_dataset=training_texts(cfg))
    trainer.train()
    trainer.save_model()
    after = dict(model.named_parameters())
    lora = [k for k in before if "lora_" in k]
    assert lora and all(after[k].requires_grad for k in lora)
    assert any(not torch.equal(before[k], after[k]) for k in lora if "lora_B" in k)  # the adapter learned
    assert all(torch.equal(before[k], after[k]) for k in before if "lora_" not in k)  # the base stayed frozen
    out = tmp_path / "hf"
    assert (out / "adapter_config.json").is_file() and (out / "distill-config.yaml").is_file()
    learned = load_projection(out / "W-learned-qwen.safetensors", vocab("llama3"), vocab("qwen3"))
    original = load_projection(assets["w"])
    assert learned.matrix.nnz == original.matrix.nnz and (learned.matrix != original.matrix).nnz > 0


class StepCounter(TrainerCallback):
    """The global steps a `train()` call ran."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.steps.append(state.global_step)


@pytest.mark.parametrize("lora", [False, True])
def test_resume_from_checkpoint_continues_the_uninterrupted_run(assets, tmp_path: Path, lora: bool) -> None:
    """4 steps of 2 micro-batches (seeded random order, a learned W) saved every 2 steps; a fresh
    Trainer on a fresh student (a LoRA one: its adapter initialised from another seed) resumed from
    checkpoint-2 logs steps 3-4 as the uninterrupted run does (rel 1e-5, float32 CPU) and ends with the
    same student (or adapter) and the same learned W."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from xtoken_align.distill.hf import LOSSES_NAME

    cfg = config(assets, tmp_path / "unused", steps=4, batch_size=2, grad_accum=2, teacher={"learn_w": True})
    runs, trained = {}, {}
    for seed, (name, resume) in enumerate((("whole", None), ("resumed", tmp_path / "whole" / "checkpoint-2"))):
        model = student(assets)
        if lora:
            torch.manual_seed(seed)
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        args = arguments(tmp_path / name, cfg, save_strategy="steps", save_steps=2, train_sampling_strategy="random")
        steps = StepCounter()
        trainer = XTokenDistillationTrainer(model, cfg, args, train_dataset=training_texts(cfg), callbacks=[steps])
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runs[name], trained[name] = {r["step"]: r for r in trainer.state.log_history if "ce" in r}, steps.steps
    checkpoint = tmp_path / "whole" / "checkpoint-2"
    assert (checkpoint / LOSSES_NAME).is_file() and (checkpoint / "W-learned-qwen.safetensors").is_file()
    groups = torch.load(checkpoint / "optimizer.pt", weights_only=True)["param_groups"]
    assert len(groups[-1]["params"]) == 1  # W's own group, scheduled like the student's at w_lr
    assert groups[-1]["lr"] / groups[0]["lr"] == pytest.approx(cfg.training.w_lr / cfg.training.lr)
    assert trained == {"whole": [1, 2, 3, 4], "resumed": [3, 4]}  # the resumed log_history starts with 1, 2
    keys = ("loss", "ce", "kd", "kd/qwen", "unreachable/qwen", "grad_norm", "learning_rate")
    worst = 0.0
    for step in (3, 4):
        for key in keys:
            ours, theirs = runs["resumed"][step][key], runs["whole"][step][key]
            assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-7), (step, key)
            worst = max(worst, abs(ours - theirs) / max(abs(theirs), 1e-12))
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    gaps = {}
    for saved in (LOSSES_NAME, weights):
        ends = {name: load_file(tmp_path / name / "checkpoint-4" / saved) for name in runs}
        assert ends["whole"].keys() == ends["resumed"].keys() and ends["whole"]
        for key, value in ends["whole"].items():
            torch.testing.assert_close(ends["resumed"][key], value, rtol=1e-5, atol=1e-7, msg=f"{saved}: {key}")
        gaps[saved] = max(float((ends["resumed"][k] - v).abs().max()) for k, v in ends["whole"].items())
    print(f"resumed vs uninterrupted: logged values rel {worst:.3g}, saved tensors abs {gaps}")


def _gradient(trainer, batches: list[dict]) -> dict[str, torch.Tensor]:
    model = trainer.model
    model.zero_grad(set_to_none=True)
    counts = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
    for batch in batches:
        trainer.compute_loss(model, batch, num_items_in_batch=counts).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_positions", [0, 24])
def test_accumulation_is_normalised_by_the_step_counts(assets, tmp_path: Path, chunk_positions: int) -> None:
    """One micro-batch of 4 samples and two of 2 give the same gradient although the two micro-batches
    hold different numbers of tokens and chunks (H-KL and same-tokenizer KD, fixed combination)."""
    cfg = config(assets, tmp_path, "h_kl", {"combine": "fixed", "chunk_positions": chunk_positions})
    data = cfg.model_dump(mode="json")
    data["teachers"].append({"name": "llama", "model": str(assets["llama_teacher"]), "loss": "kd", "weight": 0.5})
    cfg = DistillConfig.from_dict(data)
    trainer = XTokenDistillationTrainer(student(assets), cfg, arguments(tmp_path / "hf", cfg))
    collator: XTokenDataCollator = trainer.data_collator
    items = [training_texts(cfg)[i] for i in (1, 5, 2, 3)]  # sample 1 is short
    whole, halves = collator(items), [collator(items[:2]), collator(items[2:])]
    counts = [trainer._get_num_items_in_batch([h], torch.device("cpu")).tolist() for h in halves]
    assert all(a != b for a, b in zip(*counts, strict=True))  # tokens and chunks differ between the halves
    one, two = _gradient(trainer, [whole]), _gradient(trainer, halves)
    assert one.keys() == two.keys() and one
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-7, msg=key)
    model = trainer.model  # the mean of the two micro-batches' means (TRL's bug) is another gradient
    model.zero_grad(set_to_none=True)
    for half in halves:
        (trainer.compute_loss(model, half) / 2).backward()
    naive = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert not all(torch.allclose(naive[k], one[k], rtol=1e-3) for k in one)


ACCELERATE_RUN = """
import json, sys, torch
from transformers import AutoModelForCausalLM, TrainingArguments
from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.hf import XTokenDistillationTrainer, training_texts
cfg = DistillConfig.load(sys.argv[1])
accum, out = int(sys.argv[2]), sys.argv[3]
args = TrainingArguments(output_dir=out, max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=accum,
    learning_rate=3e-3, warmup_steps=1, lr_scheduler_type="cosine", optim="adamw_torch", logging_steps=1,
    save_strategy="no", report_to=[], use_cpu=True, train_sampling_strategy="sequential", dataloader_num_workers=0)
model = AutoModelForCausalLM.from_pretrained(cfg.student.model, dtype=torch.float32)
trainer = XTokenDistillationTrainer(model, cfg, args, train_dataset=training_texts(cfg))
trainer.train()
trainer.save_model()  # a learn_w teacher: W-learned-<teacher>.safetensors, written by rank 0
if trainer.is_world_process_zero():
    rows = [r for r in trainer.state.log_history if "ce" in r]
    open(out + "/curve.json", "w").write(json.dumps(rows))
if torch.distributed.is_initialized():  # leave together: a rank exiting while gloo works aborts
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""


def _single_and_two_processes(tmp_path: Path, cfg: DistillConfig) -> dict[str, Path]:
    """Run ACCELERATE_RUN as one process with accumulation 2 and as two (DDP, gloo) with accumulation 1:
    the output folder of each."""
    script = tmp_path / "run.py"
    script.write_text(ACCELERATE_RUN)
    path = tmp_path / "run.yaml"
    path.write_text(cfg.dump())
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    outs = {}
    for name, procs, accum in (("single", 1, 2), ("ddp", 2, 1)):
        out = outs[name] = tmp_path / name
        out.mkdir()
        # `--cpu` would take accelerate's one-process launcher whatever --num_processes says; `--multi_gpu`
        # launches through torch elastic, and the processes fall back to gloo on CPUs (use_cpu=True).
        launcher = ["--multi_gpu"] if procs > 1 else ["--cpu"]
        command = [accelerate, "launch", *launcher, "--num_processes", str(procs), "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(29520 + procs),
                   str(script), str(path), str(accum), str(out)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    return outs


def _assert_same_curves(outs: dict[str, Path]) -> None:
    curves = {name: json.loads((out / "curve.json").read_text()) for name, out in outs.items()}
    assert len(curves["single"]) == len(curves["ddp"]) == 3
    for single, ddp in zip(curves["single"], curves["ddp"], strict=True):
        for key in ("loss", "ce", "kd", "grad_norm"):
            assert ddp[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), (key, curves)


def test_accelerate_two_processes_follow_one_with_double_accumulation(assets, tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on CPUs (DDP over gloo), accumulation 1, follows one process
    with accumulation 2: the same samples per step, the step's counts summed over the processes."""
    _assert_same_curves(
        _single_and_two_processes(tmp_path, config(assets, tmp_path / "unused", options={"chunk_positions": 40}))
    )


def test_learned_w_under_two_processes_is_one_with_double_accumulation(assets, tmp_path: Path) -> None:
    """A `learn_w` P-KL teacher under `accelerate launch --num_processes 2`: W lives in the loss, outside
    DDP, and its gradient is averaged over the processes as the student's is (the optimizer's pre-step
    hook), so the W file rank 0 writes equals one process's with accumulation 2 (values to 1e-6 abs, 1e-4
    rel; Adam's first steps move them by ~w_lr), and so do the curves."""
    from xtoken_align.formats import load_projection

    cfg = config(assets, tmp_path / "unused", teacher={"learn_w": True})
    outs = _single_and_two_processes(tmp_path, cfg)
    _assert_same_curves(outs)
    pair = (vocab("llama3"), vocab("qwen3"))
    ws = {name: load_projection(out / "W-learned-qwen.safetensors", *pair).matrix.tocsr() for name, out in outs.items()}
    original = load_projection(assets["w"], *pair).matrix.tocsr()
    single, ddp = ws["single"], ws["ddp"]
    assert (single.indptr == ddp.indptr).all() and (single.indices == ddp.indices).all()
    moved = abs(single - original).max()
    differ = abs(ddp - single).max()
    assert moved > 1e-3, moved  # W learned: the comparison below is not of two untouched copies
    torch.testing.assert_close(torch.from_numpy(ddp.data), torch.from_numpy(single.data), rtol=1e-4, atol=1e-6)
    print(f"learned W: moved {moved:.3g} from the original, two processes vs one differ by {differ:.3g}")
