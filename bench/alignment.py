"""Alignment throughput in student tokens per second, on GSM8K test text.

Rows, for each student:teacher pair (the student with its BOS, each side its own convention):
- `bytes`, one `align_sample` call per GSM8K problem (~160 student tokens), tokenisation excluded;
- `bytes`, one `align_sample` call per packed text of about `--packed` student tokens;
- `bytes`, one `align_batch` call over the whole corpus (what `DistillDataset` does);
- `bytes`, tokenisation included: `encode_batch` on both sides, then `align_batch`;
- `dp`, one `align_sample` call per problem on the first `--dp-texts` problems.
Ratios against the goal of issue 6 (1M student tokens/s for the alignment itself) and the
reference NeMo-RL DP aligner (16k/s). Timings are the median of `--repeat` runs.

    python bench/alignment.py [--pairs llama3:qwen3 llama3:o200k llama2:llama3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.distill.align import align_batch, align_sample
from xtoken_align.distill.data import bos_id
from xtoken_align.vocab import Vocab, load_vocab

GOAL, REFERENCE_DP = 1_000_000, 16_000


def encode(vocab: Vocab, texts: list[str]) -> list[np.ndarray]:
    """Ids with the vocabulary's own BOS convention (as `encode_texts`, without truncation)."""
    bos = bos_id(vocab)
    head = [] if bos is None else [bos]
    return [
        np.asarray(head + e.ids, dtype=np.int64) for e in vocab.tokenizer.encode_batch(texts, add_special_tokens=False)
    ]


def pack(texts: list[str], student: Vocab, tokens: int) -> list[str]:
    """GSM8K problems joined into texts of about `tokens` student tokens."""
    packed, current, size = [], [], 0
    for text, ids in zip(texts, encode(student, texts), strict=True):
        current.append(text)
        size += len(ids)
        if size >= tokens:
            packed.append("\n\n".join(current))
            current, size = [], 0
    return packed


def median_seconds(job, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_pair(pair: str, texts: list[str], args: argparse.Namespace) -> None:
    student, teacher = (load_vocab(f"demo:{name}") for name in pair.split(":"))
    s_ids, t_ids = encode(student, texts), encode(teacher, texts)
    long = pack(texts, student, args.packed)
    s_long, t_long = encode(student, long), encode(teacher, long)
    align_batch(student, teacher, s_ids[:10], t_ids[:10])  # build the per-vocabulary tables once

    def each(s_list, t_list, method="bytes"):
        return lambda: [align_sample(student, teacher, s, t, method) for s, t in zip(s_list, t_list, strict=True)]

    def batch():
        align_batch(student, teacher, s_ids, t_ids)

    def encode_and_align():
        align_batch(student, teacher, encode(student, texts), encode(teacher, texts))

    n_dp = min(args.dp_texts, len(texts))
    rows = [
        ("bytes, align_sample per problem", each(s_ids, t_ids), s_ids, args.repeat),
        (f"bytes, align_sample per ~{args.packed}-token text", each(s_long, t_long), s_long, args.repeat),
        ("bytes, align_batch over the corpus", batch, s_ids, args.repeat),
        ("bytes, tokenise + align_batch", encode_and_align, s_ids, args.repeat),
        (f"dp, align_sample per problem ({n_dp})", each(s_ids[:n_dp], t_ids[:n_dp], "dp"), s_ids[:n_dp], 1),
    ]
    for name, job, counted, repeat in rows:
        tokens = sum(len(x) for x in counted)
        rate = tokens / median_seconds(job, repeat)
        print(f"{pair:<15}{name:<44}{tokens:>9,}{rate:>12,.0f}{rate / GOAL:>8.2f}x{rate / REFERENCE_DP:>10.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["llama3:qwen3", "llama3:o200k", "llama2:llama3"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--packed", type=int, default=1024, help="student tokens per packed text")
    parser.add_argument("--dp-texts", type=int, default=300)
    args = parser.parse_args()
    texts = read_corpus(default_corpus())
    print(f"GSM8K test: {len(texts):,} problems; goal {GOAL:,} tokens/s; reference DP {REFERENCE_DP:,}/s")
    print(f"{'pair':<15}{'row':<44}{'tokens':>9}{'tokens/s':>12}{'vs goal':>9}{'vs ref DP':>11}")
    for pair in args.pairs:
        bench_pair(pair, texts, args)


if __name__ == "__main__":
    main()
