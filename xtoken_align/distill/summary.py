"""What a distillation run reports when it ends: the document `xtoken-align distill --json` prints.

Kept free of torch so that the JSON schemas of every command can be listed without it.
"""

from __future__ import annotations

from typing import Any

from xtoken_align.report import Report


class RunSummary(Report):
    """`xtoken-align distill`: the last step's metrics, the final evaluation and where outputs went."""

    output: str  # the run folder: config.yaml, metrics.jsonl, metrics.html, checkpoints, the student
    steps: int  # the step training reached
    stopped_at: int | None  # set when `--stop-after` paused the run before `training.steps`
    last: dict[str, Any]  # the last step's logged metrics (losses, kd_scale, tokens_per_s, ...)
    eval: dict[str, Any] | None  # the final evaluation (next-token report, GSM8K exact match); None when paused


def run_text(summary: RunSummary) -> str:
    """The summary for people: where the run stopped, its last metrics and where its files are."""
    lines = [f"{'paused' if summary.stopped_at is not None else 'finished'} at step {summary.steps:,}"]
    lines.append(
        "last step: "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.last.items())
    )
    for name, value in (summary.eval or {}).items():
        if name != "step":
            lines.append(f"eval {name}: {value}")
    lines.append(f"outputs in {summary.output} (metrics.jsonl, metrics.html, checkpoints)")
    return "\n".join(lines)
