"""`--json` on every subcommand: one JSON document on stdout, valid against the model docs/json.md
documents, with the numbers the files and the library say."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import gsm8k, vocab

from xtoken_align.cli import build_parser
from xtoken_align.formats import load_projection
from xtoken_align.json_schemas import COMMAND_REPORTS, markdown
from xtoken_align.score import score_projection

ROOT = Path(__file__).resolve().parent.parent
PAIR = ["--student", "demo:llama2", "--teacher", "demo:mistral-v1"]  # small vocabularies: quick to build


def subcommands() -> dict:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    return commands.choices


def test_every_subcommand_has_json_and_a_documented_model() -> None:
    commands = subcommands()
    assert set(commands) == set(COMMAND_REPORTS)
    for name, parser in commands.items():
        assert "--json" in parser._option_string_actions, name


def test_docs_json_md_is_generated_from_the_models() -> None:
    assert (ROOT / "docs" / "json.md").read_text(encoding="utf-8") == markdown(), (
        "docs/json.md is stale: python -m xtoken_align.json_schemas > docs/json.md"
    )


def document(result, command: str):
    """The whole of stdout, validated as the command's report model."""
    assert result.returncode == 0, result.stderr[-2000:]
    return COMMAND_REPORTS[command].model_validate_json(result.stdout)


def test_build_score_export_import_diagnose(run_cli, tmp_path: Path) -> None:
    w = tmp_path / "W.safetensors"
    summary = document(run_cli("build", *PAIR, "-o", str(w), "--json"), "build")
    projection = load_projection(w)
    assert (summary.entries, summary.shape) == (projection.matrix.nnz, list(projection.shape))
    score = document(run_cli("score", str(w), "--no-corpus", "--json"), "score")
    assert score == score_projection(projection, vocab("llama2"), vocab("mistral-v1"), None)  # the library's report
    table = document(run_cli("export", str(w), "--format", "csv", "-o", str(tmp_path / "W.csv"), "--json"), "export")
    assert table.files == [str(tmp_path / "W.csv")] and table.entries == summary.entries
    pt = tmp_path / "W.pt"
    document(run_cli("export", str(w), "--format", "nemo", "-o", str(pt), "--json"), "export")
    back = document(run_cli("import", str(pt), *PAIR, "-o", str(tmp_path / "back.safetensors"), "--json"), "import")
    assert back.output == str(tmp_path / "back.safetensors")
    diagnosis = document(run_cli("diagnose", *PAIR, "--projection", str(w), "--no-corpus", "--json"), "diagnose")
    assert [t.teacher.name for t in diagnosis.teachers] == ["mistral-v1"] and diagnosis.teachers[0].corpus is None


def test_vocab_overlap_restrict_fetch(run_cli, tmp_path: Path) -> None:
    vocab = document(run_cli("vocab", "demo:llama2", "--json"), "vocab")
    assert vocab.size == 32_000 and sum(vocab.categories.values()) == vocab.size
    overlap = document(run_cli("overlap", "demo:llama2", "demo:mistral-v1", "--json"), "overlap")
    assert overlap.canonical_gain == overlap.canonical_overlap - overlap.raw_overlap
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in gsm8k("test")[:20]), encoding="utf-8")
    out = tmp_path / "small"
    restricted = document(
        run_cli("restrict", "demo:llama2", "--corpus", str(corpus), "-o", str(out), "--json"), "restrict"
    )
    assert restricted.texts_checked == 20 and (out / "tokenizer.json").is_file()
    fetched = document(run_cli("fetch-demos", "llama2", "--json"), "fetch-demos")
    assert len(fetched.paths) == 1 and Path(fetched.paths[0]).is_file()
