"""`xtoken-align distill --demo`: a first run end to end (tiny models, the real Llama-3 and Qwen3
tokenizers, W, a cached teacher), its progress and its outputs; then the run again from its run.yaml
with the teacher's model folder deleted, which a cached teacher never reads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_and_its_cached_teacher_needs_no_model(run_cli, tmp_path) -> None:
    folder = tmp_path / "demo"
    first = run_cli("distill", "--demo", "--steps", "2", "--demo-dir", str(folder), "eval.texts=4", "--json")
    assert first.returncode == 0, first.stderr
    progress = first.stderr
    for phase in ("loading the Llama-3 and Qwen3 demo tokenizers", "building W", "caching the teacher",
                  "training steps 1-2 of 2", "done: everything is in"):  # fmt: skip
        assert phase in progress, progress
    # Every line on stderr is ours: no third-party bars, advisory warnings or loading messages.
    foreign = [line for line in progress.splitlines() if line and not re.match(r"(\[ *\d+\.\d s\] |starting: )", line)]
    assert foreign == [], foreign
    summary = json.loads(first.stdout)
    assert summary["steps"] == 2 and summary["last"]["kd/qwen3"] > 0
    written = json.loads((folder / "run" / "summary.json").read_text())
    assert written["artifacts"] == summary["artifacts"]
    for name in ("config", "metrics", "plot", "eval", "summary", "checkpoint", "student"):
        path = Path(summary["artifacts"][name])
        assert path.exists() and (folder / "run") in path.parents, name
    assert len((folder / "run" / "metrics.jsonl").read_text().splitlines()) == 2

    shutil.rmtree(folder / "models" / "teacher")  # the cache holds all the run needs from the teacher
    again = run_cli("distill", "--config", str(folder / "run.yaml"), "training.steps=1",
                    f"output.dir={tmp_path / 'again'}", "eval.texts=4", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == 1


def test_demo_refuses_a_config_too(run_cli, tmp_path) -> None:
    both = run_cli("distill", "--demo", "--config", str(tmp_path / "run.yaml"))
    assert both.returncode == 2 and "give --config run.yaml, or --demo" in both.stderr
    steps = run_cli("distill", "--config", str(tmp_path / "run.yaml"), "--steps", "3")
    assert steps.returncode == 2 and "--steps is for --demo" in steps.stderr
