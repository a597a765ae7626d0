"""The `xtoken-align` command: one subcommand per job, each a thin shell over the library.

Every subcommand prints a human report by default and one JSON document with `--json` (the
`model_dump_json` of the report's model; schemas in docs/json.md). Errors caused by the user's
input (`XTokenError`, and argparse's usage errors through `Parser`) print one `xtoken-align:
error:` line and exit with status 2; nothing else is caught, so a bug still shows its traceback.
Outputs are checked before any work: right suffix, existing folder. The subcommands live by
subject: `tokenizers` (vocab, overlap, restrict, fetch-demos), `projection` (build, score, export,
import, diff), `diagnosis` (diagnose) and `training` (distill); the web layer adds `serve`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from xtoken_align import __version__
from xtoken_align.cli import diagnosis, projection, tokenizers, training
from xtoken_align.cli.common import SOURCE_HELP, non_negative_int, positive_int, student_source, teacher_source
from xtoken_align.errors import XTokenError

__all__ = [
    "SOURCE_HELP", "build_parser", "main", "non_negative_int", "positive_int", "student_source", "teacher_source",
]  # fmt: skip

SUBJECTS = (tokenizers, projection, diagnosis, training)


class Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other user error: one `xtoken-align: error:` line, status 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "score" in "xtoken-align score"; "" at the top
        self.exit(2, f"xtoken-align: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def build_parser(extend: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="xtoken-align",
        description="Build, inspect and diagnose cross-tokenizer projection matrices (X-Token).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subject in SUBJECTS:
        subject.register(commands)
    if extend:
        extend(commands)  # the web layer adds `serve` without the library importing it
    return parser


def main(argv: Sequence[str] | None = None, extend: Callable | None = None) -> int:
    args = build_parser(extend).parse_args(argv)
    try:
        args.run(args)
    except XTokenError as exc:
        print(f"xtoken-align: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: not an error worth a traceback
        return 0
    return 0
