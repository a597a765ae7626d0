"""Subcommands about W files: `build`, `score`, `export`, `import`, `diff`."""

from __future__ import annotations

import argparse
import sys
import time

from xtoken_align.cli.common import (
    SOURCE_HELP,
    add_json,
    add_tokenizer_overrides,
    check_new_folder,
    check_output,
    emit,
    load_vocabs,
    non_negative_int,
    open_projection,
    positive_int,
    student_source,
    teacher_source,
)
from xtoken_align.errors import XTokenError

EXPORT_FORMATS = ["nemo", "csv", "parquet", "hub"]  # formats.EXPORT_SUFFIXES and FOLDER_FORMATS; not safetensors


def cmd_build(args: argparse.Namespace) -> None:
    from xtoken_align.build_summary import build_text, summarise_build
    from xtoken_align.config import BuildConfig
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection

    config = BuildConfig.from_file(args.config) if args.config else BuildConfig()
    if args.top_k is not None:
        config = BuildConfig.from_dict({**config.model_dump(), "top_k": args.top_k})
    check_output(args.output, ".safetensors")
    started = time.perf_counter()
    student, teacher = load_vocabs(args.student, args.teacher)
    projection = build_projection(student, teacher, config)
    path = save_projection(projection, args.output)
    emit(summarise_build(projection, student, path, time.perf_counter() - started), args.json, build_text)


def cmd_score(args: argparse.Namespace) -> None:
    from xtoken_align.corpus import default_corpus, read_corpus
    from xtoken_align.score import score_projection, score_text

    projection, student, teacher = open_projection(args)
    corpus = args.corpus or default_corpus()
    texts = None if args.no_corpus else read_corpus(corpus, limit=args.limit)
    report = score_projection(projection, student, teacher, texts, corpus_name=str(corpus))
    emit(report, args.json, score_text)


def cmd_export(args: argparse.Namespace) -> None:
    from xtoken_align.formats import EXPORT_SUFFIXES, export, export_text, load_projection

    hub = args.format == "hub"
    if hub:
        check_new_folder(args.output)
    else:
        check_output(args.output, EXPORT_SUFFIXES[args.format], f"--format {args.format}")
    if args.format != "nemo" and (args.student_rows is not None or args.bf16):
        raise XTokenError(f"--student-rows and --bf16 apply to --format nemo, not {args.format}")
    if not hub and (args.corpus or args.limit is not None or args.no_corpus):
        raise XTokenError(f"--corpus, --limit and --no-corpus apply to --format hub, not {args.format}")
    if args.format == "nemo":  # the .pt records model ids only: no tokenizer to load
        projection, student, teacher = load_projection(args.projection), None, None
    else:
        projection, student, teacher = open_projection(args)
    reports = card_reports(args, projection, student, teacher) if hub else None
    summary = export(
        projection, student, teacher, args.output, args.format,
        student_rows=args.student_rows, bf16=args.bf16, reports=reports,
    )  # fmt: skip
    emit(summary, args.json, export_text)


def card_reports(args: argparse.Namespace, projection, student, teacher) -> tuple:
    """What a hub card shows: W's report as `score` and as `diagnose` print it for the same corpus
    options (each names the corpus as its own command does, so the numbers compare equal)."""
    from xtoken_align.corpus import default_corpus, read_corpus
    from xtoken_align.diagnose import diagnose
    from xtoken_align.score import score_projection

    corpus = args.corpus or default_corpus()
    texts = None if args.no_corpus else read_corpus(corpus, limit=args.limit)
    score = score_projection(projection, student, teacher, texts, corpus_name=str(corpus))
    diagnosis = diagnose(student, [(teacher, projection)], texts, corpus_name=args.corpus or "GSM8K test")
    return score, diagnosis


def cmd_import(args: argparse.Namespace) -> None:
    from xtoken_align.formats import import_reference, import_text, save_projection

    check_output(args.output, ".safetensors")
    student, teacher = load_vocabs(args.student, args.teacher)
    projection, summary = import_reference(args.file, student, teacher)
    path = save_projection(projection, args.output)
    emit(summary.model_copy(update={"output": str(path)}), args.json, import_text)
    print(f"next: xtoken-align score {path}", file=sys.stderr if args.json else sys.stdout)


