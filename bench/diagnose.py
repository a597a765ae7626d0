"""What a corpus adds to `diagnose`, against the floor of tokenising that corpus with both tokenizers.

The corpus is GSM8K test repeated to `--lines` texts (10,000 by default). For each pair the script
times, in one process with W built beforehand: the floor (one `encode_batch` of the corpus with each
tokenizer), `diagnose` without a corpus, and `diagnose` with it; it prints the seconds the corpus
adds and their ratio to the floor. Target (issue 4): a 10,000-line corpus adds seconds, not minutes.

    python bench/diagnose.py [--pairs llama3:qwen3 llama3:o200k llama2:llama3] [--lines 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.diagnose import diagnose
from xtoken_align.diagnose.corpus import one_to_one
from xtoken_align.projection import build_projection
from xtoken_align.spans import encode_spans
from xtoken_align.vocab import load_vocab


def seconds(job, *args) -> float:
    started = time.perf_counter()
    job(*args)
    return time.perf_counter() - started


def tokenize_both(student, teacher, texts: list[str]) -> None:
    for vocab in (student, teacher):
        vocab.tokenizer.encode_batch(texts, add_special_tokens=False)


def chunk(student_tokens, teacher_tokens) -> None:
    one_to_one(student_tokens, teacher_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["llama3:qwen3", "llama3:o200k", "llama2:llama3"])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    gsm8k = read_corpus(default_corpus())
    texts = [gsm8k[k % len(gsm8k)] for k in range(args.lines)]
    print(f"{args.lines:,} texts, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB")
    columns = [("pair", 16), ("floor s", 9), ("no corpus s", 13), ("corpus s", 10), ("added s", 9)]
    columns += [("added/floor", 13), ("chunking s", 12)]
    print("".join(name.ljust(width) if name == "pair" else name.rjust(width) for name, width in columns))
    for pair in args.pairs:
        student, teacher = (load_vocab(f"demo:{name}") for name in pair.split(":"))
        teachers = [(teacher, build_projection(student, teacher, progress=False))]
        for vocab in (student, teacher):  # warm the tokenizers' thread pools
            vocab.tokenizer.encode_batch(texts[:100], add_special_tokens=False)
        floor, base, full, chunking = [], [], [], []
        batches = (encode_spans(student, texts), encode_spans(teacher, texts))
        for _ in range(args.repeat):
            floor.append(seconds(tokenize_both, student, teacher, texts))
            base.append(seconds(diagnose, student, teachers, None))
            full.append(seconds(diagnose, student, teachers, texts))
            chunking.append(seconds(chunk, *batches))
        floor_s, base_s, full_s, chunk_s = (statistics.median(x) for x in (floor, base, full, chunking))
        added = full_s - base_s
        print(
            f"{pair:<16}{floor_s:>9.2f}{base_s:>13.2f}{full_s:>10.2f}{added:>9.2f}{added / floor_s:>13.2f}"
            f"{chunk_s:>12.2f}"
        )


if __name__ == "__main__":
    main()
