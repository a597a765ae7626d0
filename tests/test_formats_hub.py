"""`formats.hub`: `export --format hub` writes a self-contained folder whose card's numbers are W's
`score --json` and `diagnose --json`, and which reloads wherever a W file or a tokenizer source goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from conftest import GSM8K, vocab

from xtoken_align.diagnose import diagnose
from xtoken_align.edits import apply_rows
from xtoken_align.errors import XTokenError
from xtoken_align.formats import (
    ExportSummary,
    export,
    import_reference,
    load_projection,
    role_tokenizer,
    save_projection,
)
from xtoken_align.formats import hub as hub_format
from xtoken_align.formats.hub import history_summary, is_hub_folder
from xtoken_align.projection import Projection, RowEntry, build_projection
from xtoken_align.score import score_projection
from xtoken_align.vocab import load_vocab

STUDENT, TEACHER = "llama3", "qwen3"
CORPUS_TEXTS = 12
LAYOUT = [
    "README.md", "W.json", "W.pt", "W.safetensors", "card.json",
    "student_tokenizer/tokenizer.json", "student_tokenizer/tokenizer_config.json",
    "teacher_tokenizer/tokenizer.json", "teacher_tokenizer/tokenizer_config.json",
]  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script, as the `run_cli` fixture runs it (module fixtures cannot use that one)."""
    command = [sys.executable, "-m", "xtoken_align.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)


def as_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@cache
def edited() -> Projection:
    """llama3 x qwen3 W with two rows edited, as the web's export records them."""
    base = build_projection(vocab(STUDENT), vocab(TEACHER), progress=False)
    history = [
        {"action": "edit", "student_id": 100, "at": "2026-01-01T00:00:00Z", "note": "map to the digit"},
        {"action": "edit", "student_id": 101, "at": "2026-01-01T00:00:01Z", "note": ""},
    ]
    return apply_rows(base, {100: [RowEntry(100, 1.0, "edit", 1.0)], 101: [RowEntry(101, 1.0, "edit", 1.0)]}, history)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """W file, a small corpus and the hub folder `export --format hub` made of them."""
    folder = tmp_path_factory.mktemp("hub")
    lines = GSM8K["test"].read_text(encoding="utf-8").splitlines()[:CORPUS_TEXTS]
    corpus = folder / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    w = save_projection(edited(), folder / "W.safetensors")
    out = folder / "shared"
    summary = as_json(cli("export", str(w), "--format", "hub", "-o", str(out), "--corpus", str(corpus), "--json"))
    assert summary["format"] == "hub" and summary["path"] == str(out)
    assert summary["files"] == [str(out / name) for name in LAYOUT]
    ExportSummary.model_validate(summary)  # the `export` schema of docs/json.md
    return {"w": w, "corpus": corpus, "hub": out}


def test_card_numbers_are_score_and_diagnose_of_the_reloaded_folder(exported) -> None:
    hub, corpus = str(exported["hub"]), str(exported["corpus"])
    card = json.loads((exported["hub"] / "card.json").read_text(encoding="utf-8"))
    assert card["format"] == "xtoken-align-hub" and card["format_version"] == 1
    # `--projection DIR` and `--student DIR`/`--teacher DIR`: the folder alone is enough.
    score = as_json(cli("score", hub, "--student", hub, "--teacher", hub, "--corpus", corpus, "--json"))
    assert card["score"] == score
    assert score["corpus"]["texts"] == CORPUS_TEXTS and score["nnz"] == edited().matrix.nnz
    # diagnose names the tokenizers it was given, so give it the sources W records for an exact match.
    pair = ["--student", f"demo:{STUDENT}", "--teacher", f"demo:{TEACHER}"]
    diagnosis = as_json(cli("diagnose", *pair, "--projection", hub, "--corpus", corpus, "--json"))
    assert card["diagnose"] == diagnosis
    assert diagnosis["teachers"][0]["recommendation"] == "p_kl"


def test_the_card_shows_the_recommendation_coverage_tokenizers_and_edits(exported) -> None:
    readme = (exported["hub"] / "README.md").read_text(encoding="utf-8")
    card = json.loads((exported["hub"] / "card.json").read_text(encoding="utf-8"))
    front = readme.split("---\n")[1]
    assert "library_name: xtoken-align" in front and "- cross-tokenizer-distillation" in front and "- x-token" in front
    teacher = card["diagnose"]["teachers"][0]
    assert f"**{TEACHER}: P-KL** — {teacher['reason']}" in readme
    for name, row in card["score"]["coverage"].items():
        cells = [name, *(f"{row[k]:,}" for k in ("total", "covered", "exact", "common"))]
        assert "| " + " | ".join(cells) + " |" in readme
    for side in ("student", "teacher"):
        info = card["score"][side]
        assert f"`{info['source']}`" in readme and f"`{info['fingerprint']}`" in readme
    assert "2 history entries (2 edit), 2 student rows touched." in readme and "- note: map to the digit" in readme
    assert f"agreement@1 {card['score']['corpus']['agreement@1']:.4f}" in readme
    assert '"top_k": 4' in readme and "xtoken-align score DIR" in readme and "`indices` int64 [128,256, 4]" in readme


def test_the_folder_holds_w_its_reference_file_and_both_tokenizers(exported, tmp_path: Path) -> None:
    hub = exported["hub"]
    assert (hub / "W.safetensors").read_bytes() == exported["w"].read_bytes()
    assert (hub / "W.json").read_bytes() == exported["w"].with_suffix(".json").read_bytes()
    reloaded = load_projection(hub)
    assert (reloaded.matrix != edited().matrix).nnz == 0 and reloaded.history == edited().history
    for role, name in (("student", STUDENT), ("teacher", TEACHER)):
        copy = load_vocab(role_tokenizer(str(hub), role))
        assert copy.fingerprint == vocab(name).fingerprint and copy.roles() == vocab(name).roles()
    imported, _ = import_reference(hub / "W.pt", vocab(STUDENT), vocab(TEACHER))
    assert abs(imported.matrix - edited().matrix).max() < 1e-6


def test_export_is_whole_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    projection, student, teacher = edited(), vocab(STUDENT), vocab(TEACHER)
    reports = score_projection(projection, student, teacher, None), diagnose(student, [(teacher, projection)], None)

    def broken(*args, **kwargs):
        raise XTokenError("disk full")

    monkeypatch.setattr(hub_format, "import_reference", broken)
    with pytest.raises(XTokenError, match="disk full"):
        export(projection, student, teacher, tmp_path / "hub", "hub", reports=reports)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(XTokenError, match="needs W's score and diagnosis"):
        export(projection, student, teacher, tmp_path / "W.pt", "nemo", reports=reports)


def test_history_summary_counts_actions_rows_and_notes() -> None:
    assert history_summary([]) == ["No edits: W is as the rules built it."]
    entries = [{"action": "edit", "student_id": 5, "note": "a"}, {"action": "edit", "student_id": 5, "note": "a"}]
    entries.append({"action": "learned", "note": "step 100"})
    assert history_summary(entries) == [
        "3 history entries (2 edit, 1 learned), 1 student rows touched.",
        "- note: a",
        "- note: step 100",
    ]


def test_a_folder_that_is_not_a_hub_export_is_refused(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text('{"format": "something else"}', encoding="utf-8")
    assert not is_hub_folder(tmp_path) and role_tokenizer(str(tmp_path), "student") == str(tmp_path)
    with pytest.raises(XTokenError, match="not an xtoken-align hub export"):
        load_projection(tmp_path)


def test_a_bare_hub_folder_as_a_tokenizer_names_its_two_copies(exported) -> None:
    with pytest.raises(XTokenError, match="is a hub export: give .*student_tokenizer or .*teacher_tokenizer"):
        load_vocab(str(exported["hub"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "hub", "-o", "{full}"], "exists and is not an empty folder; choose a new one"),
        (["--format", "hub", "-o", "{tmp}/missing/hub"], "does not exist"),
        (["--format", "nemo", "-o", "{tmp}/W.pt", "--limit", "3"], "apply to --format hub, not nemo"),
        (["--format", "hub", "-o", "{tmp}/hub", "--bf16"], "apply to --format nemo, not hub"),
    ],
)
def test_export_hub_refuses_bad_output_in_one_line(run_cli, exported, tmp_path: Path, args, message) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine", encoding="utf-8")
    filled = [a.format(tmp=tmp_path, full=full) for a in args]
    result = run_cli("export", str(exported["w"]), *filled)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"] and [p.name for p in full.iterdir()] == ["keep.txt"]


def test_score_refuses_a_folder_that_is_not_a_hub_export(run_cli, tmp_path: Path) -> None:
    result = run_cli("score", str(tmp_path), "--no-corpus")
    assert result.returncode == 2 and "not an xtoken-align hub export" in result.stderr
    assert "Traceback" not in result.stderr