def cmd_diff(args: argparse.Namespace) -> None:
    from xtoken_align.diff import check_same_pair, diff_projections, diff_text
    from xtoken_align.formats import load_projection

    a, b = load_projection(args.a), load_projection(args.b)
    check_same_pair(a, b)  # before loading tokenizers: a mismatch is refused in a moment
    student, teacher = load_vocabs(args.student or a.student.source, args.teacher or a.teacher.source)
    report = diff_projections(a, b, student, teacher, top=args.top, labels=(args.a, args.b))
    emit(report, args.json, diff_text)


def register(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", help="build W from tokenizer string rules")
    build.add_argument("--student", required=True, type=student_source, help=SOURCE_HELP)
    build.add_argument("--teacher", required=True, type=teacher_source, help="teacher tokenizer source, same forms")
    build.add_argument("-o", "--output", required=True, help="W file to write (.safetensors; sidecar .json beside)")
    build.add_argument("--config", help="rules config, YAML or JSON (default: the paper's rules, K = 4)")
    build.add_argument("--top-k", type=positive_int, help="entries kept per row (overrides the config)")
    add_json(build)
    build.set_defaults(run=cmd_build)

    score = commands.add_parser("score", help="coverage, off-piece mass and corpus agreement of a W")
    score.add_argument("projection", metavar="W", help="W file (.safetensors) or hub folder")
    score.add_argument("--corpus", help="JSONL (text, or question+answer) or text file (default: GSM8K test)")
    score.add_argument("--limit", type=positive_int, help="use only the first N texts of the corpus")
    score.add_argument("--no-corpus", action="store_true", help="skip the corpus measurement")
    add_tokenizer_overrides(score)
    add_json(score)
    score.set_defaults(run=cmd_score)

    export = commands.add_parser(
        "export", help="write W for NeMo-RL/TRL (.pt), as a CSV/Parquet table, or as a model-hub folder"
    )
    export.add_argument("projection", metavar="W", help="W file (.safetensors) or hub folder")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("-o", "--output", required=True, help="file to write (hub: a new folder)")
    export.add_argument("--corpus", help="hub: corpus of the card's figures, as score's (default: GSM8K test)")
    export.add_argument("--limit", type=positive_int, help="hub: use only the first N texts of the corpus")
    export.add_argument("--no-corpus", action="store_true", help="hub: no corpus figures on the card")
    export.add_argument("--student-rows", type=positive_int, help="nemo: pad rows to the model's vocabulary size")
    export.add_argument("--bf16", action="store_true", help="nemo: bfloat16 likelihoods, as the reference tools")
    add_tokenizer_overrides(export)
    add_json(export)
    export.set_defaults(run=cmd_export)

    imp = commands.add_parser("import", help="read a NeMo-RL/TRL X-Token .pt W file")
    imp.add_argument("file", metavar="FILE", help="reference-format .pt file (indices, likelihoods)")
    imp.add_argument("--student", required=True, type=student_source, help=SOURCE_HELP)
    imp.add_argument("--teacher", required=True, type=teacher_source, help="teacher tokenizer source, same forms")
    imp.add_argument("-o", "--output", required=True, help="W file to write (.safetensors)")
    add_json(imp)
    imp.set_defaults(run=cmd_import)

    diff = commands.add_parser("diff", help="how two W files of the same tokenizer pair differ, per row and category")
    diff.add_argument("a", metavar="A", help="W file (.safetensors)")
    diff.add_argument("b", metavar="B", help="W file of the same tokenizer pair (.safetensors)")
    diff.add_argument(
        "--top", type=non_negative_int, default=50, help="changed rows listed, largest first (default 50)"
    )
    add_tokenizer_overrides(diff)
    add_json(diff)
    diff.set_defaults(run=cmd_diff)
