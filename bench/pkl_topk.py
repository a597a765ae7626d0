"""How well does top-k P-KL stand for full-vocabulary P-KL? Which treatment of the student is closer?

Setting (issue 12): student Llama-3 (V_S = 128,256), teacher Qwen3 (V_T = 151,669), the real W
(`build_projection(load_vocab("demo:llama3"), load_vocab("demo:qwen3"))`), one micro-batch of real
GSM8K test solutions encoded and aligned as the runner does (`encode_texts`, `DistillDataset`,
`collate`; aggregation `mean`). Logits are synthetic, with the shape of an LM's: at position i over
token id v (ids of BPE vocabularies run roughly from frequent to rare),

    z[i, v] = −α·log(1 + v) + σ·ε[i, v] + β·[v = the actual next token at i],   ε ~ N(0, 1),

on both sides, with independent noise: `peaked` (LM-like: the teacher's top-1 probability about
0.6, the rest on frequent ids), `peaked-scattered` (as peaked, the rest a heavy tail over random ids,
no frequency prior), `moderate`, `flat` (close to uniform). The table gives their mean teacher entropy and top-1
probability.

For top-k ∈ {1024, 4096, 8192} and both treatments of the projected student's mass outside the k
columns (`renormalise` within them, as the reference code does; `drop` it, unnormalised), the
gradient cosine wrt the student logits and the relative value error |L_k − L| / L against P-KL
over every column W reaches (where the two treatments are the same loss: Wᵀp_S sums to 1).

    python bench/pkl_topk.py [--texts 4] [--max-length 128] [--regimes peaked flat ...]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REGIMES = {  # α, σ, β
    "peaked": (1.5, 1.0, 10.0),  # frequent ids and the next token share the mass: top-k sees nearly all of it
    "peaked-scattered": (0.0, 2.5, 16.0),  # peaked on the next token, the rest a heavy random tail
    "moderate": (1.0, 1.0, 8.0),
    "flat": (0.0, 0.5, 0.0),
}
TOPKS, TREATMENTS = (1024, 4096, 8192), ("renormalise", "drop")


def micro_batch(texts: int, max_length: int):
    """(student vocab, teacher vocab, W, collated batch) of the first `texts` GSM8K test solutions."""
    shared = ROOT.parent / "shared" / "tokenizers"
    if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and shared.is_dir():
        os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(shared)
    from xtoken_align.distill.data import DistillDataset, collate, encode_texts, load_texts
    from xtoken_align.distill.sparse_w import ProjectionW
    from xtoken_align.projection import build_projection
    from xtoken_align.vocab import load_vocab

    student, teacher = load_vocab("demo:llama3"), load_vocab("demo:qwen3")
    w = ProjectionW.from_projection(build_projection(student, teacher, progress=False))
    corpus = load_texts(ROOT / "xtoken_align" / "data" / "gsm8k" / "test.jsonl", limit=texts)
    encoded = encode_texts(corpus, student, {"qwen": teacher}, max_length)
    dataset = DistillDataset(encoded, student, {"qwen": teacher})
    return student, teacher, w, collate([dataset[i] for i in range(len(dataset))])


def lm_like_logits(ids: torch.Tensor, mask: torch.Tensor, size: int, regime: str, seed: int) -> torch.Tensor:
    """(B, T) ids -> (B, T, size) logits of the form in the module docstring."""
    alpha, sigma, beta = REGIMES[regime]
    g = torch.Generator().manual_seed(seed)
    z = sigma * torch.randn(*ids.shape, size, generator=g)
    z -= alpha * torch.log1p(torch.arange(size, dtype=torch.float32))
    following = torch.where(mask[:, 1:].bool(), ids[:, 1:], -1)
    rows, cols = torch.nonzero(following >= 0, as_tuple=True)
    z[rows, cols, following[rows, cols]] += beta
    return z


def regime_logits(batch: dict, size_s: int, size_t: int, regimes: list[str]):
    """(regime, student logits, teacher logits) for each of `regimes` in REGIMES order, seeded by its
    place there (the same logits in every bench here)."""
    t_ids, t_mask = batch["teacher_input_ids"]["qwen"], batch["teacher_attention_mask"]["qwen"]
    for n, regime in enumerate(REGIMES):
        if regime in regimes:
            z_s = lm_like_logits(batch["input_ids"], batch["attention_mask"], size_s, regime, seed=2 * n)
            yield regime, z_s, lm_like_logits(t_ids, t_mask, size_t, regime, seed=2 * n + 1)


def run(module, z_s, z_t, s_chunk, t_chunk, labels) -> tuple[float, torch.Tensor, float]:
    """Value, flattened gradient wrt the student logits, seconds for forward + backward."""
    student = z_s.clone().requires_grad_()
    started = time.perf_counter()
    value = module(student, z_t, s_chunk, t_chunk, labels)
    value.backward()
    return float(value.detach()), student.grad.reshape(-1), time.perf_counter() - started


def measure(texts: int, max_length: int, regimes: list[str]) -> tuple[list[dict], dict]:
    from xtoken_align.distill.losses import PKLLoss

    _, _, w, batch = micro_batch(texts, max_length)
    s_chunk, t_chunk = batch["student_chunk"]["qwen"], batch["teacher_chunk"]["qwen"]
    t_mask = batch["teacher_attention_mask"]["qwen"]
    about = {
        "positions": (int(batch["attention_mask"].sum()), int(t_mask.sum())),
        "chunks": int(s_chunk.max()) + 1,
        "reachable": int(w.reachable.sum()),
    }
    rows = []
    for regime, z_s, z_t in regime_logits(batch, *w.shape, regimes):
        p_t = torch.softmax(z_t[t_mask.bool()], -1)
        entropy = float(-(p_t * torch.log(p_t.clamp_min(1e-30))).sum(-1).mean())
        top1 = float(p_t.max(-1).values.mean())
        del p_t

        inputs = (z_s, z_t, s_chunk, t_chunk, batch["labels"])
        full, full_grad, full_s = run(PKLLoss(w, topk=w.shape[1]), *inputs)
        check, _, _ = run(PKLLoss(w, topk=w.shape[1], student="drop"), *inputs)
        for topk in TOPKS:
            for treatment in TREATMENTS:
                value, grad, seconds = run(PKLLoss(w, topk=topk, student=treatment), *inputs)
                cosine = float(torch.nn.functional.cosine_similarity(grad, full_grad, dim=0))
                rows.append({
                    "regime": regime, "entropy": entropy, "top1": top1, "topk": topk, "treatment": treatment,
                    "cosine": cosine, "rel_error": abs(value - full) / abs(full), "value": value, "full": full,
                    "full_drop": check, "seconds": seconds, "full_seconds": full_s,
                })  # fmt: skip
    return rows, about


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    rows, about = measure(args.texts, args.max_length, args.regimes)
    s_pos, t_pos = about["positions"]
    print(f"Llama-3 128,256 x Qwen3 151,669, real W ({about['reachable']:,} teacher ids reachable); "
          f"{args.texts} GSM8K texts, {s_pos} student / {t_pos} teacher positions, {about['chunks']} chunks; "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    print()
    print("| logits | teacher entropy (nats) | teacher top-1 p | top-k | student outside the columns "
          "| gradient cosine | relative value error |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['regime']} | {r['entropy']:.2f} | {r['top1']:.2f} | {r['topk']:,} | {r['treatment']} "
              f"| {r['cosine']:.3f} | {r['rel_error']:.3f} |")  # fmt: skip
    print()
    for regime in args.regimes:
        r = next(x for x in rows if x["regime"] == regime)
        print(f"{regime}: full P-KL {r['full']:.4f} (drop: {r['full_drop']:.4f}), {r['full_seconds']:.1f} s fwd+bwd")


if __name__ == "__main__":
    main()
