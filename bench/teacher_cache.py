"""Teacher cache (docs/teacher-cache.md): step time live vs cached, and cache size vs fidelity.

Setting (issue 15, item 5): tiny real architectures with the full real vocabularies, a Llama-3
student (`tiny_model("llama")`, hidden 64, 2 layers, 128,256 ids) and a Qwen3 teacher
(`tiny_model("qwen3")`, hidden 512, 4 layers, 151,669 ids, Qwen3's padded 151,936-row output
layer), W = the default Llama-3 x Qwen3 build, GSM8K problems shipped with the package
(`--texts` of them, max_length 128). FLOPs per token are 2 x (parameters a token meets: the layers
plus the output layer; the embedding lookup is free), printed so that teacher >= 4x student shows.

A randomly initialised teacher spreads its mass almost uniformly over 151k ids, for which no small
K can be faithful; real teachers are peaked. So the teacher is made LM-like first: trained with CE on
the bench's GSM8K texts for `--train-steps` steps, then, if its mean entropy is still above `--entropy`
nats (about an LM's on such text), sharpened by a temperature (the final RMSNorm's weight scaled by
c, which scales every logit by c, inputs untouched). Its mean entropy, top-1 probability and the
mass outside its top 8 / 32 / 128 are printed.

1. Step time: `train_step` (the runner's training step: student CE + P-KL, AdamW, clipping), batch
   4 x 128, with TeacherPlans from `prepare_teachers`, live (the model run each step) vs cached
   (`cache_teachers` once, K = 128, S = 12, float16); median of `--steps` interleaved steps after
   one warm-up step each. Goal: cached <= 0.3x live.
2. Fidelity: for K in {8, 32, 128}, S in {0, 12} (float16 log-probs, the default), bytes per
   teacher token on disk (shard bytes / teacher positions) and, per loss (p_kl, h_kl, gold, uld
   against the Qwen3 teacher; kd against a Llama-3 teacher, hidden 128, made LM-like the same way),
   |L_cached - L_live| / |L_live| and the cosine between the gradients w.r.t. the student's logits,
   on `--fidelity-samples` samples, the untrained student's logits, the losses' default options.
   Goal: <= 128 bytes per teacher token at gradient cosine >= 0.99 against live P-KL.

    python bench/teacher_cache.py [--texts 12] [--steps 3] [--train-steps 8] [--fidelity-samples 4] [--no-kd]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
KS, SS = (8, 32, 128), (0, 12)
LOSSES = ("p_kl", "h_kl", "gold", "uld")


def flops_per_token(model) -> int:
    """2 x the parameters a token's forward multiplies by (tied output layer counted once, as output)."""
    embed = model.get_input_embeddings().weight.numel()
    layers = sum(p.numel() for p in model.parameters()) - embed
    return 2 * (layers + model.get_output_embeddings().weight.numel())


def teacher_batches(dataset, name: str, size: int):
    from xtoken_align.distill.data import collate

    for start in range(0, len(dataset), size):
        batch = collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])
        yield batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]


@torch.no_grad()
def peakedness(model, dataset, name: str, vocab_size: int) -> dict[str, float]:
    """Mean entropy (nats), top-1 probability and mass outside the top 8/32/128 over real positions."""
    sums, n = torch.zeros(5, dtype=torch.float64), 0
    for ids, mask in teacher_batches(dataset, name, 8):
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[..., :vocab_size].float(), -1)
        logp = logp[mask.bool()]  # (n, V)
        top = logp.topk(128, -1).values.exp()  # (n, 128)
        entropy = -(logp.exp() * logp).sum(-1)
        found = [entropy, top[:, 0], 1 - top[:, :8].sum(-1), 1 - top[:, :32].sum(-1), 1 - top.sum(-1)]
        sums += torch.stack([x.double().sum() for x in found])
        n += len(logp)
    keys = ("entropy", "top1", "outside_top8", "outside_top32", "outside_top128")
    return dict(zip(keys, (sums / n).tolist(), strict=True))


