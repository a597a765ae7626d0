"""bench/gpu_step.py in its CPU smoke mode: every variant runs the runner's step and reports finite
figures; without CUDA the default device stops with one line and exit 2."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_step.py"
VARIANTS = ("CE", "P-KL live", "P-KL cached", "H-KL live")


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_variant_with_finite_figures(tmp_path: Path) -> None:
    done = run("--tiny", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {}
    for line in done.stdout.splitlines():
        for name in VARIANTS:
            if re.match(rf"{re.escape(name)}\s+\d", line):
                rows[name] = line[len(name) :].split()
    assert set(rows) == set(VARIANTS), done.stdout
    for name, cells in rows.items():
        tokens_s, step_s, peak, loss = (float(cells[i].replace(",", "")) for i in (0, 1, 2, -1))
        assert all(math.isfinite(x) and x > 0 for x in (tokens_s, step_s, peak)), (name, cells)
        assert math.isfinite(loss), (name, cells)
    assert "teacher positions/s" in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_default_device_without_cuda_stops_with_one_line(tmp_path: Path) -> None:
    done = run("--tiny", cwd=tmp_path, CUDA_VISIBLE_DEVICES="")  # no GPU visible, on any machine
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "CUDA is not available" in done.stderr
