"""Does the corpus rule help? agreement@1 and mass@1 on held-out GSM8K test, rules alone vs rules +
corpus counted on GSM8K train, for Llama-3 × Qwen3 and Llama-3 × o200k.

    .venv/bin/python bench/corpus_rule.py [--prior 10 ...] [--min-count 3]

Prints one Markdown table (the README's "Corpus rule" paragraph quotes it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xtoken_align.config import BuildConfig, CorpusRule, default_rules
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.projection import build_projection
from xtoken_align.rules.corpus import count_openers
from xtoken_align.score.agreement import corpus_agreement
from xtoken_align.vocab import load_vocab

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "experiments" / "data" / "gsm8k" / "train.jsonl"
PAIRS = [("llama3", "qwen3"), ("llama3", "o200k")]
CATEGORIES = ["digits:1", "digits:2", "digits:3", "letters:latin"]


def row(label: str, report) -> str:
    cells = [f"{report.agreement_at_1:.4f}", f"{report.mass:.4f}"]
    for name in CATEGORIES:
        cat = report.categories.get(name)
        cells += [f"{cat.agreement_at_1:.4f}", f"{cat.mass:.4f}"] if cat else ["–", "–"]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=float, nargs="+", default=[10.0])
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--blend-exact", action="store_true", help="also a run that blends exact rows")
    args = parser.parse_args()
    held_out = read_corpus(default_corpus())
    header = "| pair, W | agreement@1 | mass@1 | " + " | ".join(f"{c} agr@1 | {c} mass" for c in CATEGORIES) + " |"
    lines = [header, "|" + " --- |" * (3 + 2 * len(CATEGORIES))]
    for student_name, teacher_name in PAIRS:
        student, teacher = load_vocab(f"demo:{student_name}"), load_vocab(f"demo:{teacher_name}")
        started = time.perf_counter()
        count_openers(student, teacher, read_corpus(TRAIN))
        print(f"{student_name} × {teacher_name}: counting GSM8K train took {time.perf_counter() - started:.1f} s")
        rules = build_projection(student, teacher, BuildConfig(), progress=False)
        lines.append(
            row(f"{student_name} × {teacher_name}, rules", corpus_agreement(rules, student, teacher, held_out))
        )
        runs = [(prior, False) for prior in args.prior] + [(p, True) for p in args.prior if args.blend_exact]
        for prior, exact in runs:
            corpus = CorpusRule(corpus=(str(TRAIN),), prior=prior, min_count=args.min_count, blend_exact=exact)
            config = BuildConfig(rules=(*default_rules(), corpus))
            blended = build_projection(student, teacher, config, progress=False)
            label = f"{student_name} × {teacher_name}, rules + corpus (prior {prior:g}{', exact too' if exact else ''})"
            lines.append(row(label, corpus_agreement(blended, student, teacher, held_out)))
    print(f"\nheld out: GSM8K test ({len(held_out):,} texts); corpus: GSM8K train; min_count {args.min_count}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
