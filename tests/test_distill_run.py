"""End-to-end distillation on CPU: tiny random Llama/Qwen3 models with the real tokenizers, GSM8K text,
every loss mode, two teachers, exact resume, config errors before any model loads, and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import torch
import yaml
from conftest import gsm8k, vocab
from loss_fixtures import distill_assets

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.models import tiny_model
from xtoken_align.distill.runner import DistillRunner
from xtoken_align.errors import XTokenError
from xtoken_align.formats import save_projection
from xtoken_align.projection import build_projection

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    return distill_assets(tmp_path_factory.mktemp("distill"), gsm8k("train")[:48])


def config(
    assets: dict[str, Path], out: Path, teachers: list[dict], loss: dict | None = None, **training
) -> DistillConfig:
    return DistillConfig.from_dict(
        {
            "student": {"model": str(assets["student"])},
            "teachers": teachers,
            "data": {"train": [str(assets["data"])], "max_length": 64},
            "training": {"steps": 8, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1, "seed": 0, **training},
            "loss": {"topk": 2048, "tail": 1024, **(loss or {})},
            "output": {"dir": str(out), "save_every": 4},
            "eval": {"texts": 4},
        }
    )


def qwen(assets, loss: str, **extra) -> dict:
    projection = str(assets["w"]) if loss in ("p_kl", "h_kl") else None
    return {"name": "qwen", "model": str(assets["qwen"]), "loss": loss, "projection": projection, **extra}


def losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", ["p_kl", "h_kl", "gold", "uld"])
def test_each_cross_tokenizer_loss_trains(assets, tmp_path: Path, loss: str) -> None:
    summary = DistillRunner(config(assets, tmp_path, [qwen(assets, loss)])).run()
    curve = losses(tmp_path)
    assert len(curve) == 8 and all(r["kd"] == r["kd"] and r["ce"] == r["ce"] for r in curve)  # finite
    assert curve[-1]["ce"] < curve[0]["ce"]  # the student learns
    assert summary.eval["next_token"]["other"]["tokens"] > 0
    assert (tmp_path / "metrics.html").is_file() and (tmp_path / "config.yaml").is_file()
    checkpoint = tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text()
    assert DistillConfig.from_dict(yaml.safe_load((checkpoint / "config.yaml").read_text())).teachers[0].loss == loss
    assert all(0.01 <= r["kd_scale"] <= 100 for r in curve)  # |ce| / |kd| within the configured bounds
    if loss == "p_kl":  # teacher mass that W cannot reach, logged for the user
        assert all(0 < r["unreachable/qwen"] < 1 for r in curve)


def test_padded_output_layers_give_the_same_kd(assets, tmp_path: Path) -> None:
    """Real checkpoints pad their output layers (Qwen3 151,936 rows for 151,669 tokens): the runner passes
    the tokenizers' sizes, so loud padded rows of the student and the teacher change no KD value."""
    from safetensors.torch import load_file, save_file

    root, g = assets["root"], torch.Generator().manual_seed(0)
    padded = {
        "student": tiny_model("llama", vocab("llama3"), root / "student-pad", seed=1, output_rows=128_320),
        "qwen": tiny_model("qwen3", vocab("qwen3"), root / "qwen-pad", seed=2, output_rows=151_936),
    }
    for name, folder in padded.items():  # the real rows are the unpadded model's, the padding loud
        wide = load_file(folder / "model.safetensors")
        for key, value in load_file(assets[name] / "model.safetensors").items():
            extra = wide[key].shape[0] - value.shape[0] if value.ndim else 0
            wide[key] = torch.cat([value, 3.0 * torch.randn(extra, *value.shape[1:], generator=g)]) if extra else value
        save_file(wide, folder / "model.safetensors", metadata={"format": "pt"})
    for loss in ("h_kl", "uld"):
        first = {}
        for kind, where in (("exact", assets), ("padded", {**assets, **padded})):
            out = tmp_path / f"{loss}-{kind}"
            DistillRunner(config(where, out, [qwen(where, loss)], steps=1)).run()
            first[kind] = losses(out)[0]
        assert first["padded"]["kd"] == pytest.approx(first["exact"]["kd"], rel=1e-4)


