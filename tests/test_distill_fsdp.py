"""The runner under FSDP2 (`training.fsdp: true`, `torchrun --nproc_per_node=2`, gloo on CPU): the
same loss curve as one process with twice the accumulation, sharded checkpoints that resume exactly,
evaluation on the sharded student and a Hugging Face student folder at the end; and the gradient of
the chunked losses through a sharded output layer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import gsm8k
from loss_fixtures import distill_assets

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.runner import DistillRunner
from xtoken_align.errors import XTokenError

pytestmark = pytest.mark.slow

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
REL, ABS = 1e-5, 1e-6  # float32: summation order differs (reduce-scatter vs. one process's accumulation)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    return distill_assets(tmp_path_factory.mktemp("fsdp"), gsm8k("train")[:24])


def distill(assets: dict[str, Path], out: Path, procs: int, accum: int, *flags: str, port: int) -> Path:
    """One `xtoken-align distill` run under torchrun: 4 steps of 8 samples (micro-batches of 2), a P-KL
    teacher with learned W, losses from hidden states in chunks of 40 positions."""
    teacher = {"name": "qwen", "model": str(assets["qwen"]), "loss": "p_kl", "projection": str(assets["w"])}
    training = {"steps": 4, "batch_size": 2, "grad_accum": accum, "lr": 3e-3, "warmup_steps": 1, "seed": 0}
    cfg = DistillConfig.from_dict(
        {
            "student": {"model": str(assets["student"])},
            "teachers": [teacher | {"learn_w": True}],
            "data": {"train": [str(assets["data"])], "max_length": 48},
            "training": training | {"fsdp": procs > 1},
            "loss": {"topk": 2048, "chunk_positions": 40},
            "output": {"dir": str(out), "save_every": 2},
            "eval": {"texts": 2, "gsm8k_problems": 1, "max_new_tokens": 4},
        }
    )
    path = out.with_suffix(".yaml")
    path.write_text(cfg.dump())
    command = [TORCHRUN, f"--nproc_per_node={procs}", "--master_port", str(port), "-m", "xtoken_align.cli",
               "distill", "--config", str(path), *flags]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def curve(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(assets, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "single": distill(assets, root / "single", 1, 4, port=29541),
        "fsdp": distill(assets, root / "fsdp", 2, 2, port=29542),  # accumulation with gradient sync off
    }


def test_fsdp_two_processes_match_one_with_double_accumulation(runs) -> None:
    """2 ranks x accumulation 2 follow 1 process x accumulation 4: the same 8 samples per step."""
    single, fsdp = curve(runs["single"]), curve(runs["fsdp"])
    assert [r["step"] for r in fsdp] == [1, 2, 3, 4]
    for one, two in zip(single, fsdp, strict=True):
        for key in ("loss", "ce", "kd", "grad_norm"):
            assert two[key] == pytest.approx(one[key], rel=REL, abs=ABS), (key, one, two)
    assert fsdp[-1]["loss"] < fsdp[0]["loss"]


def test_fsdp_exports_a_hugging_face_student_and_evaluates(runs) -> None:
    """The last checkpoint's `student/` (gathered on rank 0) holds the single run's weights; the
    evaluation ran on the sharded student (next-token report, greedy generation)."""
    from transformers import AutoModelForCausalLM

    summaries = {name: json.loads((out / "summary.json").read_text()) for name, out in runs.items()}
    students = {n: AutoModelForCausalLM.from_pretrained(s["artifacts"]["student"]) for n, s in summaries.items()}
    files = {n: Path(s["artifacts"]["student"]) / "model.safetensors" for n, s in summaries.items()}
    assert files["single"].stat().st_size == files["fsdp"].stat().st_size  # tied weights saved once
    one, two = (dict(students[n].named_parameters()) for n in ("single", "fsdp"))
    assert one.keys() == two.keys()
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-4, atol=1e-6, msg=name)
    shards = sorted(p.name for p in (runs["fsdp"] / "checkpoints" / "step-0000002" / "sharded").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # one file per rank
    assert not (runs["fsdp"] / "checkpoints" / "step-0000002" / "student").exists()  # sharded only
    assert summaries["fsdp"]["eval"]["gsm8k"]["problems"] == 1
    assert summaries["fsdp"]["eval"]["next_token"] == summaries["single"]["eval"]["next_token"]
    assert (runs["fsdp"] / "W-learned-qwen.safetensors").is_file()


def test_fsdp_resume_from_a_sharded_checkpoint_gives_the_same_losses(assets, runs, tmp_path: Path) -> None:
    paused = distill(assets, tmp_path / "paused", 2, 2, "--stop-after", "2", port=29543)
    distill(assets, paused, 2, 2, "--resume", port=29544)
    straight, resumed = curve(runs["fsdp"]), curve(paused)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight[2:], resumed[2:], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=REL, abs=ABS)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=REL, abs=ABS)


FSDP_CHECK = """
import sys, torch, torch.distributed as dist
from transformers import AutoModelForCausalLM
from xtoken_align.distill.losses import KDLoss
from xtoken_align.distill.sharding import shard_student
from xtoken_align.distill.student_terms import StudentTerms, TeacherInput
dist.init_process_group("gloo")
rank = dist.get_rank()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
reference = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
g = torch.Generator().manual_seed(0)
v = model.config.vocab_size
ids, teacher = torch.randint(0, v, (4, 24), generator=g), 3 * torch.randn(4, 24, v, generator=g)
mask, labels, chunks = torch.ones_like(ids), torch.roll(ids, -1, 1), torch.zeros_like(ids)
labels[:, -1] = -100

