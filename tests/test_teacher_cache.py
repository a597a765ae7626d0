"""Teacher caches (xtoken_align/distill/cache/): tiny random Llama/Qwen3 models with the real tokenizers.

A full-vocabulary cache without sampling gives the live losses exactly (every loss); a killed
`cache-teacher` resumes to the same bytes; caches made for other data, max_length, tokenizer or W are
refused in one line; a cached teacher trains with its model folder gone, beside a live teacher.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import gsm8k, vocab

from xtoken_align.config import BuildConfig
from xtoken_align.distill.cache.reader import TeacherCache
from xtoken_align.distill.cache.signal import rebuild, slots, sparse_signal
from xtoken_align.distill.cache.writer import cache_teachers
from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.data import collate, training_set
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher
from xtoken_align.distill.models import tiny_model
from xtoken_align.distill.runner import DistillRunner
from xtoken_align.distill.teachers import prepare_teachers
from xtoken_align.errors import XTokenError
from xtoken_align.formats import save_projection
from xtoken_align.projection import build_projection

pytestmark = pytest.mark.slow
LOSSES = ("p_kl", "h_kl", "gold", "uld")
AGGREGATIONS = ("mean", "first", "chain")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cache")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in gsm8k("train")[:24]))
    other = root / "other.jsonl"
    other.write_text("".join(json.dumps({"text": t}) + "\n" for t in gsm8k("train")[24:48]))
    student, teacher = vocab("llama3"), vocab("qwen3")
    narrower = build_projection(student, teacher, BuildConfig(top_k=2), progress=False)
    return {
        "data": data,
        "other": other,
        "w": save_projection(build_projection(student, teacher, progress=False), root / "W.safetensors"),
        "w2": save_projection(narrower, root / "W2.safetensors"),
        "student": tiny_model("llama", student, root / "student", seed=1),
        "qwen": tiny_model("qwen3", teacher, root / "qwen", seed=2, output_rows=151_936),
        "llama_teacher": tiny_model("llama", student, root / "llama-teacher", hidden=96, seed=3),
        "root": root,
    }  # fmt: skip


def run_config(assets, out: Path, teachers: list[dict], limit: int = 4, max_length: int = 16, **loss) -> DistillConfig:
    return DistillConfig.from_dict(
        {
            "student": {"model": str(assets["student"])},
            "teachers": teachers,
            "data": {"train": [str(assets["data"])], "max_length": max_length, "limit": limit},
            "training": {"steps": 6, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
            "loss": {"topk": 2048, "tail": 1024, **loss},
            "output": {"dir": str(out), "save_every": 6},
            "eval": {"texts": 2},
        }
    )


def qwen(assets, loss: str, **extra) -> dict:
    return {"name": "qwen", "model": str(assets["qwen"]), "loss": loss, "projection": str(assets["w"]), **extra}


def llama(assets, **extra) -> dict:
    return {"name": "llama", "model": str(assets["llama_teacher"]), "loss": "kd", **extra}


def cached(spec: dict, folder: Path) -> dict:
    return {**{k: v for k, v in spec.items() if k != "model"}, "cache": str(folder)}


@pytest.fixture(scope="module")
def full_caches(assets) -> Path:
    """Both teachers cached with K = the whole vocabulary, S = 0, float32 log-probs."""
    out = assets["root"] / "full"
    config = run_config(assets, out / "run", [qwen(assets, "p_kl"), llama(assets)])
    cache_teachers(config, out, topk=1 << 20, sampled=0, logp_dtype="float32", shard_samples=3)
    return out


@pytest.mark.parametrize(("loss", "aggregation"), [(x, a) for x in LOSSES for a in AGGREGATIONS] + [("kd", "mean")])
def test_a_full_cache_gives_the_live_loss(assets, full_caches, loss: str, aggregation: str) -> None:
    spec = llama(assets) if loss == "kd" else qwen(assets, loss)
    options = {"topk": 1 << 20, "aggregation": aggregation}  # P-KL on every column: no micro-batch top-k choice
    live_config = run_config(assets, full_caches / "run", [spec], **options)
    cache_config = run_config(assets, full_caches / "run", [cached(spec, full_caches / spec["name"])], **options)
    student = vocab("llama3")
    (live,), (cache,) = prepare_teachers(live_config, student), prepare_teachers(cache_config, student)
    vocabs = {spec["name"]: None if live.same_tokenizer else live.vocab}
    dataset = training_set([str(assets["data"])], 4, 16, student, vocabs)
    cache.cache.verify(dataset, spec["name"])
    batch, name = collate(dataset.samples), spec["name"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
    ids, mask = batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]
    teacher_logits = {"live": model(input_ids=ids, attention_mask=mask).logits.detach()}
    teacher_logits["cache"] = cache.teacher_output(ids, mask, batch["index"])
    z = torch.randn(*batch["input_ids"].shape, student.size, generator=torch.Generator().manual_seed(0))
    values, grads = {}, {}
    for kind, plan in (("live", live), ("cache", cache)):
        values[kind], grads[kind] = _value_and_gradient(plan, teacher_logits[kind], batch, name, z)
    assert torch.isfinite(values["cache"]) and torch.isfinite(grads["cache"]).all() and values["live"] != 0
    assert values["cache"] == pytest.approx(float(values["live"]), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(grads["cache"], grads["live"], rtol=1e-4, atol=1e-7)


def _value_and_gradient(plan, teacher_logits, batch: dict, name: str, z: torch.Tensor):
    ids, mask = batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]
    z_s = z.clone().requires_grad_(True)
    following = torch.where(mask[:, 1:].bool(), ids[:, 1:], -100)
    t_labels = torch.cat([following, torch.full_like(ids[:, :1], -100)], 1)
    value = plan.loss(z_s, teacher_logits, batch["student_chunk"][name], batch["teacher_chunk"][name],
                      batch["labels"], teacher_labels=t_labels)  # fmt: skip
    value.backward()
    return value.detach(), z_s.grad


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("loss", [*LOSSES, "kd"])
def test_every_loss_reads_a_sparse_cache_without_nan(assets, sparse_cache, loss: str, aggregation: str) -> None:
    """−inf teacher logits where nothing is stored: 0·log 0 = 0 in values and gradients; P-KL's few
    columns (topk 8) leave rows with no stored id among them. The sparse read (`SparseTeacher`) gives
    the loss of its densified (B, T, V_T) log p̂ once the drawn ids' own log p is left out; with it, the
    value is corrected (no gradient) and P-KL ranks its columns by log p instead of log p̂."""
    spec = llama(assets) if loss == "kd" else qwen(assets, loss)
    spec = cached(spec, sparse_cache / spec["name"])
    config = run_config(assets, sparse_cache / "run", [spec], limit=12, max_length=32, topk=8, aggregation=aggregation)
    student = vocab("llama3")
    (plan,) = prepare_teachers(config, student)
    dataset = training_set(
        [str(assets["data"])], 12, 32, student, {plan.name: None if plan.same_tokenizer else plan.vocab}
    )
    batch = collate(dataset.samples[:4])
    ids, mask = batch["teacher_input_ids"][plan.name], batch["teacher_attention_mask"][plan.name]
    sparse = plan.teacher_output(ids, mask, batch["index"])
    dense = sparse.dense().reshape(*ids.shape, -1)
    assert bool(torch.isinf(dense).any()) and dense.shape[-1] == plan.vocab.size
    z = torch.randn(*batch["input_ids"].shape, student.size, generator=torch.Generator().manual_seed(0))
    value, grad = _value_and_gradient(plan, sparse, batch, plan.name, z)
    assert torch.isfinite(value) and value != 0 and torch.isfinite(grad).all() and grad.abs().sum() > 0
    dense_value, dense_grad = _value_and_gradient(plan, dense, batch, plan.name, z)
    plain, plain_grad = _value_and_gradient(plan, dataclasses.replace(sparse, log_ratio=None), batch, plan.name, z)
    assert plain == pytest.approx(float(dense_value), rel=1e-6)
    torch.testing.assert_close(plain_grad, dense_grad, rtol=1e-5, atol=1e-8)
    if loss != "p_kl":  # the same columns: the correction is value-only
        torch.testing.assert_close(grad, dense_grad, rtol=1e-5, atol=1e-8)
    if loss != "uld":  # a KL term: the drawn ids' lumpy p̂ is corrected (ULD has none)
        assert float(value) != pytest.approx(float(plain), rel=1e-4)
    else:
        assert value == pytest.approx(float(plain), rel=1e-6)


def _kl_values(logp: torch.Tensor, q: torch.Tensor, loss, seeds: int, topk: int, sampled: int):
    """Values of `loss(q, teacher)` over `seeds` cached draws of the teacher `logp`, with and without
    the correction, and the live value."""
    following = torch.full((len(logp),), -1)
    rows = {"corrected": [], "plain": []}
    for seed in range(seeds):
        signal = sparse_signal(logp, following, topk, sampled, torch.Generator().manual_seed(seed))
        ids, stored, ratio = slots(signal, following, sampled)
        teacher = SparseTeacher(ids, stored, logp.shape[-1], ratio)
        rows["corrected"].append(float(loss(q, teacher)))
        rows["plain"].append(float(loss(q, dataclasses.replace(teacher, log_ratio=None))))
    return {k: torch.tensor(v) for k, v in rows.items()}, float(loss(q, logp))


def test_a_cached_kl_value_is_unbiased_with_the_drawn_ids_own_log_p() -> None:
    """p̂ gives a drawn id the mass of many (r·count/S), so Σ p̂ log p̂ overstates the teacher term and a
    KL from it runs high: in the numerals study by about 0.5 nats, enough to change the dynamic CE/KD
    scale fourfold. With the drawn ids' stored log p the KD value's mean over draws is the live value
    (within 4 standard errors); without, it is several nats·1e-1 too high. P-KL over all of W's
    columns and H-KL's common-set term are corrected the same way (checked: closer than without)."""
    from xtoken_align.distill.losses.projected import PKLLoss
    from xtoken_align.distill.losses.same_tokenizer import KDLoss
    from xtoken_align.distill.sparse_w import ProjectionW

    g = torch.Generator().manual_seed(3)
    logp = torch.log_softmax(torch.randn(6, 400, generator=g) * 1.5, -1)  # a long tail: entropy ≈ 4.7 nats
    q = torch.randn(6, 400, generator=g)
    found, live = _kl_values(logp, q, KDLoss(), 300, 8, 12)
    error = found["corrected"].std() / len(found["corrected"]) ** 0.5
    assert abs(float(found["corrected"].mean()) - live) < 4 * error
    assert float(found["plain"].mean()) - live > 0.2  # the uncorrected value: biased high
    # P-KL with a one-to-one W on every column, each position its own chunk
    w = ProjectionW(torch.arange(401), torch.arange(400), torch.ones(400), (400, 400))  # CSR: identity
    chunks = torch.arange(6).unsqueeze(0)
    pkl = PKLLoss(w, topk=400)
    pkl_value = lambda z, t: pkl(z.unsqueeze(0), t if isinstance(t, SparseTeacher) else t.unsqueeze(0), chunks, chunks)  # noqa: E731
    found, live = _kl_values(logp, q, pkl_value, 100, 8, 12)
    assert abs(float(found["corrected"].mean()) - live) < abs(float(found["plain"].mean()) - live) / 4


