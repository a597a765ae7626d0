"""What the subcommands share: argument types, tokenizer loading, output checks, report printing."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from xtoken_align.errors import XTokenError
from xtoken_align.report import Report

SOURCE_HELP = (
    "tokenizer source: demo:NAME, a tokenizer.json or folder, a .tiktoken file "
    "(tiktoken:PATTERN:PATH to name the pattern), a SentencePiece .model, a hub id ORG/NAME, "
    "or a folder of `export --format hub` (its copy of this role's tokenizer)"
)


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: "3" -> 3; "0", "-3" and "x" are refused."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for counts that may be zero: "0" -> 0; "-1" and "x" are refused."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def student_source(text: str) -> str:
    """argparse type of --student: a hub export folder means its student_tokenizer/, else `text` as is."""
    from xtoken_align.formats import role_tokenizer

    return role_tokenizer(text, "student")


def teacher_source(text: str) -> str:
    """argparse type of --teacher: a hub export folder means its teacher_tokenizer/, else `text` as is."""
    from xtoken_align.formats import role_tokenizer

    return role_tokenizer(text, "teacher")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document (schemas: docs/json.md)")


def add_tokenizer_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--student", type=student_source, help="student tokenizer source (default: the one in W's sidecar)"
    )
    parser.add_argument(
        "--teacher", type=teacher_source, help="teacher tokenizer source (default: the one in W's sidecar)"
    )


def emit(report: Report, as_json: bool, render: Callable[[Report], str]) -> None:
    """One JSON document (`--json`) or the report's text for people."""
    print(report.model_dump_json(indent=2) if as_json else render(report))


def load_vocabs(*sources: str) -> list:
    """Tokenizers loaded with a progress bar on a terminal (each takes a second or two)."""
    from tqdm import tqdm

    from xtoken_align.vocab import load_vocab

    vocabs = []
    with tqdm(sources, desc="loading tokenizers", unit="tokenizer", disable=None, leave=False) as bar:
        for source in bar:
            bar.set_postfix_str(source)
            vocabs.append(load_vocab(source))
    return vocabs


def open_projection(args: argparse.Namespace):
    """A W file and its two tokenizers, reopened from the sidecar unless given on the command line."""
    from xtoken_align.formats import load_projection

    projection = load_projection(args.projection)
    student, teacher = load_vocabs(
        getattr(args, "student", None) or projection.student.source,
        getattr(args, "teacher", None) or projection.teacher.source,
    )
    projection.check_tokenizers(student, teacher)
    return projection, student, teacher


def check_output(path: str, suffix: str, writer: str = "") -> None:
    """Refuse an output file with the wrong suffix, in a missing folder, or that is a folder: outputs
    are written whole or not at all, and never create folders."""
    if Path(path).suffix != suffix:
        why = f" ({writer} writes {suffix} files)" if writer else ""
        raise XTokenError(f"output {path} should end in {suffix}{why}")
    if not Path(path).resolve().parent.is_dir():
        raise XTokenError(f"output folder {Path(path).parent} does not exist")
    if Path(path).is_dir():
        raise XTokenError(f"output {path} is a folder, not a file")


def check_new_folder(folder: str) -> Path:
    """Refuse an output folder that holds files, or whose parent is missing."""
    out = Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise XTokenError(f"{out} exists and is not an empty folder; choose a new one")
    if not out.resolve().parent.is_dir():
        raise XTokenError(f"output folder {out.parent} does not exist")
    return out
