"""The `xtoken-align` command: one subcommand per job, each a thin shell over the library.

Every subcommand prints a human report by default and a stable JSON document with `--json`.
Errors caused by the user's input (`XTokenError`, and argparse's usage errors through `Parser`)
print one `xtoken-align: error:` line and exit with status 2; nothing else is caught, so a bug still
shows its traceback. Outputs are checked before any work: right suffix, existing folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from xtoken_align import __version__
from xtoken_align.errors import XTokenError
from xtoken_align.report import Report

EXPORT_FORMATS = ["nemo", "csv", "parquet"]  # keys of formats.EXPORT_SUFFIXES; safetensors is what W already is
SOURCE_HELP = (
    "tokenizer source: demo:NAME, a tokenizer.json or folder, a .tiktoken file "
    "(tiktoken:PATTERN:PATH to name the pattern), a SentencePiece .model, or a hub id ORG/NAME"
)


def cmd_vocab(args: argparse.Namespace) -> None:
    from xtoken_align.vocab import load_vocab
    from xtoken_align.vocab_report import vocab_report, vocab_text

    report = vocab_report(load_vocab(args.source), samples=args.samples)
    _emit(report, args.json, vocab_text)


def cmd_overlap(args: argparse.Namespace) -> None:
    from xtoken_align.overlap import compare_vocabs, overlap_text

    report = compare_vocabs(*load_vocabs(args.student, args.teacher))
    _emit(report, args.json, overlap_text)


def cmd_build(args: argparse.Namespace) -> None:
    import time

    from xtoken_align.build_summary import build_text, summarise_build
    from xtoken_align.config import BuildConfig
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection

    config = BuildConfig.from_file(args.config) if args.config else BuildConfig()
    if args.top_k is not None:
        config = BuildConfig.from_dict({**config.model_dump(), "top_k": args.top_k})
    _check_output(args.output, ".safetensors")
    started = time.perf_counter()
    student, teacher = load_vocabs(args.student, args.teacher)
    projection = build_projection(student, teacher, config)
    path = save_projection(projection, args.output)
    _emit(summarise_build(projection, student, path, time.perf_counter() - started), args.json, build_text)


def cmd_score(args: argparse.Namespace) -> None:
    from xtoken_align.corpus import default_corpus, read_corpus
    from xtoken_align.score import score_projection, score_text

    projection, student, teacher = _open_projection(args)
    corpus = args.corpus or default_corpus()
    texts = None if args.no_corpus else read_corpus(corpus, limit=args.limit)
    report = score_projection(projection, student, teacher, texts, corpus_name=str(corpus))
    _emit(report, args.json, score_text)


def cmd_export(args: argparse.Namespace) -> None:
    from xtoken_align.formats import EXPORT_SUFFIXES, export, export_text, load_projection

    _check_output(args.output, EXPORT_SUFFIXES[args.format], f"--format {args.format}")
    if args.format != "nemo" and (args.student_rows is not None or args.bf16):
        raise XTokenError(f"--student-rows and --bf16 apply to --format nemo, not {args.format}")
    if args.format == "nemo":  # the .pt records model ids only: no tokenizer to load
        projection, student, teacher = load_projection(args.projection), None, None
    else:
        projection, student, teacher = _open_projection(args)
    summary = export(
        projection, student, teacher, args.output, args.format, student_rows=args.student_rows, bf16=args.bf16
    )
    _emit(summary, args.json, export_text)


def cmd_import(args: argparse.Namespace) -> None:
    from xtoken_align.formats import import_reference, import_text, save_projection

    _check_output(args.output, ".safetensors")
    student, teacher = load_vocabs(args.student, args.teacher)
    projection, summary = import_reference(args.file, student, teacher)
    path = save_projection(projection, args.output)
    _emit(summary.model_copy(update={"output": str(path)}), args.json, import_text)
    print(f"next: xtoken-align score {path}", file=sys.stderr if args.json else sys.stdout)


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
            _check_output(path, suffix)
    texts, name = None, ""
    if not args.no_corpus:
        texts = [text for corpus in args.corpus or [default_corpus()] for text in read_corpus(corpus)]
        name = ", ".join(args.corpus) if args.corpus else "GSM8K test"
    student, *teachers = load_vocabs(args.student, *args.teacher)
    paths = args.projection or [None] * len(teachers)
    pairs = [(t, load_projection(p, student, t) if p else None) for p, t in zip(paths, teachers, strict=True)]
    report = diagnosis.diagnose(student, pairs, texts, critical, args.sample, corpus_name=name)
    if args.unmatched_csv:
        write_atomic(args.unmatched_csv, diagnosis.unmatched_critical_csv(report).encode("utf-8"))
    if args.html:
        write_atomic(args.html, diagnosis.diagnose_html(report).encode("utf-8"))
    _emit(report, args.json, diagnosis.diagnose_text)
    for path in (args.html, args.unmatched_csv):
        if path:
            print(f"wrote {path}", file=sys.stderr)


def cmd_restrict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from xtoken_align.corpus import read_corpus
    from xtoken_align.restrict import restrict, restrict_text

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise XTokenError(f"{out} exists and is not an empty folder; choose a new one")
    if not out.resolve().parent.is_dir():
        raise XTokenError(f"output folder {out.parent} does not exist")
    texts = [text for corpus in args.corpus for text in read_corpus(corpus)]
    (vocab,) = load_vocabs(args.source)
    restriction = restrict(vocab, texts, keep_numerals=not args.drop_numerals)
    _emit(restriction.summary(restriction.save(out)), args.json, restrict_text)
    print(f"next: xtoken-align vocab {out}", file=sys.stderr)


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


def _open_projection(args: argparse.Namespace):
    """A W file and its two tokenizers, reopened from the sidecar unless given on the command line."""
    from xtoken_align.formats import load_projection

    projection = load_projection(args.projection)
    student, teacher = load_vocabs(
        getattr(args, "student", None) or projection.student.source,
        getattr(args, "teacher", None) or projection.teacher.source,
    )
    projection.check_tokenizers(student, teacher)
    return projection, student, teacher


def _check_output(path: str, suffix: str, writer: str = "") -> None:
    """Refuse an output file with the wrong suffix, in a missing folder, or that is a folder: outputs
    are written whole or not at all, and never create folders."""
    from pathlib import Path

    if Path(path).suffix != suffix:
        why = f" ({writer} writes {suffix} files)" if writer else ""
        raise XTokenError(f"output {path} should end in {suffix}{why}")
    if not Path(path).resolve().parent.is_dir():
        raise XTokenError(f"output folder {Path(path).parent} does not exist")
    if Path(path).is_dir():
        raise XTokenError(f"output {path} is a folder, not a file")


def cmd_distill(args: argparse.Namespace) -> None:
    try:
        from xtoken_align.distill.config import DistillConfig
        from xtoken_align.distill.runner import DistillRunner
    except ImportError as exc:
        raise XTokenError(f"distillation needs torch: pip install 'xtoken-align[distill]' ({exc})") from None

    config = DistillConfig.load(args.config, args.overrides)
    summary = DistillRunner(config).run(resume=args.resume, stop_after=args.stop_after)
    print(json.dumps(summary, indent=2))


def cmd_fetch_demos(args: argparse.Namespace) -> None:
    from xtoken_align.demo import fetch_demos

    for path in fetch_demos(args.names or None, log=lambda line: print(line, file=sys.stderr)):
        print(path)


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


class Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other user error: one `xtoken-align: error:` line, status 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "score" in "xtoken-align score"; "" at the top
        self.exit(2, f"xtoken-align: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def _emit(report: Report, as_json: bool, render: Callable[[Report], str]) -> None:
    """One JSON document (`--json`) or the report's text for people."""
    print(report.model_dump_json(indent=2) if as_json else render(report))


