"""Evaluation hooks of a run: next-token accuracy per category (numerals by digit count apart from
the rest), probability mass on multi-digit numerals, GSM8K-style answer exact match by greedy
generation, and the loss curves as a self-contained plot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from xtoken_align.distill.config import DistillConfig
from xtoken_align.vocab import Vocab

NUMERAL_GROUPS = ("digits:1", "digits:2", "digits:3", "digits:4+")
_ANSWER = re.compile(r"####\s*(-?[\d,\.]+)")


def _eval_texts(config: DistillConfig) -> list[str]:
    from xtoken_align.distill.data import load_texts

    files = config.data.eval or config.data.train
    return load_texts(files, limit=config.eval.texts) if config.eval.texts else []


def prompt_ids(vocab: Vocab, text: str, limit: int | None = None) -> list[int]:
    """One BOS (as training sequences start, data.bos_id), then the first `limit` ids of `text`. The
    tokenizer's post-processor is bypassed: it may add a BOS of its own (Llama-3.1's tokenizer.json,
    Llama-2), and the prompt would start with two. Llama-3.1, "Hi" -> [128000, 13347]."""
    from xtoken_align.distill.data import bos_id

    bos = bos_id(vocab)
    return ([] if bos is None else [bos]) + vocab.tokenizer.encode(text, add_special_tokens=False).ids[:limit]


@torch.no_grad()
def next_token_report(model, vocab: Vocab, texts: list[str], device, max_length: int = 256) -> dict:
    """Accuracy and mean probability of the true next token, per category of that token; and the
    student's total probability mass on multi-digit numeral tokens at numeral vs other positions."""
    model.eval()
    categories = np.asarray(vocab.categories)
    multi = torch.tensor(np.isin(categories, NUMERAL_GROUPS[1:]), device=device)
    hits: dict[str, list[float]] = {}
    for text in texts:
        ids = prompt_ids(vocab, text, limit=max_length - 1)
        if len(ids) < 2:
            continue
        inputs = torch.tensor([ids], device=device)
        probs = torch.softmax(model(input_ids=inputs).logits[0, :-1].float(), dim=-1)  # the model as it is,
        if probs.shape[-1] > len(multi):  # padded output rows included (they are no numerals)
            multi = torch.cat([multi, multi.new_zeros(probs.shape[-1] - len(multi))])
        target = inputs[0, 1:]
        correct = (probs.argmax(-1) == target).cpu().numpy()
        p_true = probs.gather(-1, target[:, None])[:, 0].cpu().numpy()
        mass = probs[:, multi].sum(-1).cpu().numpy()
        for k, token in enumerate(target.tolist()):
            group = categories[token] if categories[token] in NUMERAL_GROUPS else "other"
            hits.setdefault(group, []).append(correct[k])
            hits.setdefault(f"p:{group}", []).append(p_true[k])
            multi_position = categories[token] in NUMERAL_GROUPS[1:]
            hits.setdefault("multi_digit_mass@numeral" if multi_position else "multi_digit_mass@other", []).append(
                mass[k]
            )
    model.train()
    report = {}
    for group in (*NUMERAL_GROUPS, "other"):
        if group in hits:
            report[group] = {
                "tokens": len(hits[group]),
                "accuracy": round(float(np.mean(hits[group])), 4),
                "p_true": round(float(np.mean(hits[f"p:{group}"])), 4),
            }
    for key in ("multi_digit_mass@numeral", "multi_digit_mass@other"):
        if key in hits:
            report[key] = round(float(np.mean(hits[key])), 4)
    return report


@torch.no_grad()
def answer_exact_match(
    model, vocab: Vocab, problems: list[dict], device, max_new_tokens: int = 64, synced: bool = False
) -> dict:
    """Greedy generation from `question\\n`; a match when the number after `####` equals the reference.
    `synced`: every rank generates (a sharded model), each to `max_new_tokens`, so their collectives match."""
    model.eval()
    eos = vocab.roles().get("eos")
    correct = 0
    for problem in problems:
        ids = prompt_ids(vocab, problem["question"] + "\n")
        output = model.generate(
            torch.tensor([ids], device=device), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
            pad_token_id=eos if eos is not None else 0, synced_gpus=synced,
        )  # fmt: skip
        text = vocab.tokenizer.decode(output[0, len(ids) :].tolist())
        found, wanted = _ANSWER.search(text), _ANSWER.search(problem["answer"])
        correct += bool(found and wanted and found.group(1).replace(",", "") == wanted.group(1).replace(",", ""))
    model.train()
    return {"problems": len(problems), "exact_match": round(correct / len(problems), 4) if problems else 0.0}


def evaluate_student(model, vocab: Vocab, config: DistillConfig, device, synced: bool = False) -> dict:
    """The next-token report and, when configured, GSM8K exact match; `synced`: all ranks of a sharded
    student call this (sharding.gathered_root) and get the same result."""
    summary = {"next_token": next_token_report(model, vocab, _eval_texts(config), device, config.data.max_length)}
    if config.eval.gsm8k_problems:
        from xtoken_align.corpus import default_corpus

        rows = [json.loads(line) for line in default_corpus().read_text().splitlines()[: config.eval.gsm8k_problems]]
        summary["gsm8k"] = answer_exact_match(model, vocab, rows, device, config.eval.max_new_tokens, synced)
    return summary


def plot_metrics(metrics: Path, output: Path) -> None:
    """Loss, CE and KD per step as one self-contained HTML file (plotly.js inlined)."""
    import plotly.graph_objects as go

    if not metrics.is_file():
        return
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    figure = go.Figure()
    for key in [k for k in rows[0] if k in ("loss", "ce", "kd") or k.startswith("kd/")]:
        figure.add_scatter(x=[r["step"] for r in rows], y=[r.get(key) for r in rows], name=key, mode="lines")
    figure.update_layout(title="Distillation losses", xaxis_title="step", yaxis_title="loss", template="plotly_white")
    figure.write_html(output, include_plotlyjs=True, full_html=True)
