"""The numerals study's oracle teacher (experiments/numerals/oracle.py), cached by the cache writer from
the module (`cache_teachers(..., models=)`): a valid teacher cache that the runner trains from, whose
p̂ puts MASS on the true next teacher token at every position and spreads the rest uniformly."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import gsm8k, vocab

from xtoken_align.distill.cache.reader import TeacherCache
from xtoken_align.distill.cache.writer import cache_teachers
from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.models import tiny_model
from xtoken_align.distill.runner import DistillRunner
from xtoken_align.formats import save_projection
from xtoken_align.projection import build_projection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "numerals"))

from oracle import MASS, OracleTeacher  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_oracle_logits_put_the_mass_on_the_next_token() -> None:
    ids = torch.tensor([[5, 3, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    p = OracleTeacher(10, 0.9)(input_ids=ids, attention_mask=mask).logits.softmax(-1)
    assert torch.allclose(p.sum(-1), torch.ones(1, 4))
    for t, nxt in enumerate([3, 7]):
        assert p[0, t, nxt].item() == pytest.approx(0.9) and p[0, t, 0].item() == pytest.approx(0.1 / 9)
    assert torch.allclose(p[0, 2:], torch.full((2, 10), 0.1))  # no next token: uniform


def test_the_oracle_cache_is_a_cache_the_runner_trains_from(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in gsm8k("train")[:8]))
    student, teacher = vocab("llama3"), vocab("qwen3")
    w = save_projection(build_projection(student, teacher, progress=False), tmp_path / "W.safetensors")
    model = tiny_model("llama", student, tmp_path / "student", seed=1)

    def config(spec: dict, out: Path) -> DistillConfig:
        return DistillConfig.from_dict({
            "student": {"model": str(model)}, "teachers": [spec],
            "data": {"train": [str(data)], "max_length": 24},
            "training": {"steps": 2, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
            "loss": {"topk": 2048, "tail": 1024}, "output": {"dir": str(out), "save_every": 2}, "eval": {"texts": 0},
        })  # fmt: skip

    spec = {"name": "oracle", "model": "oracle:test", "tokenizer": "demo:qwen3", "loss": "p_kl", "projection": str(w)}
    oracle = OracleTeacher(teacher.size, MASS)
    report = cache_teachers(config(spec, tmp_path / "cache-run"), tmp_path / "cache", topk=16, sampled=16,
                            logp_dtype="float32", models={"oracle": oracle})  # fmt: skip
    folder = Path(report.teachers[0].folder)
    cache = TeacherCache(folder)
    assert cache.manifest.teacher_model == "oracle:test" and cache.manifest.samples == 8
    for index in range(cache.manifest.samples):
        ids = torch.from_numpy(cache._ids(index, "input_ids"))
        stored = cache.signal(torch.tensor([index]), len(ids), torch.device("cpu"))
        p = stored.dense().exp()  # (L, V_T) p̂
        # float32 log_softmax over Qwen3's 151,669 ids (the writer's) rounds by about 2e-4
        assert torch.allclose(p.sum(-1), torch.ones(len(ids)), atol=1e-3)
        rows = torch.arange(len(ids) - 1)
        assert torch.allclose(p[rows, ids[1:]], torch.full((len(ids) - 1,), MASS), rtol=1e-3)
        off = p[rows].clone()
        off[rows, ids[1:]] = 0.0
        assert off.max().item() < 1 - MASS  # the rest is spread, nothing else near the peak
        second = stored.logp[0, 0, 1].exp().item()  # the second top-K slot: a uniform share
        assert second == pytest.approx((1 - MASS) / (teacher.size - 1), rel=1e-3)
    cached = {k: v for k, v in spec.items() if k != "model"} | {"cache": str(folder)}
    DistillRunner(config(cached, tmp_path / "run")).run()  # the runner accepts it (manifest checks, training)
    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(math.isfinite(r["kd"]) and math.isfinite(r["ce"]) for r in steps)
