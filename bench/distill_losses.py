"""Forward+backward time and peak memory of the cross-tokenizer losses against plain same-vocabulary KL.

Setting (issue 6): V_S = 128,256 (Llama-3), V_T = 151,669 (Qwen3), 256 positions per side, random
logits, W = the real Llama-3 x Qwen3 build when the demo tokenizers are available (else a random
sparse W with K = 4, said in the output). Chunks: a synthetic alignment where 80% of chunks are 1:1,
15% one student token to 2-3 teacher tokens (numerals), 5% two student tokens to one teacher token;
aggregation `mean`. Plain KL = `kd` on (256, V_S) student and teacher logits.

Times are medians over rounds that interleave the losses (the machine may be shared); memory is
the peak resident memory above the inputs, each loss measured once in a fresh process (CPU), or
torch.cuda.max_memory_allocated above the inputs (CUDA). Goals: p_kl <= 1.3x, h_kl <= 2x plain KL.

    python bench/distill_losses.py [--rounds 7] [--device cpu|cuda] [--losses kd p_kl h_kl uld] [--random-w]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
V_S, V_T, POSITIONS = 128_256, 151_669, 256


def real_or_random_w(folder: Path, random_w: bool = False) -> tuple[Path, str]:
    """W as CSR arrays in an .npz (children load it in milliseconds) and a description of it."""
    shared = ROOT.parent / "shared" / "tokenizers"
    if "XTOKEN_ALIGN_TOKENIZERS" not in os.environ and shared.is_dir():
        os.environ["XTOKEN_ALIGN_TOKENIZERS"] = str(shared)
    try:
        if random_w:
            raise LookupError("--random-w")
        from xtoken_align.projection import build_projection
        from xtoken_align.vocab import load_vocab

        projection = build_projection(load_vocab("demo:llama3"), load_vocab("demo:qwen3"), progress=False)
        m, what = projection.matrix, "real Llama-3 x Qwen3 W"
    except Exception as exc:  # no demo tokenizers here: same shapes, random rows of K = 4
        import scipy.sparse as sp

        rng = np.random.default_rng(0)
        data = rng.random((V_S, 4)).astype(np.float32)
        data /= data.sum(1, keepdims=True)
        cols = np.sort(rng.choice(V_T, size=(V_S, 4)), axis=1)  # duplicates are summed by scipy
        m = sp.csr_array((data.ravel(), cols.ravel(), np.arange(0, 4 * V_S + 1, 4)), shape=(V_S, V_T))
        m.sum_duplicates()
        what = f"random W, K=4 (no real W: {type(exc).__name__}: {exc})"
    path = folder / "w.npz"
    np.savez(path, indptr=m.indptr, indices=m.indices, data=m.data)
    return path, f"{what}, nnz={m.nnz:,}"


def chunk_ids(seed: int = 0):
    """(student_chunk, teacher_chunk) int64 (1, 256) each; -1 after the shorter side ends."""
    rng = np.random.default_rng(seed)
    student, teacher, chunk = [], [], 0
    shapes, odds = [(1, 1), (1, 2), (1, 3), (2, 1)], [0.8, 0.1, 0.05, 0.05]
    while True:
        s_len, t_len = shapes[rng.choice(len(shapes), p=odds)]
        if len(student) + s_len > POSITIONS or len(teacher) + t_len > POSITIONS:
            break
        student += [chunk] * s_len
        teacher += [chunk] * t_len
        chunk += 1
    return tuple(np.asarray([ids + [-1] * (POSITIONS - len(ids))]) for ids in (student, teacher))


def setup(w_path: str, names: list[str], device: str):
    import torch

    from xtoken_align.distill.losses import make_loss
    from xtoken_align.distill.sparse_w import ProjectionW

    arrays = np.load(w_path)
    w = ProjectionW(arrays["indptr"], arrays["indices"], arrays["data"], (V_S, V_T)).to(device)
    g = torch.Generator().manual_seed(0)
    s_chunk, t_chunk = (torch.as_tensor(x, device=device) for x in chunk_ids())
    student = torch.randn(1, POSITIONS, V_S, generator=g).to(device).requires_grad_()
    teacher = torch.randn(1, POSITIONS, V_T, generator=g).to(device)
    same_vocab_teacher = torch.randn(1, POSITIONS, V_S, generator=g).to(device)
    labels = torch.randint(0, V_S, (1, POSITIONS), generator=g).to(device)
    runs = {}
    for name in names:
        kwargs = {"p_kl": {"w": w}, "h_kl": {"w": w}}.get(name, {})
        loss = make_loss(name, **kwargs).to(device)
        t = same_vocab_teacher if name == "kd" else teacher
        runs[name] = lambda loss=loss, t=t: loss(student, t, s_chunk, t_chunk, labels).backward()
    return student, runs


def timing(w_path: str, names: list[str], rounds: int, device: str) -> dict[str, float]:
    import torch

    student, runs = setup(w_path, names, device)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds + 1):  # round 0 warms up
        for name, run in runs.items():
            student.grad = None
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if device == "cuda":
                torch.cuda.synchronize()
            if round_:
                seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[4])
from distill_losses import setup
w_path, name, device = sys.argv[1:4]
student, runs = setup(w_path, [name], device)
if device == "cuda":
    import torch
    torch.cuda.synchronize(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
    runs[name](); torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
    runs[name]()
    peak = status("VmHWM:") - base
print(json.dumps({"peak_bytes": peak}))
"""


def peak_memory(w_path: str, name: str, device: str) -> float:
    command = [sys.executable, "-c", CHILD, w_path, name, device, str(Path(__file__).parent)]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    # gold is h_kl's code with another common set (and needs the vocabularies), so it is not offered
    parser.add_argument("--losses", nargs="+", default=["kd", "p_kl", "h_kl"], choices=["kd", "p_kl", "h_kl", "uld"])
    parser.add_argument("--no-memory", action="store_true", help="skip the per-loss memory processes")
    parser.add_argument("--random-w", action="store_true", help="a random K=4 W even if the tokenizers are here")
    args = parser.parse_args()
    names = ["kd", *[n for n in args.losses if n != "kd"]]
    with tempfile.TemporaryDirectory() as folder:
        w_path, what = real_or_random_w(Path(folder), args.random_w)
        s_chunk, t_chunk = chunk_ids()
        chunks = len(set(s_chunk[0].tolist()) - {-1})
        print(f"V_S={V_S:,} V_T={V_T:,} positions={POSITIONS} chunks={chunks} aggregation=mean; {what}")
        seconds = timing(str(w_path), names, args.rounds, args.device)
        memory = {} if args.no_memory else {n: peak_memory(str(w_path), n, args.device) for n in names}
    goals = {"p_kl": 1.3, "h_kl": 2.0}
    print(f"{'loss':<8}{'fwd+bwd s':>11}{'x plain':>9}{'peak MB':>10}{'x plain':>9}  goal")
    for name in names:
        row = f"{name:<8}{seconds[name]:>11.3f}{seconds[name] / seconds['kd']:>9.2f}"
        if memory:
            row += f"{memory[name] / 2**20:>10.0f}{memory[name] / memory['kd']:>9.2f}"
        print(row + (f"  <= {goals[name]}x" if name in goals else "  (plain KL)" if name == "kd" else ""))


if __name__ == "__main__":
    main()
