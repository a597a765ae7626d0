"""The `diagnose` subcommand: the uncommon-token audit before training."""

from __future__ import annotations

import argparse
import sys

from xtoken_align.cli.common import (
    SOURCE_HELP,
    check_output,
    emit,
    load_vocabs,
    positive_int,
    student_source,
    teacher_source,
)
from xtoken_align.errors import XTokenError


def cmd_diagnose(args: argparse.Namespace) -> None:
    from xtoken_align import diagnose as diagnosis
    from xtoken_align.atomic import write_atomic
    from xtoken_align.corpus import default_corpus, read_corpus
    from xtoken_align.formats import load_projection

    if args.projection and len(args.projection) != len(args.teacher):
        raise XTokenError(
            f"{len(args.projection)} --projection for {len(args.teacher)} --teacher: give one W per teacher, in order"
        )
    critical = [c.strip() for c in args.critical.split(",") if c.strip()] if args.critical is not None else None
    if critical == []:
        raise XTokenError("--critical needs at least one category name")
    critical = diagnosis.check_categories(critical or diagnosis.DEFAULT_CRITICAL)
    for path, suffix in ((args.html, ".html"), (args.unmatched_csv, ".csv")):
        if path:
            check_output(path, suffix)
    texts, name = None, ""
    if not args.no_corpus:
        texts = [text for corpus in args.corpus or [default_corpus()] for text in read_corpus(corpus, limit=args.limit)]
        name = ", ".join(args.corpus) if args.corpus else "GSM8K test"
    student, *teachers = load_vocabs(args.student, *args.teacher)
    paths = args.projection or [None] * len(teachers)
    pairs = [(t, load_projection(p, student, t) if p else None) for p, t in zip(paths, teachers, strict=True)]
    report = diagnosis.diagnose(student, pairs, texts, critical, args.sample, corpus_name=name)
    if args.unmatched_csv:
        write_atomic(args.unmatched_csv, diagnosis.unmatched_critical_csv(report).encode("utf-8"))
    if args.html:
        write_atomic(args.html, diagnosis.diagnose_html(report).encode("utf-8"))
    emit(report, args.json, diagnosis.diagnose_text)
    for path in (args.html, args.unmatched_csv):
        if path:
            print(f"wrote {path}", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    diag = commands.add_parser("diagnose", help="which student tokens each teacher's GOLD partition pushes down")
    diag.add_argument("--student", required=True, type=student_source, help=SOURCE_HELP)
    diag.add_argument(
        "--teacher", required=True, action="append", type=teacher_source, help="teacher tokenizer source (repeatable)"
    )
    diag.add_argument(
        "--projection", action="append", default=[], metavar="W", help="W file or hub folder per teacher, in order"
    )
    diag.add_argument("--corpus", action="append", help="JSONL or text file (repeatable; default: GSM8K test)")
    diag.add_argument("--limit", type=positive_int, help="use only the first N texts of each corpus")
    diag.add_argument("--no-corpus", action="store_true", help="skip the corpus measurement")
    diag.add_argument("--critical", help="comma-separated critical categories (default: digits:1,...,digits:4+)")
    diag.add_argument("--sample", help="text whose pushed-down student tokens are listed (default: a GSM8K-like line)")
    diag.add_argument("--unmatched-csv", metavar="FILE", help="write every unmatched critical token as CSV")
    diag_out = diag.add_mutually_exclusive_group()
    diag_out.add_argument("--json", action="store_true", help="print one JSON document (schemas: docs/json.md)")
    diag_out.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    diag.set_defaults(run=cmd_diagnose)