@pytest.mark.parametrize("loss", ["p_kl", "h_kl"])
def test_hidden_state_chunks_follow_the_logit_curve(assets, tmp_path: Path, loss: str) -> None:
    """loss.chunk_positions (hidden states, 24 positions at a time: uneven splits of 4 x 64) trains along
    the same curve as full logits (chunk_positions 0), with a learned W and a same-tokenizer teacher."""
    teachers = [
        qwen(assets, loss, weight=0.8, learn_w=loss == "p_kl"),
        {"name": "llama", "model": str(assets["llama_teacher"]), "loss": "kd", "weight": 0.2},
    ]
    curves = {}
    for chunk in (0, 24):
        out = tmp_path / f"chunk-{chunk}"
        DistillRunner(config(assets, out, teachers, loss={"chunk_positions": chunk}, steps=4)).run()
        curves[chunk] = losses(out)
    for logit, chunked in zip(curves[0], curves[24], strict=True):
        for key in ("loss", "ce", "kd", "kd/qwen", "kd/llama", "grad_norm"):
            assert chunked[key] == pytest.approx(logit[key], rel=1e-4, abs=1e-5), key


def test_same_tokenizer_kd_and_two_teachers_with_learned_w(assets, tmp_path: Path) -> None:
    teachers = [
        qwen(assets, "p_kl", weight=0.8, learn_w=True),
        {"name": "llama", "model": str(assets["llama_teacher"]), "loss": "kd", "weight": 0.2},
    ]
    DistillRunner(config(assets, tmp_path, teachers)).run()
    curve = losses(tmp_path)
    assert {"kd/qwen", "kd/llama"} <= curve[0].keys()
    assert curve[-1]["loss"] < curve[0]["loss"]
    from xtoken_align.formats import load_projection

    learned = load_projection(tmp_path / "W-learned-qwen.safetensors", vocab("llama3"), vocab("qwen3"))
    original = load_projection(assets["w"])
    assert learned.matrix.nnz == original.matrix.nnz and (learned.matrix != original.matrix).nnz > 0
    assert learned.history[-1]["action"] == "learned"


