"""What the study measures of a trained model: held-out CE per token and nats per character, the
next-token report by token group (multi-digit numeral accuracy, p(true) and mass), arithmetic exact
match by greedy generation, the per-position breakdown (positions.py); and the KD signs a run logged.
Left out: training (run.py) and the tables (report.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def evaluate(model_dir: Path, vocab, data: dict, s: dict, device) -> dict:
    """The study's metrics of the model in `model_dir` on the held-out files of `data` (study_data.py)."""
    import torch
    from transformers import AutoModelForCausalLM

    from xtoken_align.distill.data import load_texts
    from xtoken_align.distill.evaluate import answer_exact_match, next_token_report

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    texts = load_texts(data["heldout"])
    arith = [json.loads(x) for x in data["arith_heldout"].read_text().splitlines()]
    report = next_token_report(model, vocab, texts, device, s["max_length"])
    nll = chars = tokens = 0.0
    bos = vocab.roles().get("bos")
    with torch.no_grad():
        for text in texts + [f"{r['question']}\n{r['answer']}" for r in arith]:
            ids = ([bos] if bos is not None else []) + vocab.tokenizer.encode(text, add_special_tokens=False).ids
            ids = ids[: s["max_length"]]
            x = torch.tensor([ids], device=device)
            nll += float(
                torch.nn.functional.cross_entropy(model(input_ids=x).logits[0, :-1], x[0, 1:], reduction="sum")
            )
            tokens += len(ids) - 1
            chars += len(vocab.tokenizer.decode(ids[1:] if bos is not None else ids))
    from positions import position_breakdown  # torch only once run.py has chosen the device

    positions = position_breakdown(model, vocab, texts + [f"{r['question']}\n{r['answer']}" for r in arith], s, device)
    numeral = [report[g] for g in ("digits:2", "digits:3", "digits:4+") if g in report]
    n = sum(g["tokens"] for g in numeral)
    return {
        "ce_token": nll / tokens,
        "ppl": math.exp(nll / tokens),
        "nats_per_char": nll / chars,
        "multi_acc": sum(g["accuracy"] * g["tokens"] for g in numeral) / max(n, 1),
        "multi_p_true": sum(g["p_true"] * g["tokens"] for g in numeral) / max(n, 1),
        "mass@numeral": report.get("multi_digit_mass@numeral", float("nan")),
        "mass@other": report.get("multi_digit_mass@other", float("nan")),
        "other_acc": report.get("other", {}).get("accuracy", float("nan")),
        "arith_em": answer_exact_match(model, vocab, arith, device, max_new_tokens=12)["exact_match"],
        "next_token": report,
        **{f"pos_{k}@{where}": g[k] for where, g in positions.items() for k in ("acc", "ce")},
        "positions": positions,
    }


def training_signs(run_dir: Path) -> dict:
    """From metrics.jsonl: steps whose KD value was negative (H-KL and GOLD can be), the smallest KD
    value, the mean dynamic KD scale |ce| / |kd| and (P-KL) the mean teacher mass W cannot reach."""
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    unreachable = [v for r in steps for k, v in r.items() if k.startswith("unreachable/")]
    return {
        "kd_negative_steps": sum(r["kd"] < 0 for r in steps),
        "kd_min": min(r["kd"] for r in steps),
        "kd_scale_mean": sum(r["kd_scale"] for r in steps) / len(steps),
        "unreachable_mean": sum(unreachable) / len(unreachable) if unreachable else None,
    }
