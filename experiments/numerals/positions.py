"""Where in the text the student's predictions go wrong: per-token accuracy and CE of next-token
predictions whose target lies inside a multi-digit number, is the first token right after one, or
neither (issue 17: does the Qwen3 teacher's damage sit at numeral positions or everywhere?).
Left out: the study's other metrics (evaluation.py, xtoken_align.distill.evaluate)."""

from __future__ import annotations

import re

import torch

from xtoken_align.vocab import Vocab

POSITIONS = ("numeral", "after", "elsewhere")


def position_classes(vocab: Vocab, text: str, ids: list[int]) -> list[str]:
    """Per token of `text` (`ids`, its encoding without BOS): "numeral" if it overlaps a multi-digit
    number of the text (a run of ≥ 2 digits), "after" if it is the first token after one, else
    "elsewhere". Llama-3, "add 1234 now": add, Ġ, 123, 4, Ġnow -> elsewhere, elsewhere, numeral,
    numeral, after."""
    spans = [m.span() for m in re.finditer(r"\d{2,}", text)]
    offsets = vocab.tokenizer.encode(text, add_special_tokens=False).offsets[: len(ids)]
    inside = [any(a < e and s < b for s, e in spans) for a, b in offsets]
    return ["numeral" if inside[j] else "after" if j and inside[j - 1] else "elsewhere" for j in range(len(inside))]


def position_breakdown(model: torch.nn.Module, vocab: Vocab, texts: list[str], s: dict,
                       device: torch.device) -> dict[str, dict]:  # fmt: skip
    """Per-token accuracy and CE of the student's next-token predictions whose target is inside a
    multi-digit number, right after one, or elsewhere (position_classes), over `texts`, each cut to
    `s["max_length"]` tokens as in the study's other metrics -> {class: {tokens, acc, ce}}."""
    sums = {w: {"tokens": 0, "correct": 0, "nll": 0.0} for w in POSITIONS}
    bos = vocab.roles().get("bos")
    with torch.no_grad():
        for text in texts:
            body = vocab.tokenizer.encode(text, add_special_tokens=False).ids
            ids = (([bos] if bos is not None else []) + body)[: s["max_length"]]
            targets = ids[1:]
            classes = position_classes(vocab, text, body)
            classes = classes[: len(targets)] if bos is not None else classes[1 : len(ids)]
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            y = x[0, 1:]
            nll = torch.nn.functional.cross_entropy(logits, y, reduction="none").tolist()
            hit = (logits.argmax(-1) == y).tolist()
            for where, loss, ok in zip(classes, nll, hit, strict=True):
                sums[where]["tokens"] += 1
                sums[where]["correct"] += ok
                sums[where]["nll"] += loss
    nan = float("nan")
    return {w: {"tokens": g["tokens"], "acc": g["correct"] / g["tokens"] if g["tokens"] else nan,
                "ce": g["nll"] / g["tokens"] if g["tokens"] else nan} for w, g in sums.items()}  # fmt: skip