def test_resume_gives_the_same_next_losses(assets, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    DistillRunner(config(assets, straight, [qwen(assets, "p_kl")])).run()
    paused = tmp_path / "paused"
    first = DistillRunner(config(assets, paused, [qwen(assets, "p_kl")])).run(stop_after=4)
    assert first.stopped_at == 4
    DistillRunner(config(assets, paused, [qwen(assets, "p_kl")])).run(resume=True)
    a, b = losses(straight), losses(paused)
    assert [r["step"] for r in b] == list(range(1, 9))
    for x, y in zip(a[4:], b[4:], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-6)


def test_bad_configs_fail_before_models_load(assets, tmp_path: Path) -> None:
    missing_w = config(assets, tmp_path, [qwen(assets, "p_kl") | {"projection": None}])
    with pytest.raises(XTokenError, match="needs a W file"):
        DistillRunner(missing_w)
    wrong_w = tmp_path / "W-l2.safetensors"
    save_projection(build_projection(vocab("llama2"), vocab("qwen3"), progress=False), wrong_w)
    with pytest.raises(XTokenError, match="student tokenizer"):
        DistillRunner(config(assets, tmp_path, [qwen(assets, "p_kl") | {"projection": str(wrong_w)}]))
    with pytest.raises(XTokenError, match="loss kd needs the student's tokenizer"):
        DistillRunner(config(assets, tmp_path, [qwen(assets, "kd")]))
    with pytest.raises(XTokenError, match="teachers.0.loss"):
        config(assets, tmp_path, [qwen(assets, "p_kl") | {"loss": "magic"}])


@cache
def _torchrun() -> str:
    return str(Path(sys.executable).with_name("torchrun"))


def test_a_step_is_normalised_by_its_counts_not_by_micro_batch_means(assets, tmp_path: Path) -> None:
    """`train_step` on one micro-batch of 4 samples and on two of 2 (one with a short text: other token
    and chunk counts) gives the same update: per-token CE and per-chunk KD over the step, H-KL and
    same-tokenizer KD, fixed combination (SGD, lr 1, no clipping: the update is the gradient)."""
    from transformers import AutoModelForCausalLM

    from xtoken_align.distill.data import collate, training_set
    from xtoken_align.distill.distributed import Distributed
    from xtoken_align.distill.student_terms import StudentTerms
    from xtoken_align.distill.teachers import prepare_teachers
    from xtoken_align.distill.training_step import term_counts, train_step

    teachers = [qwen(assets, "h_kl"), {"name": "llama", "model": str(assets["llama_teacher"]), "loss": "kd"}]
    cfg = config(assets, assets["root"] / "unused", teachers, {"combine": "fixed"}, clip=1e9)
    plans = prepare_teachers(cfg, vocab("llama3"))
    for plan in plans:
        plan.model = AutoModelForCausalLM.from_pretrained(plan.spec.model, dtype=torch.float32).eval()
    texts = gsm8k("train")[:4]
    texts[1] = texts[1][:60]  # a short text: the halves hold other token and chunk counts
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    dataset = training_set([str(data)], None, 64, vocab("llama3"), {"qwen": plans[0].vocab, "llama": None})
    items = [dataset[i] for i in range(4)]
    whole, halves = collate(items), [collate(items[:2]), collate(items[2:])]
    counts = [term_counts(h, plans) for h in halves]
    assert all(a != b for a, b in zip(*counts, strict=True)), counts  # tokens and chunks differ between halves
    updates = []
    for batches in ([whole], halves):
        model = AutoModelForCausalLM.from_pretrained(assets["student"], dtype=torch.float32)
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        terms = StudentTerms(model, cfg.loss.chunk_positions)
        optimizer = torch.optim.SGD(terms.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        train_step(0, batches, terms, plans, optimizer, scheduler, cfg, Distributed.from_env(), False)
        updates.append({k: before[k] - p.detach() for k, p in model.named_parameters()})
    for key in updates[0]:
        torch.testing.assert_close(updates[1][key], updates[0][key], rtol=1e-4, atol=1e-7, msg=key)


def test_torchrun_two_processes_match_one_with_double_accumulation(assets, tmp_path: Path) -> None:
    """DDP (gloo, CPU): 2 ranks x accumulation 1 follow 1 process x accumulation 2, with the losses from
    hidden states in chunks of 40 positions (the output layer's gradient reaches DDP's hooks)."""
    runs = {}
    for name, procs, accum in (("single", 1, 2), ("ddp", 2, 1)):
        out = tmp_path / name
        cfg = config(assets, out, [qwen(assets, "p_kl")], {"chunk_positions": 40}, steps=4, grad_accum=accum,
                     batch_size=2)  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(cfg.dump())
        command = [_torchrun(), f"--nproc_per_node={procs}", "--master_port", str(29500 + len(runs)), "-m",
                   "xtoken_align.cli", "distill", "--config", str(path)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = losses(out)
    for single, ddp in zip(runs["single"], runs["ddp"], strict=True):
        assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-4, abs=1e-5)
        assert ddp["ce"] == pytest.approx(single["ce"], rel=1e-4, abs=1e-5)


def test_cli_reports_the_run_as_one_json_document(assets, tmp_path: Path) -> None:
    from xtoken_align.distill.summary import RunSummary, run_text

    out = tmp_path / "run"
    path = tmp_path / "run.yaml"
    path.write_text(config(assets, out, [qwen(assets, "p_kl")], steps=2).dump())
    command = [sys.executable, "-m", "xtoken_align.cli", "distill", "--config", str(path), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = RunSummary.model_validate_json(result.stdout)  # the whole of stdout, nothing else
    assert (summary.output, summary.steps, summary.stopped_at) == (str(out), 2, None)
    assert summary.last["loss"] == losses(out)[-1]["loss"] and "next_token" in summary.eval
    text = run_text(summary)
    assert text.startswith("finished at step 2") and f"outputs in {out}" in text
