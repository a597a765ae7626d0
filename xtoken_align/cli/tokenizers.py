"""Subcommands about tokenizers: `vocab`, `overlap`, `restrict`, `fetch-demos`."""

from __future__ import annotations

import argparse
import sys

from xtoken_align.cli.common import SOURCE_HELP, add_json, check_new_folder, emit, load_vocabs, non_negative_int


def cmd_vocab(args: argparse.Namespace) -> None:
    from xtoken_align.vocab_report import vocab_report, vocab_text

    (vocab,) = load_vocabs(args.source)
    emit(vocab_report(vocab, samples=args.samples), args.json, vocab_text)


def cmd_overlap(args: argparse.Namespace) -> None:
    from xtoken_align.overlap import compare_vocabs, overlap_text

    emit(compare_vocabs(*load_vocabs(args.student, args.teacher)), args.json, overlap_text)


def cmd_restrict(args: argparse.Namespace) -> None:
    from xtoken_align.corpus import read_corpus
    from xtoken_align.restrict import restrict, restrict_text

    out = check_new_folder(args.output)
    texts = [text for corpus in args.corpus for text in read_corpus(corpus)]
    (vocab,) = load_vocabs(args.source)
    restriction = restrict(vocab, texts, keep_numerals=not args.drop_numerals)
    emit(restriction.summary(restriction.save(out)), args.json, restrict_text)
    print(f"next: xtoken-align vocab {out}", file=sys.stderr)


def cmd_fetch_demos(args: argparse.Namespace) -> None:
    from xtoken_align.demo import FetchReport, fetch_demos, fetch_text

    paths = fetch_demos(args.names or None, log=lambda line: print(line, file=sys.stderr))
    emit(FetchReport(paths=[str(path) for path in paths]), args.json, fetch_text)


def register(commands: argparse._SubParsersAction) -> None:
    vocab = commands.add_parser("vocab", help="canonical vocabulary of one tokenizer")
    vocab.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    vocab.add_argument(
        "--samples", type=non_negative_int, default=12, help="tokens shown raw vs canonical (default 12)"
    )
    add_json(vocab)
    vocab.set_defaults(run=cmd_vocab)

    overlap = commands.add_parser("overlap", help="raw vs canonical overlap of two vocabularies")
    overlap.add_argument("student", metavar="STUDENT", help=SOURCE_HELP)
    overlap.add_argument("teacher", metavar="TEACHER", help="teacher tokenizer source, same forms")
    add_json(overlap)
    overlap.set_defaults(run=cmd_overlap)

    restrict = commands.add_parser("restrict", help="a smaller BPE tokenizer with only the tokens a corpus needs")
    restrict.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    restrict.add_argument("--corpus", required=True, action="append", help="JSONL or text file (repeatable)")
    restrict.add_argument("-o", "--output", required=True, help="new folder for tokenizer.json + restriction.json")
    restrict.add_argument("--drop-numerals", action="store_true", help="keep only the numerals the corpus uses")
    add_json(restrict)
    restrict.set_defaults(run=cmd_restrict)

    fetch = commands.add_parser("fetch-demos", help="fetch the demo tokenizers into the user cache")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="demo names (default: all)")
    add_json(fetch)
    fetch.set_defaults(run=cmd_fetch_demos)
