"""Evaluation hooks on tiny real-architecture models with real tokenizers: the prompts a student
generates from start the way its training sequences do, with one BOS."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import vocab

from xtoken_align.distill.data import bos_id, encode_texts
from xtoken_align.distill.evaluate import answer_exact_match, next_token_report, prompt_ids
from xtoken_align.distill.models import tiny_model

PROBLEM = {"question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "3 + 4 = 7\n#### 7"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama3.1", "llama3", "llama2"])
def test_generation_prompt_has_one_bos(name: str, tmp_path: Path, monkeypatch) -> None:
    """Llama-3.1's tokenizer.json (and Llama-2's) post-processor adds BOS itself: the prompt used to
    start [128000, 128000, ...] there. Now it is the training encoding of the question, one BOS."""
    from transformers import AutoModelForCausalLM

    v = vocab(name)
    model = AutoModelForCausalLM.from_pretrained(tiny_model("llama", v, tmp_path, hidden=16, layers=1))
    prompts = []
    generate = model.generate

    def recording(input_ids, **kw):
        prompts.append(input_ids[0].tolist())
        return generate(input_ids, **kw)

    monkeypatch.setattr(model, "generate", recording)
    result = answer_exact_match(model, v, [PROBLEM], torch.device("cpu"), max_new_tokens=2)
    assert result["problems"] == 1
    (prompt,) = prompts
    bos = v.roles()["bos"]
    assert prompt[0] == bos and prompt[1] != bos
    assert prompt == encode_texts([PROBLEM["question"] + "\n"], v, {}, 256)[0].student_ids.tolist()
    report = next_token_report(model, v, [PROBLEM["question"]], torch.device("cpu"))
    scored = sum(group["tokens"] for group in report.values() if isinstance(group, dict))
    assert scored == len(encode_texts([PROBLEM["question"]], v, {}, 256)[0].student_ids) - 1  # BOS to last


def test_prompt_ids_start_with_the_training_bos() -> None:
    assert prompt_ids(vocab("llama3.1"), "Hi") == [128000, 13347]
    assert vocab("llama3.1").tokenizer.encode("Hi").ids == [128000, 13347]  # its own post-processor adds BOS
    assert prompt_ids(vocab("llama2"), "Hi")[:2] == [1, 15359]
    assert prompt_ids(vocab("qwen3"), "Hi") == [13048]  # no BOS
    assert (
        bos_id(vocab("o200k")) is None
        and prompt_ids(vocab("o200k"), "Hi") == vocab("o200k").tokenizer.encode("Hi", add_special_tokens=False).ids
    )
    assert len(prompt_ids(vocab("llama3.1"), "one two three four", limit=2)) == 3