def build_parser(extend: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="xtoken-align",
        description="Build, inspect and diagnose cross-tokenizer projection matrices (X-Token).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    vocab = commands.add_parser("vocab", help="canonical vocabulary of one tokenizer")
    vocab.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    vocab.add_argument(
        "--samples", type=non_negative_int, default=12, help="tokens shown raw vs canonical (default 12)"
    )
    vocab.add_argument("--json", action="store_true", help="print JSON")
    vocab.set_defaults(run=cmd_vocab)

    overlap = commands.add_parser("overlap", help="raw vs canonical overlap of two vocabularies")
    overlap.add_argument("student", metavar="STUDENT", help=SOURCE_HELP)
    overlap.add_argument("teacher", metavar="TEACHER", help="teacher tokenizer source, same forms")
    overlap.add_argument("--json", action="store_true", help="print JSON")
    overlap.set_defaults(run=cmd_overlap)

    build = commands.add_parser("build", help="build W from tokenizer string rules")
    build.add_argument("--student", required=True, help=SOURCE_HELP)
    build.add_argument("--teacher", required=True, help="teacher tokenizer source, same forms")
    build.add_argument("-o", "--output", required=True, help="W file to write (.safetensors; sidecar .json beside)")
    build.add_argument("--config", help="rules config, YAML or JSON (default: the paper's rules, K = 4)")
    build.add_argument("--top-k", type=positive_int, help="entries kept per row (overrides the config)")
    build.add_argument("--json", action="store_true", help="print JSON")
    build.set_defaults(run=cmd_build)

    score = commands.add_parser("score", help="coverage, off-piece mass and corpus agreement of a W")
    score.add_argument("projection", metavar="W", help="W file (.safetensors)")
    score.add_argument("--corpus", help="JSONL (text, or question+answer) or text file (default: GSM8K test)")
    score.add_argument("--limit", type=positive_int, help="use only the first N texts of the corpus")
    score.add_argument("--no-corpus", action="store_true", help="skip the corpus measurement")
    _tokenizer_overrides(score)
    score.add_argument("--json", action="store_true", help="print JSON")
    score.set_defaults(run=cmd_score)

    export = commands.add_parser("export", help="write W for NeMo-RL/TRL (.pt) or as a CSV/Parquet table")
    export.add_argument("projection", metavar="W", help="W file (.safetensors)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--student-rows", type=positive_int, help="nemo: pad rows to the model's vocabulary size")
    export.add_argument("--bf16", action="store_true", help="nemo: bfloat16 likelihoods, as the reference tools")
    _tokenizer_overrides(export)
    export.add_argument("--json", action="store_true", help="print JSON")
    export.set_defaults(run=cmd_export)

    imp = commands.add_parser("import", help="read a NeMo-RL/TRL X-Token .pt W file")
    imp.add_argument("file", metavar="FILE", help="reference-format .pt file (indices, likelihoods)")
    imp.add_argument("--student", required=True, help=SOURCE_HELP)
    imp.add_argument("--teacher", required=True, help="teacher tokenizer source, same forms")
    imp.add_argument("-o", "--output", required=True, help="W file to write (.safetensors)")
    imp.add_argument("--json", action="store_true", help="print JSON")
    imp.set_defaults(run=cmd_import)

    diag = commands.add_parser("diagnose", help="which student tokens each teacher's GOLD partition pushes down")
    diag.add_argument("--student", required=True, help=SOURCE_HELP)
    diag.add_argument("--teacher", required=True, action="append", help="teacher tokenizer source (repeatable)")
    diag.add_argument(
        "--projection", action="append", default=[], metavar="W", help="W file per teacher, in --teacher order"
    )
    diag.add_argument("--corpus", action="append", help="JSONL or text file (repeatable; default: GSM8K test)")
    diag.add_argument("--no-corpus", action="store_true", help="skip the corpus measurement")
    diag.add_argument("--critical", help="comma-separated critical categories (default: digits:1,...,digits:4+)")
    diag.add_argument("--sample", help="text whose pushed-down student tokens are listed (default: a GSM8K-like line)")
    diag.add_argument("--unmatched-csv", metavar="FILE", help="write every unmatched critical token as CSV")
    diag_out = diag.add_mutually_exclusive_group()
    diag_out.add_argument("--json", action="store_true", help="print JSON")
    diag_out.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    diag.set_defaults(run=cmd_diagnose)

    distill = commands.add_parser("distill", help="distil a student from one or several teachers (torch)")
    distill.add_argument("--config", required=True, help="run config (YAML); see xtoken_align/distill/config.py")
    distill.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. training.steps=50")
    distill.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir")
    distill.add_argument("--stop-after", type=positive_int, help="checkpoint and exit after this step (resume later)")
    distill.set_defaults(run=cmd_distill)

    restrict = commands.add_parser("restrict", help="a smaller BPE tokenizer with only the tokens a corpus needs")
    restrict.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    restrict.add_argument("--corpus", required=True, action="append", help="JSONL or text file (repeatable)")
    restrict.add_argument("-o", "--output", required=True, help="new folder for tokenizer.json + restriction.json")
    restrict.add_argument("--drop-numerals", action="store_true", help="keep only the numerals the corpus uses")
    restrict.add_argument("--json", action="store_true", help="print JSON")
    restrict.set_defaults(run=cmd_restrict)

    fetch = commands.add_parser("fetch-demos", help="fetch the demo tokenizers into the user cache")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="demo names (default: all)")
    fetch.set_defaults(run=cmd_fetch_demos)
    if extend:
        extend(commands)  # the web layer adds `serve` without the library importing it
    return parser


def _tokenizer_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", help="student tokenizer source (default: the one in W's sidecar)")
    parser.add_argument("--teacher", help="teacher tokenizer source (default: the one in W's sidecar)")


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


if __name__ == "__main__":
    sys.exit(main())