def make_lm_like(folder: Path, dataset, name: str, vocab_size: int, steps: int, entropy: float) -> dict:
    """Train the tiny teacher at `folder` with `steps` CE steps on the dataset's teacher ids (a count,
    not a time, so that a busy machine trains the same teacher), then sharpen by a temperature until
    its mean entropy is at most `entropy`; saved in place."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    batches = list(teacher_batches(dataset, name, 8))
    for step in range(steps):
        ids, mask = batches[step % len(batches)]
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :vocab_size].float()
        labels = torch.where(mask[:, 1:].bool(), ids[:, 1:], -100)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    trained = peakedness(model, dataset, name, vocab_size)
    scale = 1.0
    if trained["entropy"] > entropy:  # bisect log c on the first 8 samples' logits (c x the norm weight: c x logits)
        ids, mask = next(teacher_batches(dataset, name, 8))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[..., :vocab_size][mask.bool()].float()
        low, high = 0.0, 4.0
        for _ in range(10):
            mid = (low + high) / 2
            logp = torch.log_softmax(logits * math.exp(mid), -1)
            if float(-(logp.exp() * logp).sum(-1).mean()) > entropy:
                low = mid
            else:
                high = mid
        scale = math.exp(high)
        model.model.norm.weight.data *= scale
    model.save_pretrained(folder, safe_serialization=True)
    return {"ce": round(float(loss.detach()), 3), "trained": trained, "scale": round(scale, 3),
            "final": peakedness(model, dataset, name, vocab_size)}  # fmt: skip


def run_config(root: Path, teachers: list[dict], **data):
    from xtoken_align.distill.config import DistillConfig

    return DistillConfig.from_dict({
        "student": {"model": str(root / "student")},
        "teachers": teachers,
        "data": {"train": [str(root / "train.jsonl")], "max_length": 128, **data},
        "training": {"steps": 100, "batch_size": 4, "lr": 3e-4, "warmup_steps": 2, "precision": "float32"},
        "output": {"dir": str(root / "run")},
    })  # fmt: skip


def step_times(root: Path, qwen: dict, cache: Path, dataset, steps: int) -> dict[str, float]:
    """Median seconds of `train_step` with the live and the cached teacher (interleaved)."""
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    from xtoken_align.distill.data import collate
    from xtoken_align.distill.distributed import Distributed
    from xtoken_align.distill.student_terms import StudentTerms
    from xtoken_align.distill.teachers import prepare_teachers
    from xtoken_align.distill.training_step import train_step
    from xtoken_align.vocab import load_vocab

    student_vocab = load_vocab("demo:llama3")
    where = Distributed.from_env()
    setups = {}
    for kind, spec in (("live", qwen), ("cached", {**_without_model(qwen), "cache": str(cache)})):
        config = run_config(root, [{**spec, "loss": "p_kl"}])
        (plan,) = prepare_teachers(config, student_vocab)
        if kind == "live":
            plan.model = AutoModelForCausalLM.from_pretrained(qwen["model"], dtype=torch.float32).eval()
            plan.model.requires_grad_(False)
        student = AutoModelForCausalLM.from_pretrained(root / "student", dtype=torch.float32).train()
        wrapped = StudentTerms(student, config.loss.chunk_positions)
        optimizer = torch.optim.AdamW(wrapped.parameters(), lr=3e-4)
        scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 100)
        setups[kind] = (config, plan, wrapped, optimizer, scheduler)
    batch = collate([dataset[i] for i in range(4)])
    times: dict[str, list[float]] = {"live": [], "cached": []}
    for step in range(steps + 1):
        for kind, (config, plan, wrapped, optimizer, scheduler) in setups.items():
            started = time.perf_counter()
            train_step(step, [batch], wrapped, [plan], optimizer, scheduler, config, where, False)
            if step:  # step 0 warms up
                times[kind].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def _without_model(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "model"}


def value_and_gradient(plan, teacher_logits, batch: dict, z: torch.Tensor):
    name = plan.name
    ids, mask = batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]
    z_s = z.clone().requires_grad_(True)
    following = torch.where(mask[:, 1:].bool(), ids[:, 1:], -100)
    t_labels = torch.cat([following, torch.full_like(ids[:, :1], -100)], 1)
    value = plan.loss(z_s, teacher_logits, batch["student_chunk"][name], batch["teacher_chunk"][name],
                      batch["labels"], teacher_labels=t_labels)  # fmt: skip
    value.backward()
    return float(value.detach()), z_s.grad.reshape(-1)


def cache_bytes(folder: Path) -> float:
    from safetensors import safe_open

    shards = sorted(folder.glob("shard-*.safetensors"))
    positions = 0
    for shard in shards:
        with safe_open(str(shard), framework="numpy") as f:
            positions += int(f.get_tensor("offsets")[-1])
    return sum(s.stat().st_size for s in shards) / positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=8, help="CE steps making each teacher LM-like")
    parser.add_argument("--entropy", type=float, default=2.0, help="target mean teacher entropy (nats)")
    parser.add_argument("--fidelity-samples", type=int, default=4)
    parser.add_argument("--no-kd", action="store_true", help="leave out kd (and its Llama-3 teacher)")
    args = parser.parse_args()
    shared = ROOT.parent / "shared" / "tokenizers"
    if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and shared.is_dir():
        os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(shared)
    torch.manual_seed(0)
    from xtoken_align.distill.run_log import quiet_libraries

    quiet_libraries()  # the bench's own lines, not transformers' loading and saving bars
    from transformers import AutoModelForCausalLM

    from xtoken_align.corpus import default_corpus
    from xtoken_align.distill.cache.writer import cache_teachers
    from xtoken_align.distill.data import collate, training_set
    from xtoken_align.distill.models import tiny_model
    from xtoken_align.distill.teachers import prepare_teachers
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection
    from xtoken_align.vocab import load_vocab

    began = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    rows = [r for r in default_corpus().read_text(encoding="utf-8").splitlines() if r.strip()][: args.texts]
    (root / "train.jsonl").write_text("\n".join(json.dumps(json.loads(r)) for r in rows) + "\n")
    student, teacher = load_vocab("demo:llama3"), load_vocab("demo:qwen3")
    say("building W (default rules), making the tiny models")
    w = save_projection(build_projection(student, teacher, progress=False), root / "W.safetensors")
    tiny_model("llama", student, root / "student", hidden=64, layers=2, seed=1)
    tiny_model("qwen3", teacher, root / "qwen", hidden=512, layers=4, heads=8, seed=2, output_rows=151_936)
    qwen = {"name": "qwen", "model": str(root / "qwen"), "projection": str(w), "loss": "p_kl"}
    specs = [qwen]
    if not args.no_kd:
        tiny_model("llama", student, root / "llama", hidden=128, layers=2, seed=3)
        specs.append({"name": "llama", "model": str(root / "llama"), "loss": "kd"})
    vocabs = {"qwen": teacher, "llama": None}
    dataset = training_set(
        [str(root / "train.jsonl")], None, 128, student, {s["name"]: vocabs[s["name"]] for s in specs}
    )
    flops = {}
    for name, folder in (("student", root / "student"), ("qwen", root / "qwen")):
        flops[name] = flops_per_token(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))
    print(f"student Llama-3 tiny: {flops['student'] / 1e6:.1f} MFLOP/token; teacher Qwen3 tiny: "
          f"{flops['qwen'] / 1e6:.1f} MFLOP/token ({flops['qwen'] / flops['student']:.1f}x the student); "
          f"{len(dataset)} GSM8K samples, max_length 128, "
          f"{sum(len(s.alignments['qwen'].teacher_ids) for s in dataset.samples)} teacher positions")  # fmt: skip
    made = {}
    for spec in specs:
        size = teacher.size if spec["name"] == "qwen" else student.size
        say(f"making teacher '{spec['name']}' LM-like: {args.train_steps} CE steps on the texts, then a temperature")
        made[spec["name"]] = found = make_lm_like(
            Path(spec["model"]), dataset, spec["name"], size, args.train_steps, args.entropy
        )
        t, f = found["trained"], found["final"]
        print(f"  teacher '{spec['name']}': {args.train_steps} CE steps (last CE {found['ce']}): entropy "
              f"{t['entropy']:.2f} nats, top-1 {t['top1']:.2f}; logits x {found['scale']}: entropy "
              f"{f['entropy']:.2f} nats, top-1 p {f['top1']:.2f}, mass outside top-8/32/128 "
              f"{f['outside_top8']:.3f} / {f['outside_top32']:.3f} / {f['outside_top128']:.4f}")  # fmt: skip

    caches = {}
    for k in KS:
        for s in SS:
            say(f"caching K={k} S={s}")
            out = root / f"cache-K{k}-S{s}"
            cache_teachers(run_config(root, specs), out, None, topk=k, sampled=s, seed=0)
            caches[k, s] = out

    say("step time: train_step live vs cached (K=128, S=12)")
    times = step_times(root, qwen, caches[128, 12] / "qwen", dataset, args.steps)
    ratio = times["cached"] / times["live"]
    print(
        f"\nstep time, batch 4 x 128, p_kl, median of {args.steps}: live {times['live']:.3f} s, cached "
        f"{times['cached']:.3f} s: cached {ratio:.2f}x live (goal <= 0.3x: {'met' if ratio <= 0.3 else 'NOT met'})"
    )

    say("fidelity: cached vs live losses and gradients")
    batch = collate(dataset.samples[: args.fidelity_samples])
    student_model = AutoModelForCausalLM.from_pretrained(root / "student", dtype=torch.float32).eval()
    with torch.no_grad():
        z = student_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    losses = [(loss, qwen) for loss in LOSSES] + ([("kd", specs[1])] if not args.no_kd else [])
    live = {}
    for spec in specs:
        name = spec["name"]
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
        ids, mask = batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]
        with torch.no_grad():
            live[name] = model(input_ids=ids, attention_mask=mask).logits
    reference = {}
    for loss, spec in losses:
        (plan,) = prepare_teachers(run_config(root, [{**spec, "loss": loss}]), student)
        reference[loss] = value_and_gradient(plan, live[spec["name"]], batch, z)
    table = []
    for (k, s), out in caches.items():
        for loss, spec in losses:
            name = spec["name"]
            cached = {**_without_model(spec), "loss": loss, "cache": str(out / name)}
            (plan,) = prepare_teachers(run_config(root, [cached]), student)
            ids, mask = batch["teacher_input_ids"][name], batch["teacher_attention_mask"][name]
            value, grad = value_and_gradient(plan, plan.teacher_output(ids, mask, batch["index"]), batch, z)
            value_live, grad_live = reference[loss]
            cosine = float(torch.nn.functional.cosine_similarity(grad.double(), grad_live.double(), dim=0))
            row = {"K": k, "S": s, "teacher": name, "loss": loss, "bytes": cache_bytes(out / name),
                   "rel": abs(value - value_live) / abs(value_live), "cosine": cosine}  # fmt: skip
            table.append(row)
    print("\n| K | S | bytes/token | loss | rel. loss diff | grad cosine |\n| --- | --- | --- | --- | --- | --- |")
    for r in table:
        loss = r["loss"] + (" (Llama-3 teacher)" if r["loss"] == "kd" else "")
        print(f"| {r['K']} | {r['S']} | {r['bytes']:.0f} | {loss} | {r['rel']:.2e} | {r['cosine']:.4f} |")
    meets = [(r["K"], r["S"], round(r["bytes"]), round(r["cosine"], 4)) for r in table
             if r["loss"] == "p_kl" and r["bytes"] <= 128 and r["cosine"] >= 0.99]  # fmt: skip
    print(
        f"\ngoal (<= 128 bytes per teacher token at P-KL gradient cosine >= 0.99): "
        f"{'met by (K, S, bytes, cosine) ' + str(meets) if meets else 'NOT met by any K, S'}"
    )
    say("done")


if __name__ == "__main__":
    main()
