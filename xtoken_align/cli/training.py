"""The `distill` subcommand: train a student (needs torch, imported only when it runs)."""

from __future__ import annotations

import argparse
import os

from xtoken_align.cli.common import add_json, emit, positive_int
from xtoken_align.errors import XTokenError


def cmd_distill(args: argparse.Namespace) -> None:
    try:
        from xtoken_align.distill.config import DistillConfig
        from xtoken_align.distill.runner import DistillRunner
    except ImportError as exc:
        raise XTokenError(f"distillation needs torch: pip install 'xtoken-align[distill]' ({exc})") from None
    from xtoken_align.distill.summary import run_text

    config = DistillConfig.load(args.config, args.overrides)
    summary = DistillRunner(config).run(resume=args.resume, stop_after=args.stop_after)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one report for the run, not one per process
        emit(summary, args.json, run_text)


def register(commands: argparse._SubParsersAction) -> None:
    distill = commands.add_parser("distill", help="distil a student from one or several teachers (torch)")
    distill.add_argument("--config", required=True, help="run config (YAML); see xtoken_align/distill/config.py")
    distill.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. training.steps=50")
    distill.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir")
    distill.add_argument("--stop-after", type=positive_int, help="checkpoint and exit after this step (resume later)")
    add_json(distill)
    distill.set_defaults(run=cmd_distill)