def terms(module, rows):
    kd = [TeacherInput(KDLoss(size=v), teacher[rows], chunks[rows], chunks[rows], labels[rows])]
    ce, kds = module(ids[rows], mask[rows], labels[rows], kd)
    return ce + 0.5 * kds[0]

wrapped = shard_student(StudentTerms(model, chunk_positions=10))
terms(wrapped, slice(2 * rank, 2 * rank + 2)).backward()  # FSDP averages the two ranks' gradients
torch.optim.SGD(wrapped.parameters(), lr=1.0).step()
unwrapped = StudentTerms(reference, chunk_positions=0)
((terms(unwrapped, slice(0, 2)) + terms(unwrapped, slice(2, 4))) / 2).backward()
assert reference.lm_head.weight is reference.model.embed_tokens.weight  # tied: both uses reach one weight
for (name, after), before in zip(model.named_parameters(), reference.parameters(), strict=True):
    change = before.detach() - after.detach().full_tensor()  # the sharded parameter, gathered
    torch.testing.assert_close(change, before.grad, atol=2e-6, rtol=1e-4, msg=name)
print("fsdp gradients match")
"""


def test_fsdp_gradients_of_the_chunked_losses_match_one_process(assets, tmp_path: Path) -> None:
    """FSDP2 (gloo, CPU, 2 ranks): CE + KD from hidden states in chunks of 10 positions, the output layer
    used inside the wrapped forward, give the one-process logit-based gradient (tied embeddings)."""
    script = tmp_path / "fsdp_check.py"
    script.write_text(FSDP_CHECK)
    command = [TORCHRUN, "--nproc_per_node=2", "--master_port", "29507", str(script), str(assets["student"])]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fsdp gradients match" in result.stdout


def test_a_sharded_checkpoint_is_refused_without_fsdp(runs, tmp_path: Path) -> None:
    out = shutil.copytree(runs["fsdp"], tmp_path / "run")
    settings = yaml.safe_load((out / "config.yaml").read_text())
    settings["output"]["dir"] = str(out)
    with pytest.raises(XTokenError, match="saved with training.fsdp"):
        DistillRunner(DistillConfig.from_dict(settings)).run(resume=True)
