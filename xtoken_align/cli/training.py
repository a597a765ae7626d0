"""The `distill` and `cache-teacher` subcommands: train a student, or store its teachers' signal once
(both need torch, imported only when they run)."""

from __future__ import annotations

import argparse
import os
import sys

from xtoken_align.cli.common import add_json, emit, non_negative_int, positive_int
from xtoken_align.errors import XTokenError


def _needs_torch() -> None:
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise XTokenError("distillation needs torch: pip install 'xtoken-align[distill]'")


def say(message: str) -> None:
    """A progress line on stderr (stdout stays the report, e.g. `--json`), on the main rank only."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)


def cmd_distill(args: argparse.Namespace) -> None:
    _needs_torch()
    if (args.config is None) == (not args.demo):
        raise XTokenError("give --config run.yaml, or --demo for a first run with tiny models")
    if args.steps is not None and not args.demo:
        raise XTokenError("--steps is for --demo; with --config, override training.steps=N")
    from xtoken_align.distill.run_log import quiet_libraries  # imports transformers: after the checks above

    quiet_libraries()
    say("starting: loading torch and transformers")
    from xtoken_align.distill.config import DistillConfig
    from xtoken_align.distill.runner import DistillRunner
    from xtoken_align.distill.summary import run_text

    if args.demo:
        from xtoken_align.distill.demo_run import prepare_demo

        config = prepare_demo(args.demo_dir, args.steps or 30, say)
        config = config.overridden(args.overrides)
    else:
        config = DistillConfig.load(args.config, args.overrides)
    summary = DistillRunner(config, log=say).run(resume=args.resume, stop_after=args.stop_after)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one report for the run, not one per process
        emit(summary, args.json, run_text)


def cmd_cache_teacher(args: argparse.Namespace) -> None:
    _needs_torch()
    from xtoken_align.distill.cache.report import cache_text
    from xtoken_align.distill.cache.writer import cache_teachers
    from xtoken_align.distill.config import DistillConfig

    config = DistillConfig.load(args.config, args.overrides)
    options = dict(topk=args.topk, sampled=args.samples, logp_dtype=args.dtype, shard_samples=args.shard_samples)
    report = cache_teachers(config, args.output, args.teacher, seed=args.seed, **options)
    if os.environ.get("RANK", "0") == "0":
        emit(report, args.json, cache_text)


def register(commands: argparse._SubParsersAction) -> None:
    distill = commands.add_parser("distill", help="distil a student from one or several teachers (torch)")
    distill.add_argument("--config", help="run config (YAML); see xtoken_align/distill/config.py and examples/")
    distill.add_argument(
        "--demo", action="store_true", help="a first run in minutes: tiny models, the real Llama-3 and Qwen3 tokenizers"
    )
    distill.add_argument("--steps", type=positive_int, help="--demo: training steps (default 30)")
    distill.add_argument("--demo-dir", default="demo", help="--demo: its folder (default demo)")
    distill.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. training.steps=50")
    distill.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir")
    distill.add_argument("--stop-after", type=positive_int, help="checkpoint and exit after this step (resume later)")
    add_json(distill)
    distill.set_defaults(run=cmd_distill)

    cache = commands.add_parser(
        "cache-teacher", help="run a run's teachers once over its training data and store their signal (torch)"
    )
    cache.add_argument("--config", required=True, help="the run config (YAML) whose live teachers to cache")
    cache.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. data.limit=1000")
    cache.add_argument("--teacher", action="append", metavar="NAME", help="cache only this teacher (repeatable)")
    cache.add_argument("-o", "--output", required=True, help="folder; each teacher's cache goes to OUTPUT/NAME")
    cache.add_argument("--topk", type=positive_int, default=64, help="exact top-K ids per position (default 64)")
    cache.add_argument("--samples", type=non_negative_int, default=64, help="ids sampled from the rest (default 64)")
    cache.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="top-K log-probs' dtype")
    cache.add_argument("--shard-samples", type=positive_int, default=256, help="training samples per shard")
    cache.add_argument("--seed", type=int, default=0, help="seed of the sampled ids")
    add_json(cache)
    cache.set_defaults(run=cmd_cache_teacher)
