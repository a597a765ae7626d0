"""The console script end to end: the numbers of the README, JSON shape, and clean failures."""

from __future__ import annotations

import json

import pytest


def test_overlap_llama3_qwen3_reports_unmatched_numerals(run_cli) -> None:
    result = run_cli("overlap", "demo:llama3", "demo:qwen3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["student"]["size"] == 128_256 and report["teacher"]["size"] == 151_669
    digits = {k: v for k, v in report["categories"].items() if k.startswith("digits:")}
    assert sum(v["total"] for v in digits.values()) == 1_110
    assert digits["digits:1"] == {"total": 10, "matched": 10, "unmatched": 0}
    assert digits["digits:2"] == {"total": 100, "matched": 0, "unmatched": 100}
    assert digits["digits:3"] == {"total": 1000, "matched": 0, "unmatched": 1000}
    assert report["raw_overlap"] == 109_566  # the figure measured in ../shared/README.md
    assert list(report["categories"])[:3] == ["digits:1", "digits:2", "digits:3"]


def test_overlap_llama3_o200k_matches_every_numeral(run_cli) -> None:
    report = json.loads(run_cli("overlap", "demo:llama3", "demo:o200k", "--json").stdout)
    digits = [v for k, v in report["categories"].items() if k.startswith("digits:")]
    assert sum(v["total"] for v in digits) == 1_110
    assert all(v["unmatched"] == 0 for v in digits)


def test_overlap_llama2_llama3_canonical_beats_raw(run_cli) -> None:
    result = run_cli("overlap", "demo:llama2", "demo:llama3")
    assert result.returncode == 0, result.stderr
    report = json.loads(run_cli("overlap", "demo:llama2", "demo:llama3", "--json").stdout)
    gain = report["canonical_overlap"] - report["raw_overlap"]
    assert gain > 10_000 and report["canonical_gain"] == gain
    assert f"({gain:+,} vs raw)" in result.stdout
    assert "digits:2" not in report["categories"]  # Llama-2 splits digits too


def test_vocab_text_and_json(run_cli) -> None:
    text = run_cli("vocab", "demo:llama2")
    assert text.returncode == 0, text.stderr
    assert "<s>" in text.stdout and "bos" in text.stdout and "byte" in text.stdout
    report = json.loads(run_cli("vocab", "demo:llama2", "--json").stdout)
    assert report["size"] == 32_000 and report["categories"]["byte"] == 256
    bos = next(s for s in report["special"] if s["id"] == 1)
    assert (bos["piece"], bos["roles"]) == ("<s>", ["bos"]) and "tokenizer_config.json bos_token" in bos["evidence"][0]
    sample = {s["raw"]: s for s in report["samples"]}
    spaced = [s for raw, s in sample.items() if raw.startswith("▁")]
    assert spaced and all(s["display"].startswith(" ") for s in spaced)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vocab", "/no/such/tokenizer.json"], "no such file"),
        (["vocab", "demo:nope"], "unknown demo tokenizer"),
        (["overlap", "demo:llama3", "tiktoken:gpt9:/no/file"], "no such file"),
    ],
)
def test_bad_input_exits_2_without_traceback(run_cli, args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_truncated_tokenizer_json_exits_2(run_cli, tmp_path) -> None:
    from xtoken_align.demo import demo_path

    path = tmp_path / "tokenizer.json"
    path.write_bytes(demo_path("qwen3").read_bytes()[:100_000])
    result = run_cli("vocab", str(path))
    assert result.returncode == 2 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr


def test_build_score_export_import_round_trip(run_cli, tmp_path) -> None:
    w = tmp_path / "W.safetensors"
    built = run_cli("build", "--student", "demo:llama3", "--teacher", "demo:qwen3", "-o", str(w))
    assert built.returncode == 0, built.stderr
    assert w.is_file() and w.with_suffix(".json").is_file()
    assert "digits" in built.stdout and "<|begin_of_text|>" in built.stdout  # unmatched specials are listed

    scored = run_cli("score", str(w), "--limit", "100", "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["coverage"]["digits:3"]["covered"] == 1000
    assert report["corpus"]["texts"] == 100 and report["corpus"]["agreement@1"] > 0.99

    pt = tmp_path / "W.pt"
    assert run_cli("export", str(w), "--format", "nemo", "-o", str(pt)).returncode == 0
    back = tmp_path / "back.safetensors"
    imported = run_cli("import", str(pt), "--student", "demo:llama3", "--teacher", "demo:qwen3", "-o", str(back))
    assert imported.returncode == 0, imported.stderr
    from xtoken_align.formats import load_projection

    original, reloaded = load_projection(w), load_projection(back)
    assert (original.matrix != reloaded.matrix).nnz == 0

    csv = tmp_path / "W.csv"
    assert run_cli("export", str(w), "--format", "csv", "-o", str(csv)).returncode == 0
    assert csv.read_text().splitlines()[0].startswith("student_id,student_piece")

    wrong = run_cli("score", str(w), "--student", "demo:llama2", "--no-corpus")
    assert wrong.returncode == 2 and "student tokenizer" in wrong.stderr and "Traceback" not in wrong.stderr


def test_build_refuses_bad_config_and_output(run_cli, tmp_path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text("rules:\n  - {name: telepathy}\n")
    out = str(tmp_path / "W.safetensors")
    pair = ("--student", "demo:llama2", "--teacher", "demo:llama3")
    result = run_cli("build", *pair, "-o", out, "--config", str(config))
    assert result.returncode == 2 and "invalid build config" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("build", *pair, "-o", str(tmp_path / "W.bin"))
    assert result.returncode == 2 and "should end in .safetensors" in result.stderr
    assert not list(tmp_path.glob("W*"))  # nothing half-written


def test_score_refuses_truncated_w(run_cli, tmp_path) -> None:
    w = tmp_path / "W.safetensors"
    assert run_cli("build", "--student", "demo:llama2", "--teacher", "demo:mistral-v1", "-o", str(w)).returncode == 0
    w.write_bytes(w.read_bytes()[:1000])
    result = run_cli("score", str(w))
    assert result.returncode == 2 and "do not match its sidecar" in result.stderr and "Traceback" not in result.stderr


def one_document(result) -> dict:
    """The whole of stdout as one JSON document (json.loads refuses anything before or after it)."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_build_export_import_json(run_cli, tmp_path) -> None:
    import numpy as np
    import polars as pl

    from xtoken_align.formats import load_projection

    pair = ("--student", "demo:llama3", "--teacher", "demo:qwen3")
    w = tmp_path / "W.safetensors"
    built = one_document(run_cli("build", *pair, "-o", str(w), "--json"))
    projection = load_projection(w)
    assert (built["path"], built["sidecar"]) == (str(w), str(w.with_suffix(".json")))
    assert built["shape"] == [128_256, 151_669] and built["entries"] == projection.matrix.nnz
    assert sum(built["rows_by_rule"].values()) == int(np.sum(np.diff(projection.matrix.indptr) > 0))
    assert built["top_k"] == projection.config.top_k and built["rows_by_rule"]["digits"] > 1_000
    unmatched = {s["piece"]: s for s in built["unmatched_special"]}
    bos = unmatched["<|begin_of_text|>"]
    assert bos["roles"] == ["bos"] and not projection.row(bos["id"])  # listed because its row is empty

    pt, rows = tmp_path / "W.pt", 128_256 + 64
    exported = one_document(
        run_cli("export", str(w), "--format", "nemo", "-o", str(pt), "--bf16", "--student-rows", str(rows), "--json")
    )
    assert (exported["format"], exported["dtype"], exported["student_rows"]) == ("nemo", "bfloat16", rows)
    assert exported["files"] == [str(pt)] and pt.is_file() and exported["entries"] == projection.matrix.nnz

    csv = tmp_path / "W.csv"
    table = one_document(run_cli("export", str(w), "--format", "csv", "-o", str(csv), "--json"))
    assert table["format"] == "csv" and table["dtype"] is None
    assert pl.read_csv(csv, infer_schema=False).height == table["entries"]  # a row per W entry

    back = tmp_path / "back.safetensors"
    result = run_cli("import", str(pt), *pair, "-o", str(back), "--json")
    imported = one_document(result)
    assert imported["output"] == str(back) and imported["entries"] == load_projection(back).matrix.nnz
    assert (imported["dtype"], imported["shape"][0], imported["padding_rows_dropped"]) == ("bfloat16", rows, 64)
    assert imported["rows_renormalised"] > 0 and imported["student_model_id"] == "demo:llama3"
    assert "next: xtoken-align score" in result.stderr


def test_restrict_json(run_cli, tmp_path) -> None:
    from conftest import gsm8k

    corpus, out, texts = tmp_path / "corpus.jsonl", tmp_path / "small", gsm8k("test")[:50]
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    result = run_cli("restrict", "demo:llama2", "--corpus", str(corpus), "-o", str(out), "--json")
    summary = one_document(result)
    kept = json.loads((out / "restriction.json").read_text(encoding="utf-8"))["kept"]
    assert summary["folder"] == str(out) and summary["size"] == len(kept) == sum(summary["reasons"].values())
    assert (summary["source"], summary["source_size"]) == ("llama2", 32_000) and summary["size"] < 32_000
    assert summary["texts_checked"] == len(texts) and "next: xtoken-align vocab" in result.stderr


def test_json_flag_keeps_errors_to_one_line(run_cli, tmp_path) -> None:
    w = tmp_path / "W.safetensors"
    assert run_cli("build", "--student", "demo:llama2", "--teacher", "demo:mistral-v1", "-o", str(w)).returncode == 0
    result = run_cli("export", str(w), "--format", "csv", "-o", str(tmp_path / "W.csv"), "--bf16", "--json")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("xtoken-align: error: --student-rows and --bf16 apply to --format nemo")
    assert not (tmp_path / "W.csv").exists()
