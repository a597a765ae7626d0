"""How far apart are `loss.semantics: ours` and `reference` (NeMo-RL's formulas) on one real input?

Setting: bench/pkl_topk.py's (student Llama-3, teacher Qwen3, the real W, one micro-batch of GSM8K
test solutions encoded, aligned and collated as the runner does; aggregation `mean`; LM-shaped
synthetic logits in the regimes defined there), float32. For P-KL (top-k 8192) with each of the
reference's four differences alone and with all four, and for H-KL and GOLD, the reference's value
against ours (ratio, relative difference |L_ref − L_ours| / |L_ours|) and the cosine between their
gradients wrt the student logits.

    python bench/reference_semantics.py [--texts 4] [--max-length 128] [--regimes peaked moderate flat]
"""

from __future__ import annotations

import argparse
import time

import torch
from pkl_topk import REGIMES, micro_batch, regime_logits, run


def measure(texts: int, max_length: int, regimes: list[str]) -> tuple[list[dict], dict]:
    from xtoken_align.distill.losses import GoldLoss, HKLLoss, PKLLoss, ReferencePKLLoss
    from xtoken_align.distill.losses.reference import DIFFERENCES, ReferenceGoldLoss, ReferenceHKLLoss

    student, teacher, w, batch = micro_batch(texts, max_length)
    s_chunk, t_chunk = batch["student_chunk"]["qwen"], batch["teacher_chunk"]["qwen"]
    t_mask = batch["teacher_attention_mask"]["qwen"]
    about = {"positions": (int(batch["attention_mask"].sum()), int(t_mask.sum())), "chunks": int(s_chunk.max()) + 1}
    pairs = {"p_kl (all four)": (PKLLoss(w), ReferencePKLLoss(w))}
    pairs |= {f"p_kl ({d} alone)": (PKLLoss(w), ReferencePKLLoss(w, differences=(d,))) for d in DIFFERENCES}
    pairs["h_kl"] = (HKLLoss(w), ReferenceHKLLoss(w))
    pairs["gold"] = (GoldLoss(student, teacher), ReferenceGoldLoss(student, teacher))
    rows = []
    for regime, z_s, z_t in regime_logits(batch, *w.shape, regimes):
        inputs = (z_s, z_t, s_chunk, t_chunk, batch["labels"])
        for name, (ours, reference) in pairs.items():
            (a, grad_a, _), (b, grad_b, _) = run(ours, *inputs), run(reference, *inputs)
            cosine = float(torch.nn.functional.cosine_similarity(grad_a.double(), grad_b.double(), dim=0))
            rows.append({"regime": regime, "loss": name, "ours": a, "reference": b, "cosine": cosine})
    return rows, about


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--regimes", nargs="+", default=["peaked", "moderate", "flat"], choices=list(REGIMES))
    args = parser.parse_args()
    started = time.perf_counter()
    rows, about = measure(args.texts, args.max_length, args.regimes)
    s_pos, t_pos = about["positions"]
    print(f"Llama-3 128,256 x Qwen3 151,669, real W; {args.texts} GSM8K texts, {s_pos} student / {t_pos} "
          f"teacher positions, {about['chunks']} chunks; {time.perf_counter() - started:.0f} s")  # fmt: skip
    print()
    print("| logits | loss | ours | reference | reference / ours | relative difference | gradient cosine |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio, rel = r["reference"] / r["ours"], abs(r["reference"] - r["ours"]) / abs(r["ours"])
        print(f"| {r['regime']} | {r['loss']} | {r['ours']:.4f} | {r['reference']:.4f} | {ratio:.3f} | {rel:.3f} "
              f"| {r['cosine']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
