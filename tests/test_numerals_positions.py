"""The numerals study's per-position breakdown (experiments/numerals/positions.py): which target tokens
count as inside a multi-digit number, right after one, or elsewhere, for byte-level BPE (Llama-3) and
SentencePiece (Llama-2) spellings, and a breakdown that covers every predicted position once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import vocab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "numerals"))

from positions import position_breakdown, position_classes  # noqa: E402

TEXT = "add 1234 now, 5 and 67."


@pytest.mark.parametrize("name", ["llama3", "llama2"])
def test_tokens_overlapping_a_multi_digit_number_are_numeral_positions(name: str) -> None:
    v = vocab(name)
    encoding = v.tokenizer.encode(TEXT, add_special_tokens=False)
    classes = position_classes(v, TEXT, encoding.ids)
    assert len(classes) == len(encoding.ids)
    pieces = {c: [TEXT[a:b] for (a, b), k in zip(encoding.offsets, classes, strict=True) if k == c] for c in classes}
    assert "".join(pieces["numeral"]).replace(" ", "") == "123467"  # the single digit 5 is not a numeral
    assert [p.strip() for p in pieces["after"]] == ["now", "."]


@pytest.mark.slow
def test_the_breakdown_counts_every_predicted_position_once(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from xtoken_align.distill.models import tiny_model

    v = vocab("llama3")
    folder = tiny_model("llama", v, tmp_path / "model", hidden=16, layers=1, heads=2, seed=0)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    texts = [TEXT, "1 + 22 = 23\n#### 23"]
    lengths = [len(v.tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]  # + BOS, cut at 10
    found = position_breakdown(model, v, texts, {"max_length": 10}, torch.device("cpu"))
    assert sum(g["tokens"] for g in found.values()) == sum(min(n + 1, 10) - 1 for n in lengths)
    assert found["numeral"]["tokens"] > 0 and found["after"]["tokens"] > 0
    assert all(0 <= g["acc"] <= 1 and g["ce"] > 0 for g in found.values())
