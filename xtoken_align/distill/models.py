"""Tiny, randomly initialised causal LMs of real architectures, for tests and CPU-sized studies.

`tiny_model("llama", vocab)` builds a LlamaForCausalLM (or Qwen3ForCausalLM) with the vocabulary of
a real tokenizer and a few small layers, and saves it with that tokenizer's files into a folder
that `DistillConfig.student.model` / `teachers[].model` can point at.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xtoken_align.tokenizer_folder import role_config, save_tokenizer_folder
from xtoken_align.vocab import Vocab

FAMILIES = ("llama", "qwen3")


def tiny_model(
    family: str,
    vocab: Vocab,
    folder: str | Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    output_rows: int | None = None,
) -> Path:
    """Create, initialise (seeded) and save a tiny model plus its tokenizer; returns the folder.
    `output_rows` > vocab.size pads the output layer as real checkpoints do (Qwen3: 151,936)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    dims = dict(
        vocab_size=output_rows or vocab.size, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=vocab.roles().get("bos"), eos_token_id=vocab.roles().get("eos"), attention_dropout=0.0,
    )  # fmt: skip
    if output_rows is not None and output_rows < vocab.size:
        raise ValueError(f"output_rows {output_rows} is below the tokenizer's {vocab.size} tokens")
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**dims))
    else:
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=hidden // heads, **dims))
    folder = save_tokenizer_folder(folder, vocab.tokenizer, role_config(vocab))  # the roles travel with it
    model.save_pretrained(folder, safe_serialization=True)
    return folder
