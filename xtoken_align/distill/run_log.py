"""What a run reports as it goes, on the main rank only: the progress bar, `metrics.jsonl` (one record
every `output.log_every` steps and at the last step), `eval.jsonl` (one summary per evaluation) and,
at the end, `metrics.html` (the curves). Left out: computing the records (training_step.py, evaluate.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm

from xtoken_align.distill.config import DistillConfig


def quiet_libraries() -> None:
    """Our progress only: no third-party loading bars or advisory warnings on the terminal."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


class RunLog:
    def __init__(self, out: Path, config: DistillConfig, main: bool) -> None:
        self.out, self.config, self.main = out, config, main

    def progress(self, start: int, end: int) -> tqdm:
        return tqdm(range(start, end), desc="distill", disable=not self.main or None)

    def step(self, bar: tqdm, step: int, record: dict) -> None:
        """Show `record` (of 0-based `step`) on the bar; append it to metrics.jsonl when it is due."""
        if not self.main:
            return
        bar.set_postfix(
            loss=f"{record['loss']:.3f}", kd=f"{record['kd']:.3f}", ce=f"{record['ce']:.3f}",
            tok_s=f"{record['tokens_per_s']:.0f}",
        )  # fmt: skip
        if step % self.config.output.log_every == 0 or step + 1 == self.config.training.steps:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")

    def evaluation(self, summary: dict) -> None:
        with (self.out / "eval.jsonl").open("a") as f:
            f.write(json.dumps(summary) + "\n")

    def plot(self) -> None:
        from xtoken_align.distill.evaluate import plot_metrics

        plot_metrics(self.out / "metrics.jsonl", self.out / "metrics.html")
