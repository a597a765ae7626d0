"""The study's text: GSM8K training solutions and generated arithmetic problems (shuffled together),
the held-out GSM8K test solutions and held-out arithmetic problems (never training problems), as
JSONL files. Left out: what is trained on them (run.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "experiments" / "data" / "gsm8k" / "train.jsonl"  # GSM8K train, MIT (LICENSE beside it)
TEST = ROOT / "xtoken_align" / "data" / "gsm8k" / "test.jsonl"


def arithmetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 9999), rng.randint(10, 999)
        op = rng.choice("+-")
        c = a + b if op == "+" else a - b
        rows.append({"question": f"{a} {op} {b} =", "answer": f"{a} {op} {b} = {c}\n#### {c}"})
    return rows


def write_data(out: Path, s: dict) -> dict[str, Path]:
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]  # noqa: E731
    gsm_train, gsm_test = read(TRAIN)[: s["gsm_train"]], read(TEST)
    arith_train = arithmetic(s["arith_train"], seed=1)
    seen = {r["question"] for r in arith_train}  # held-out problems are never training problems
    arith_test = [r for r in arithmetic(2 * s["arith_eval"], seed=2) if r["question"] not in seen][: s["arith_eval"]]
    train = [{"text": r["answer"]} for r in gsm_train] + [
        {"text": f"{r['question']}\n{r['answer']}"} for r in arith_train
    ]
    random.Random(0).shuffle(train)
    files = {
        "train": (out / "data" / "train.jsonl", train),
        "heldout": (out / "data" / "heldout_gsm8k.jsonl", [{"text": r["answer"]} for r in gsm_test[: s["eval_texts"]]]),
        "arith_heldout": (out / "data" / "heldout_arithmetic.jsonl", arith_test),
    }
    for path, rows in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {k: v[0] for k, v in files.items()}


def study_texts(data: dict) -> list[str]:
    """Every text a model of the study reads: training, held-out and arithmetic held-out."""
    from xtoken_align.distill.data import load_texts

    arith = [json.loads(x) for x in data["arith_heldout"].read_text().splitlines()]
    return (
        load_texts([data["train"]]) + load_texts([data["heldout"]]) + [f"{r['question']}\n{r['answer']}" for r in arith]
    )