def test_p_kl_on_columns_picked_from_the_stored_ids_reads_their_own_p() -> None:
    """P-KL's top-k columns come from the ids stored, so p̂ would put the drawn ids' whole tail mass on
    them: a near-flat teacher would look peaked there (about 2 nats of KL against a near-flat student
    where live P-KL reads about 0.01). Each stored id's own p, and the unstored mass spread evenly over
    the columns not stored, read the live value within 0.01; for a peakier teacher (whose live top-k
    columns differ from the stored ids) at least twice as close as p̂."""
    from xtoken_align.distill.losses.projected import PKLLoss
    from xtoken_align.distill.sparse_w import ProjectionW

    size = 4000
    w = ProjectionW(torch.arange(size + 1), torch.arange(size), torch.ones(size), (size, size))  # identity
    chunks = torch.arange(6).unsqueeze(0)
    pkl = PKLLoss(w, topk=1000)  # fewer than W reaches: columns picked, all of the ~120 stored ids
    pkl_value = lambda z, t: pkl(z.unsqueeze(0), t if isinstance(t, SparseTeacher) else t.unsqueeze(0), chunks, chunks)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    for spread in (0.1, 1.5):
        logp = torch.log_softmax(torch.randn(6, size, generator=g) * spread, -1)
        q = torch.randn(6, size, generator=g) * 0.1
        found, live = _kl_values(logp, q, pkl_value, 10, 8, 12)
        error, biased = abs(float(found["corrected"].mean()) - live), abs(float(found["plain"].mean()) - live)
        assert error < biased / 2, spread
        assert bool((found["corrected"] >= 0).all())  # a KL
        if spread == 0.1:  # flat: live and cached compare different columns, with the same flat values
            assert error < 0.01 and biased > 1.0


