"""Tokens/s and peak memory of the runner's own training step on one GPU, for four variants:
P-KL with a live teacher, P-KL with a cached teacher, H-KL with a live teacher, and plain CE.

Setting (issue 15): a randomly initialised Llama-3.2-1B-shaped student (hidden 2048, 16 layers, 32
heads, 8 KV heads, intermediate 8192, Llama-3's 128,256 tokens, tied embeddings) and a Qwen3-4B-shaped
teacher (hidden 2560, 36 layers, 32 heads, 8 KV heads, head_dim 128, intermediate 9728, 151,936 output
rows for Qwen3's 151,669 tokens), both built from transformers configs directly on the device in bf16
(no weight files); the real demo tokenizers and the real Llama-3 x Qwen3 W (`build_projection`); GSM8K
test problems (`default_corpus`) joined into texts of at least 2,048 student tokens, then encoded, cut
to 2,048 and aligned by the runner's data code (`training_set`, which the cache writer uses too).

Each variant builds a fresh student and AdamW and runs `train_step` (TeacherPlans from
`prepare_teachers`, the student in `StudentTerms`, loss.chunk_positions 1024) for `--warmup` steps,
then times `--steps` steps (defaults 2 + 3 at batch 4 x 2,048, to stay under 5 minutes on one H200).
Plain CE runs the same `StudentTerms` forward with no teacher. Reported per variant: valid tokens/s
(student positions with a label, over the timed steps) and `torch.cuda.max_memory_allocated`, reset
at each variant's start (so it includes the weights resident then: the live teacher's too). P-KL
cached first caches the teacher for those samples with the project's writer (`cache_teachers`, K = 64,
S = 64, in a temp folder; the random teacher is saved there for it), and times only training; the
caching throughput (teacher positions/s of its forward passes) is printed as well. Goals: ≥ 10k
tokens/s live, ≥ 25k cached (the reference reports ≈ 1.8k valid tokens/s per GPU).

`--tiny --device cpu` is the smoke run for tests: hidden 64, 2 layers, 64-token context, batch 2,
1 warm-up + 1 timed step, the full vocabularies, float32; peak memory on CPU is the resident
high-water mark (VmHWM, reset per variant). Left out: several GPUs, gradient accumulation, real checkpoints.

    python bench/gpu_step.py [--tiny] [--device cuda|cpu] [--batch 4] [--context 2048]
                             [--warmup 2] [--steps 3] [--chunk 1024]
    python bench/gpu_step.py --tiny --device cpu   # the CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"P-KL live": 10_000, "H-KL live": 10_000, "P-KL cached": 25_000, "CE": None}
REFERENCE = 1_800  # valid tokens/s per GPU the reference reports
STUDENT = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, rope_theta=500_000.0)  # fmt: skip
TEACHER = dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=9728, rope_theta=1_000_000.0)  # fmt: skip
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128)  # fmt: skip
QWEN3_ROWS = 151_936


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: small models and context (CPU, tests)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch", type=int, help="samples per step (default 4, tiny 2)")
    parser.add_argument("--context", type=int, help="student tokens per sample (default 2048, tiny 128)")
    parser.add_argument("--warmup", type=int, help="untimed steps per variant (default 2, tiny 1)")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 3, tiny 1)")
    parser.add_argument("--chunk", type=int, default=1024, help="loss.chunk_positions")
    args = parser.parse_args(argv)
    args.batch = args.batch or (2 if args.tiny else 4)
    args.context = args.context or (64 if args.tiny else 2048)
    args.warmup = (1 if args.tiny else 2) if args.warmup is None else args.warmup
    args.steps = args.steps or (1 if args.tiny else 3)
    return args


def packed_corpus(path: Path, student, context: int, samples: int) -> Path:
    """GSM8K test problems joined with blank lines into `samples` texts of ≥ `context` student tokens
    (encode_texts then cuts each at a token start), written as JSONL `text` to `path`."""
    from xtoken_align.corpus import default_corpus, read_corpus

    texts = read_corpus(default_corpus())
    lengths = [len(e.ids) for e in student.tokenizer.encode_batch(texts, add_special_tokens=False)]
    packed, current, count = [], [], 0
    for text, length in zip(texts, lengths, strict=True):
        current.append(text)
        count += length + 1
        if count >= context:
            packed.append("\n\n".join(current))
            current, count = [], 0
            if len(packed) == samples:
                break
    if len(packed) < samples:
        raise SystemExit(f"gpu_step.py: GSM8K holds {len(packed)} texts of {context} tokens, {samples} wanted")
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in packed), encoding="utf-8")
    return path


def random_model(family: str, vocab, tiny: bool, device, dtype):
    """A randomly initialised LlamaForCausalLM / Qwen3ForCausalLM made on `device` in `dtype`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    roles = vocab.roles()
    common = dict(tie_word_embeddings=True, bos_token_id=roles.get("bos"), eos_token_id=roles.get("eos"),
                  attention_dropout=0.0, max_position_embeddings=4096)  # fmt: skip
    if family == "llama":
        config = LlamaConfig(vocab_size=vocab.size, **(TINY if tiny else STUDENT), **common)
        kind = LlamaForCausalLM
    else:
        shape = {**TINY, "head_dim": 16} if tiny else TEACHER
        config = Qwen3Config(vocab_size=QWEN3_ROWS, **shape, **common)
        kind = Qwen3ForCausalLM
    with torch.device(device):
        model = kind._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def run_variant(name, plans, make_student, batches, config, where, bf16, warmup) -> dict:
    """Warm-up then timed optimiser steps of one variant; its tokens/s and peak memory."""
    import torch

    from xtoken_align.distill.student_terms import StudentTerms
    from xtoken_align.distill.training_step import train_step

    cuda = where.device.type == "cuda"
    reset_peak(cuda)
    terms = StudentTerms(make_student(), config.loss.chunk_positions)
    optimizer = torch.optim.AdamW(terms.parameters(), lr=config.training.lr, fused=cuda)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    seconds, tokens, losses = 0.0, 0, []
    for step, batch in enumerate(batches):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        if plans is None:  # plain CE: the same student forward, no teacher
            record = ce_step(terms, batch, optimizer, scheduler, config, where, bf16)
        else:
            record = train_step(step, [batch], terms, plans, optimizer, scheduler, config, where, bf16)
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            seconds += time.perf_counter() - started
            tokens += int((batch["labels"] != -100).sum())
        losses.append(record["loss"])
    peak = peak_gib(cuda)
    del terms, optimizer
    return {"variant": name, "tokens_s": tokens / seconds, "step_s": seconds / (len(batches) - warmup),
            "peak_gib": peak, "loss": losses[-1]}  # fmt: skip


