"""Peak memory and time of forward+backward: losses from hidden states in position chunks
(`OutputHead`, loss.chunk_positions) against the same losses on full logits.

Setting (issue 15): V_S = 128,256 (Llama-3), V_T = 151,669 (Qwen3), 4,096 positions per side, hidden
512, random hidden states and output layers in float32, W = the real Llama-3 x Qwen3 build when the
demo tokenizers are available (else a random K = 4 W, said in the output), the synthetic alignment of
bench/distill_losses.py (80% 1:1 chunks), aggregation `mean`. Both variants include the output
layers: logit-based computes z = h Wᵀ for student (with gradient) and teacher (without), then the loss
and its backward to h and W; chunked does the same through `OutputHead(h, W, chunk_positions=c)`.

Each (loss, variant) runs in a fresh process: peak memory is the resident high-water mark
(/proc/self/status VmHWM, reset with /proc/self/clear_refs after the inputs are built) above the
resident size then; torch's CPU allocator returns large blocks to the OS, so this is the real peak
of the step (on CUDA: torch.cuda.max_memory_allocated above the inputs). Time is the median of
`--rounds` fwd+bwd after one warm-up in that process (the machine may be shared). Goal: chunked peak
≤ 0.25x logit-based at ≤ 1.3x its time.

    python bench/chunked_losses.py [--positions 4096] [--hidden 512] [--chunk 1024] [--rounds 2]
                                   [--losses ce p_kl] [--device cpu|cuda] [--random-w]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from distill_losses import V_S, V_T, real_or_random_w  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("ce", "p_kl", "h_kl", "uld", "kd")


def chunk_ids(positions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(student_chunk, teacher_chunk) (1, positions) each: 80% 1:1 chunks, 15% 1:2-3, 5% 2:1."""
    rng = np.random.default_rng(seed)
    student, teacher, chunk = [], [], 0
    shapes, odds = [(1, 1), (1, 2), (1, 3), (2, 1)], [0.8, 0.1, 0.05, 0.05]
    while True:
        s_len, t_len = shapes[rng.choice(len(shapes), p=odds)]
        if len(student) + s_len > positions or len(teacher) + t_len > positions:
            break
        student += [chunk] * s_len
        teacher += [chunk] * t_len
        chunk += 1
    return tuple(np.asarray([ids + [-1] * (positions - len(ids))]) for ids in (student, teacher))


def setup(w_path: str, name: str, chunk: int, positions: int, hidden: int, device: str):
    """A closure running one fwd+bwd of `name` (chunk 0 = on full logits), and the student leaves."""
    import torch

    from xtoken_align.distill.losses import OutputHead, cross_entropy, make_loss
    from xtoken_align.distill.sparse_w import ProjectionW

    g = torch.Generator().manual_seed(0)
    v_t = V_S if name == "kd" else V_T
    h_s = torch.randn(1, positions, hidden, generator=g).to(device).requires_grad_()
    w_s = (torch.randn(V_S, hidden, generator=g) / hidden**0.5).to(device).requires_grad_()
    h_t = torch.randn(1, positions, hidden, generator=g).to(device)
    w_t = (torch.randn(v_t, hidden, generator=g) / hidden**0.5).to(device)
    s_chunk, t_chunk = (torch.as_tensor(x, device=device) for x in chunk_ids(positions))
    labels = torch.randint(0, V_S, (1, positions), generator=g).to(device)
    if name == "ce":
        loss = None
    else:
        kwargs = {}
        if name in ("p_kl", "h_kl"):
            arrays = np.load(w_path)
            kwargs["w"] = ProjectionW(arrays["indptr"], arrays["indices"], arrays["data"], (V_S, V_T)).to(device)
        loss = make_loss(name, **kwargs).to(device)
        if name == "kd":
            t_chunk = s_chunk

    def run() -> None:
        if chunk:
            student, teacher = OutputHead(h_s, w_s, None, chunk), OutputHead(h_t, w_t, None, chunk)
        else:
            student = torch.nn.functional.linear(h_s, w_s)
            with torch.no_grad():
                teacher = torch.nn.functional.linear(h_t, w_t)
        value = cross_entropy(student, labels) if loss is None else loss(student, teacher, s_chunk, t_chunk, labels)
        value.backward()

    return run, (h_s, w_s)


CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from chunked_losses import setup
w_path, name, device = sys.argv[2], sys.argv[3], sys.argv[7]
chunk, positions, hidden, rounds = (int(sys.argv[i]) for i in (4, 5, 6, 8))
run, leaves = setup(w_path, name, chunk, positions, hidden, device)
import torch

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

def sync():
    if device == "cuda":
        torch.cuda.synchronize()

if device == "cuda":
    sync(); base = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
else:
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
seconds = []
for round_ in range(rounds + 1):  # round 0 warms up (and sets the peak like every other round)
    for leaf in leaves:
        leaf.grad = None
    sync(); started = time.perf_counter()
    run()
    sync()
    if round_:
        seconds.append(time.perf_counter() - started)
peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else status("VmHWM:") - base
print(json.dumps({"peak_bytes": peak, "seconds": statistics.median(seconds)}))
"""


def measure(w_path: str, name: str, chunk: int, args) -> dict:
    command = [sys.executable, "-c", CHILD, str(Path(__file__).parent), w_path, name, str(chunk),
               str(args.positions), str(args.hidden), args.device, str(args.rounds)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--chunk", type=int, nargs="+", default=[1024], help="chunk_positions to measure")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--losses", nargs="+", default=["ce", "p_kl"], choices=LOSSES)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--random-w", action="store_true", help="a random K=4 W even if the tokenizers are here")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        w_path, what = real_or_random_w(Path(folder), args.random_w or not {"p_kl", "h_kl"} & set(args.losses))
        print(f"V_S={V_S:,} V_T={V_T:,} positions={args.positions} hidden={args.hidden} float32 "
              f"device={args.device}; {what}")  # fmt: skip
        print(f"{'loss':<6}{'chunk':>7}{'fwd+bwd s':>11}{'x logits':>10}{'peak MB':>10}{'x logits':>10}  goal")
        for name in args.losses:
            base = measure(str(w_path), name, 0, args)
            base_mb = base["peak_bytes"] / 2**20
            print(f"{name:<6}{'logits':>7}{base['seconds']:>11.2f}{1:>10.2f}{base_mb:>10.0f}{1:>10.2f}")
            for chunk in args.chunk:
                got = measure(str(w_path), name, chunk, args)
                time_ratio, memory_ratio = got["seconds"] / base["seconds"], got["peak_bytes"] / base["peak_bytes"]
                met = "met" if time_ratio <= 1.3 and memory_ratio <= 0.25 else "missed"
                row = f"{'':<6}{chunk:>7}{got['seconds']:>11.2f}{time_ratio:>10.2f}{got['peak_bytes'] / 2**20:>10.0f}"
                print(f"{row}{memory_ratio:>10.2f}  <=1.3x time, <=0.25x memory: {met}")
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
