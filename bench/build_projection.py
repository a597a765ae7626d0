"""Time and peak memory of building W, against the floor of the same run.

The floor is what no builder can avoid: loading both tokenizers and one batch re-tokenisation of
the whole student vocabulary with the teacher. Each measurement runs in a fresh process (so
memory peaks and caches do not leak between them); the script prints seconds, peak RSS and the
ratio build/floor. Target (issue 3): Llama-3 x Qwen3 within 3x the floor, under 2 GB.

    python bench/build_projection.py [--pairs llama3:qwen3 llama3:o200k] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from tokenizers import Tokenizer
mode, student, teacher = sys.argv[1:4]
started = time.perf_counter()
if mode == "floor":
    from xtoken_align.sources import load_tokenizer
    s, t = load_tokenizer(student).tokenizer, load_tokenizer(teacher).tokenizer
    texts = [s.decode([i]) for i in range(s.get_vocab_size())]
    t.encode_batch(texts, add_special_tokens=False)
else:
    from xtoken_align.projection import build_projection
    from xtoken_align.vocab import load_vocab
    build_projection(load_vocab(student), load_vocab(teacher), progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, student: str, teacher: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, student, teacher], capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["llama3:qwen3", "llama3:o200k"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'pair':<16}{'floor s':>9}{'build s':>9}{'ratio':>7}{'floor MB':>10}{'build MB':>10}")
    for pair in args.pairs:
        student, teacher = (f"demo:{name}" for name in pair.split(":"))
        runs = [(measure("floor", student, teacher), measure("build", student, teacher)) for _ in range(args.repeat)]
        floor = statistics.median(r[0]["seconds"] for r in runs)
        build = statistics.median(r[1]["seconds"] for r in runs)
        floor_mb = max(r[0]["peak_mb"] for r in runs)
        build_mb = max(r[1]["peak_mb"] for r in runs)
        print(f"{pair:<16}{floor:>9.2f}{build:>9.2f}{build / floor:>7.2f}{floor_mb:>10.0f}{build_mb:>10.0f}")


if __name__ == "__main__":
    main()