def reset_peak(cuda: bool) -> None:
    """Start a new peak: CUDA's allocator statistics, or on CPU the resident high-water mark."""
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_gib(cuda: bool) -> float:
    """`torch.cuda.max_memory_allocated`, or on CPU the process's VmHWM, in GiB."""
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return math.nan


def ce_step(terms, batch, optimizer, scheduler, config, where, bf16) -> dict:
    import torch

    batch = {k: v.to(where.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(where.device.type, dtype=torch.bfloat16, enabled=bf16):
        ce, _ = terms(batch["input_ids"], batch["attention_mask"], batch["labels"], [])
        ce.backward()
    torch.nn.utils.clip_grad_norm_(terms.parameters(), config.training.clip)
    optimizer.step()
    scheduler.step()
    return {"loss": float(ce.detach())}


def free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the cache writer picks its device from the environment
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_step.py: CUDA is not available; use --device cpu (with --tiny for the smoke run)", file=sys.stderr)
        return 2

    from xtoken_align.distill.cache.writer import cache_teachers
    from xtoken_align.distill.config import DistillConfig
    from xtoken_align.distill.data import collate, training_set
    from xtoken_align.distill.distributed import Distributed
    from xtoken_align.distill.teachers import prepare_teachers
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection
    from xtoken_align.vocab import load_vocab

    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    where = Distributed(device=device)
    student_vocab, teacher_vocab = load_vocab("demo:llama3"), load_vocab("demo:qwen3")
    n_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="gpu_step-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        w_path = save_projection(build_projection(student_vocab, teacher_vocab, progress=False), tmp / "W.safetensors")
        corpus = packed_corpus(tmp / "packed.jsonl", student_vocab, args.context, n_steps * args.batch)
        print(f"W built and corpus packed in {time.perf_counter() - started:.1f} s")

        def config_for(teacher: dict) -> DistillConfig:
            return DistillConfig.from_dict({
                "student": {"model": "random-llama", "tokenizer": "demo:llama3"},
                "teachers": [{"name": "qwen3", "tokenizer": "demo:qwen3", "projection": str(w_path), **teacher}],
                "data": {"train": [str(corpus)], "max_length": args.context},
                "training": {"batch_size": args.batch, "precision": "bf16" if bf16 else "float32"},
                "loss": {"chunk_positions": args.chunk},
            })  # fmt: skip

        base = config_for({"model": str(tmp / "teacher"), "loss": "p_kl"})
        dataset = training_set(base.data.train, None, args.context, student_vocab, {"qwen3": teacher_vocab})
        batches = [collate(dataset.samples[i * args.batch : (i + 1) * args.batch]) for i in range(n_steps)]
        valid = int((batches[0]["labels"] != -100).sum())
        teacher_len = batches[0]["teacher_input_ids"]["qwen3"].shape[1]
        print(f"{args.batch} x {args.context} student tokens a step ({valid:,} valid; teacher up to {teacher_len}), "
              f"{args.warmup} warm-up + {args.steps} timed steps a variant, chunk_positions {args.chunk}, "
              f"{'bf16' if bf16 else 'float32'} on {device}")  # fmt: skip

        def make_student():
            torch.manual_seed(0)
            return random_model("llama", student_vocab, args.tiny, device, dtype)

        teacher = random_model("qwen3", teacher_vocab, args.tiny, device, dtype).eval().requires_grad_(False)
        sizes = [sum(p.numel() for p in m.parameters()) / 1e9 for m in (make_student(), teacher)]
        free()
        print(f"student {sizes[0]:.2f}B parameters, teacher {sizes[1]:.2f}B")
        results = [run_variant("CE", None, make_student, batches, base, where, bf16, args.warmup)]
        free()
        for name, loss in (("P-KL live", "p_kl"), ("H-KL live", "h_kl")):
            config = config_for({"model": str(tmp / "teacher"), "loss": loss})
            plans = prepare_teachers(config, student_vocab)
            plans[0].model = teacher
            results.append(run_variant(name, plans, make_student, batches, config, where, bf16, args.warmup))
            del plans
            free()

        started = time.perf_counter()
        teacher.save_pretrained(tmp / "teacher", safe_serialization=True)
        del teacher
        free()
        saved = time.perf_counter() - started
        started = time.perf_counter()
        report = cache_teachers(base, tmp / "cache", topk=64, sampled=64, batch_size=args.batch)
        free()
        cached_s = time.perf_counter() - started
        config = config_for({"cache": str(tmp / "cache" / "qwen3"), "loss": "p_kl"})
        plans = prepare_teachers(config, student_vocab)
        plans[0].cache.verify(dataset, "qwen3")
        results.insert(2, run_variant("P-KL cached", plans, make_student, batches, config, where, bf16, args.warmup))
        caching = report.teachers[0].tokens_per_s
        print(f"teacher cache (K 64, S 64): {caching:,.0f} teacher positions/s in its forward passes; "
              f"{cached_s:.1f} s with loading, after {saved:.1f} s saving the random teacher")  # fmt: skip

    print(f"\n{'variant':<12} {'tokens/s':>10} {'s/step':>8} {'peak GiB':>9} {'goal':>8} {'x goal':>7} {'loss':>8}")
    for r in results:
        goal = GOALS[r["variant"]]
        ratio = f"{r['tokens_s'] / goal:.2f}" if goal else "-"
        print(f"{r['variant']:<12} {r['tokens_s']:>10,.0f} {r['step_s']:>8.3f} {r['peak_gib']:>9.2f} "
              f"{goal or '-':>8} {ratio:>7} {r['loss']:>8.3f}")  # fmt: skip
    print(f"(reference ≈ {REFERENCE:,} valid tokens/s per GPU; valid = student tokens with a label)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
