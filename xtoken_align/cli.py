"""The `xtoken-align` command: one subcommand per job, each a thin shell over the library.

Every subcommand prints a human report by default and a stable JSON document with `--json`.
Errors caused by the user's input (`XTokenError`) print one line and exit with status 2; nothing
else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from xtoken_align import __version__
from xtoken_align.errors import XTokenError

SOURCE_HELP = (
    "tokenizer source: demo:NAME, a tokenizer.json or folder, a .tiktoken file "
    "(tiktoken:PATTERN:PATH to name the pattern), a SentencePiece .model, or a hub id ORG/NAME"
)


def cmd_vocab(args: argparse.Namespace) -> None:
    from xtoken_align.reports import vocab_report, vocab_text
    from xtoken_align.vocab import load_vocab

    report = vocab_report(load_vocab(args.source), samples=args.samples)
    _emit(report, args.json, vocab_text)


def cmd_overlap(args: argparse.Namespace) -> None:
    from xtoken_align.overlap import compare_vocabs
    from xtoken_align.reports import overlap_text
    from xtoken_align.vocab import load_vocab

    report = compare_vocabs(load_vocab(args.student), load_vocab(args.teacher)).to_json()
    _emit(report, args.json, overlap_text)


def cmd_fetch_demos(args: argparse.Namespace) -> None:
    from xtoken_align.demo import fetch_demos

    for path in fetch_demos(args.names or None, log=lambda line: print(line, file=sys.stderr)):
        print(path)


def _emit(report: dict, as_json: bool, render: Callable[[dict], str]) -> None:
    print(json.dumps(report, indent=2, ensure_ascii=False) if as_json else render(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtoken-align",
        description="Build, inspect and diagnose cross-tokenizer projection matrices (X-Token).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    vocab = commands.add_parser("vocab", help="canonical vocabulary of one tokenizer")
    vocab.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    vocab.add_argument("--samples", type=int, default=12, help="tokens shown raw vs canonical (default 12)")
    vocab.add_argument("--json", action="store_true", help="print JSON")
    vocab.set_defaults(run=cmd_vocab)

    overlap = commands.add_parser("overlap", help="raw vs canonical overlap of two vocabularies")
    overlap.add_argument("student", metavar="STUDENT", help=SOURCE_HELP)
    overlap.add_argument("teacher", metavar="TEACHER", help="teacher tokenizer source, same forms")
    overlap.add_argument("--json", action="store_true", help="print JSON")
    overlap.set_defaults(run=cmd_overlap)

    fetch = commands.add_parser("fetch-demos", help="fetch the demo tokenizers into the user cache")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="demo names (default: all)")
    fetch.set_defaults(run=cmd_fetch_demos)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