def test_the_sampled_tail_is_unbiased_and_the_rebuilt_distribution_sums_to_one() -> None:
    logp = torch.log_softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(1)) * 2, -1)
    following = torch.tensor([4, 7, -1])
    runs = []
    for seed in range(400):
        signal = sparse_signal(logp, following, 5, 8, torch.Generator().manual_seed(seed))
        runs.append(rebuild(signal, following, 50, 8).exp())
    assert torch.allclose(runs[0].sum(-1), torch.ones(3), atol=1e-5)
    mean = torch.stack(runs).mean(0)
    assert torch.allclose(mean, logp.exp(), atol=0.01)  # E[p̂] = p
    top = torch.topk(logp, 5, -1).indices
    assert torch.equal(runs[0].gather(1, top), logp.exp().gather(1, top))  # the top-K exact
    assert runs[0][0, 4] == logp[0, 4].exp() and runs[0][1, 7] == logp[1, 7].exp()  # so is the next token


def _cache_command(path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "xtoken_align.cli", "cache-teacher", "--config", str(path), "-o", str(out),
            "--topk", "16", "--samples", "8", "--shard-samples", "1", "--json"]  # fmt: skip


def test_a_killed_cache_run_resumes_to_the_same_bytes(assets, tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(run_config(assets, tmp_path / "run", [qwen(assets, "h_kl")], limit=24, max_length=64).dump())
    whole = subprocess.run(_cache_command(path, tmp_path / "whole"), capture_output=True, text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = subprocess.Popen(_cache_command(path, tmp_path / "killed"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    first = tmp_path / "killed" / "qwen" / "shard-00000.safetensors"
    deadline = time.monotonic() + 600
    while not first.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    shards = sorted((tmp_path / "whole" / "qwen").glob("shard-*.safetensors"))
    assert len(shards) == 24
    left = sorted((tmp_path / "killed" / "qwen").glob("shard-*.safetensors"))
    assert 1 <= len(left) < 24  # stopped part-way
    with pytest.raises(XTokenError, match="unfinished"):
        TeacherCache(tmp_path / "killed" / "qwen")
    resumed = subprocess.run(_cache_command(path, tmp_path / "killed"), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)["teachers"][0]
    assert report["reused"] == len(left) and report["written"] == 24 - len(left) and report["tokens_per_s"] > 0
    for shard in shards:
        assert (tmp_path / "killed" / "qwen" / shard.name).read_bytes() == shard.read_bytes(), shard.name
    assert not list((tmp_path / "killed" / "qwen").glob(".*.tmp"))  # a half-written shard is never kept


def test_under_torchrun_each_rank_caches_its_share(assets, tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(run_config(assets, tmp_path / "run", [qwen(assets, "h_kl")], limit=6, max_length=32).dump())
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [
        torchrun,
        "--nproc_per_node=2",
        "--master_port",
        "29531",
        "-m",
        *_cache_command(path, tmp_path / "ddp")[2:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    report = json.loads(ddp.stdout)["teachers"][0]  # rank 0's share: shards 0, 2, 4
    assert (report["shards"], report["written"]) == (6, 3)
    single = subprocess.run(_cache_command(path, tmp_path / "one"), capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    for shard in sorted((tmp_path / "one" / "qwen").glob("shard-*.safetensors")):
        assert (tmp_path / "ddp" / "qwen" / shard.name).read_bytes() == shard.read_bytes(), shard.name


@pytest.fixture(scope="module")
def sparse_cache(assets) -> Path:
    out = assets["root"] / "sparse"
    config = run_config(assets, out / "run", [qwen(assets, "h_kl"), llama(assets)], limit=12, max_length=32)
    cache_teachers(config, out, topk=32, sampled=16, shard_samples=4)
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": "other"}, r"was made for other data \(.*other.jsonl sha256 differs\)"),
        ({"max_length": 16}, r"was made for another max_length \(32, the run has 16\)"),
        ({"tokenizer": "llama_teacher"}, r"was made for another teacher tokenizer"),
        ({"projection": "w2"}, r"was made for another W"),
    ],
)
def test_a_cache_made_for_other_inputs_is_refused_in_one_line(assets, sparse_cache, change, message) -> None:
    spec = cached(qwen(assets, "h_kl"), sparse_cache / "qwen")
    if "tokenizer" in change:
        spec["tokenizer"] = str(assets[change["tokenizer"]])
    if "projection" in change:
        spec["projection"] = str(assets[change["projection"]])
    config = run_config(assets, sparse_cache / "run", [spec], limit=12, max_length=change.get("max_length", 32))
    if "data" in change:
        config.data.train = [str(assets[change["data"]])]
    with pytest.raises(XTokenError, match=message) as error:
        DistillRunner(config)
    assert "\n" not in str(error.value) and "teacher 'qwen': cache" in str(error.value)


def test_an_unfinished_cache_is_refused(assets, sparse_cache, tmp_path: Path) -> None:
    partial = tmp_path / "qwen"
    shutil.copytree(sparse_cache / "qwen", partial)
    (partial / "shard-00001.safetensors").unlink()
    spec = cached(qwen(assets, "h_kl"), partial)
    with pytest.raises(XTokenError, match=r"unfinished \(2 of 3 shards\)"):
        DistillRunner(run_config(assets, tmp_path / "run", [spec], limit=12, max_length=32))


@pytest.mark.parametrize("loss", LOSSES)
def test_a_cached_teacher_trains_beside_a_live_one_with_its_model_gone(assets, tmp_path: Path, loss: str) -> None:
    model = shutil.copytree(assets["qwen"], tmp_path / "qwen-model")
    spec = {**qwen(assets, loss), "model": str(model)}
    config = run_config(assets, tmp_path / "run", [spec], limit=12, max_length=32)
    cache_teachers(config, tmp_path / "cache", topk=32, sampled=16, shard_samples=5)
    shutil.rmtree(model)  # the run never needs the teacher model again
    teachers = [cached(spec, tmp_path / "cache" / "qwen"), llama(assets, weight=0.5)]
    weighting = {"teacher_weighting": "entropy"}  # the cached teacher's entropy has 0·log 0 terms
    summary = DistillRunner(run_config(assets, tmp_path / "run", teachers, limit=12, max_length=32, **weighting)).run()
    curve = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(curve) == 6 and all(r["kd/qwen"] == r["kd/qwen"] and r["kd/llama"] == r["kd/llama"] for r in curve)
    assert curve[-1]["ce"] < curve[0]["ce"] and summary.steps == 6


def test_p_kl_ranks_a_cached_teachers_columns_by_log_p_not_by_the_drawn_ids_mass() -> None:
    """A drawn id's log p̂ = log(r·count/S) holds the mass of many ids: ranked by it, it would outrank
    a top-K id that is likelier, and cached P-KL would compare other columns than live P-KL."""
    logp = torch.log_softmax(torch.tensor([[4.0, 3.0, 2.0, 1.0] + [0.0] * 60]), -1)  # a long flat tail
    following = torch.tensor([-1])
    signal = sparse_signal(logp, following, 3, 4, torch.Generator().manual_seed(0))
    ids, stored, ratio = slots(signal, following, 4)
    teacher = SparseTeacher(ids, stored, 64, ratio)
    drawn = signal["sample_ids"][0, signal["sample_counts"][0] > 0]
    assert bool((dataclasses.replace(teacher, log_ratio=None).column_max()[drawn] > logp[0, 2]).any())
    torch.testing.assert_close(teacher.column_max()[drawn], logp[0, drawn])  # each its own log p
    assert torch.equal(teacher.column_max().topk(3).indices.sort().values, torch.tensor([0, 1, 2]))
