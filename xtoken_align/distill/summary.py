"""What a distillation run reports when it ends: the document `xtoken-align distill --json` prints.

Kept free of torch so that the JSON schemas of every command can be listed without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xtoken_align.report import Report

# What a run folder may hold, in the order the summary lists it.
ARTIFACTS = {
    "config": "config.yaml",  # the run's config, as validated
    "metrics": "metrics.jsonl",  # one record per logged step
    "plot": "metrics.html",  # the curves (plotly, self-contained)
    "eval": "eval.jsonl",  # one record per evaluation
    "summary": "summary.json",  # this summary
    "checkpoint": "checkpoints/latest",  # names the newest checkpoint folder
}


class RunSummary(Report):
    """`xtoken-align distill`: the last step's metrics, the final evaluation and where outputs went."""

    output: str  # the run folder: config.yaml, metrics.jsonl, metrics.html, checkpoints, the student
    steps: int  # the step training reached
    stopped_at: int | None  # set when `--stop-after` paused the run before `training.steps`
    last: dict[str, Any]  # the last step's logged metrics (losses, kd_scale, tokens_per_s, ...)
    eval: dict[str, Any] | None  # the final evaluation (next-token report, GSM8K exact match); None when paused
    artifacts: dict[str, str] = {}  # what -> path of every file the run wrote (the student, learned Ws, ...)

    def with_artifacts(self, out: Path) -> RunSummary:
        """This summary with `artifacts` naming every output in the run folder `out`."""
        found = {name: out / file for name, file in ARTIFACTS.items() if name == "summary" or (out / file).exists()}
        latest = out / "checkpoints" / "latest"
        student = out / "checkpoints" / latest.read_text().strip() / "student" if latest.is_file() else None
        if student is not None and student.is_dir():  # the student as the last checkpoint saved it (a Hugging
            found["student"] = student  # Face folder; under FSDP only the run's last checkpoint has one)
        for learned in sorted(out.glob("W-learned-*.safetensors")):
            found[learned.stem.removeprefix("W-")] = learned
        return self.model_copy(update={"artifacts": {name: str(path) for name, path in found.items()}})


def run_text(summary: RunSummary) -> str:
    """The summary for people: where the run stopped, its last metrics and where its files are."""
    lines = [f"{'paused' if summary.stopped_at is not None else 'finished'} at step {summary.steps:,}"]
    lines.append(
        "last step: "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.last.items())
    )
    for name, value in (summary.eval or {}).items():
        if name == "step":
            continue
        if isinstance(value, dict):  # e.g. next_token: per category {tokens, accuracy, p_true}
            for key, inner in value.items():
                shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in inner.items()) \
                    if isinstance(inner, dict) else inner  # fmt: skip
                lines.append(f"eval {name} {key}: {shown}")
        else:
            lines.append(f"eval {name}: {value}")
    lines.append(f"outputs in {summary.output}/:")
    lines += [f"  {name:<12} {path}" for name, path in summary.artifacts.items()] or ["  (none yet)"]
    return "\n".join(lines)
