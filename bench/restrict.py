"""What restricting the output layer buys a tiny model: one training step at the full Llama-3 vocabulary
against the same step at the vocabulary `xtoken-align restrict` keeps for a GSM8K corpus.

Setting: the numerals study's student (LlamaForCausalLM, hidden 64, 2 layers), batch 8 x 64 tokens of
GSM8K train solutions, forward + CE + backward + AdamW step. Times are medians over interleaved rounds
(the machine may be shared); the ratio is full / restricted.

    python bench/restrict.py [--rounds 7] [--texts 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--texts", type=int, default=3000)
    args = parser.parse_args()
    if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and (SHARED / "tokenizers").is_dir():
        os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(SHARED / "tokenizers")
    import torch

    from xtoken_align.distill.models import tiny_model
    from xtoken_align.distill.run_log import quiet_libraries
    from xtoken_align.restrict import restrict
    from xtoken_align.vocab import load_vocab

    quiet_libraries()  # the bench's own lines, not transformers' loading and saving bars
    lines = (ROOT / "experiments" / "data" / "gsm8k" / "train.jsonl").read_text().splitlines()[: args.texts]
    texts = [json.loads(line)["answer"] for line in lines]
    full = load_vocab("demo:llama3")
    started = time.perf_counter()
    restriction = restrict(full, texts)
    restrict_s = time.perf_counter() - started
    folder = Path(tempfile.mkdtemp())
    small = load_vocab(str(restriction.save(folder / "small")))

    steps = {}
    for name, vocab in (("full", full), ("restricted", small)):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(tiny_model("llama", vocab, folder / name, hidden=64, seed=0))
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = [e.ids[:64] for e in vocab.tokenizer.encode_batch(texts[:8], add_special_tokens=False)]
        batch = torch.tensor([x + [0] * (64 - len(x)) for x in ids])

        def step(model=model, optimiser=optimiser, batch=batch) -> None:
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()

        step()  # warm-up
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    full_s, small_s = (statistics.median(times[n]) for n in ("full", "restricted"))
    print(
        f"vocabulary: {full.size:,} -> {small.size:,} tokens"
        f" ({args.texts:,} GSM8K texts; restrict took {restrict_s:.1f} s)"
    )
    print(
        f"training step: full {full_s * 1000:.0f} ms, restricted {small_s * 1000:.0f} ms:"
        f" {full_s / small_s:.1f}x faster"
    )


if __name__ == "__main__":
    main()
