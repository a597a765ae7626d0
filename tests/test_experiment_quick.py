"""The uncommon-token study (experiments/numerals) runs end to end in --quick mode and writes its table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "numerals" / "run.py"


def test_quick_study_writes_a_finite_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    methods = {row["method"] for row in results["runs"].values()}
    assert methods == {"warm-start", "ce", "gold-qwen3", "p_kl-qwen3", "h_kl-o200k", "p_kl-oracle", "p_kl-qwen3@chain",
                       "p_kl-qwen3@fixed", "h_kl-llama2", "p_kl-qwen3@reference", "three-ce"}  # every kind  # fmt: skip
    for name, sizes in results["vocab"].items():  # output layers restricted, every numeral kept
        assert sizes["kept"] < sizes["full"] / 5, name
    assert results["vocab"]["llama3"]["reasons"]["numeral"] > 0
    for row in results["runs"].values():
        assert all(math.isfinite(row[k]) for k in ("ce_token", "multi_acc", "mass@numeral", "arith_em"))
    table = (tmp_path / "results.md").read_text()
    for method in methods:
        assert f"| {method} | 1 |" in table
    assert (tmp_path / "charts.html").stat().st_size > 100_000  # plotly.js inlined
    assert (tmp_path / "numerals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Teachers ran once, into caches, and the student runs read those caches (no teacher model).
    # (the same-tokenizer Llama-3 teacher only with --extras: no row of the default run reads it)
    assert set(results["teacher_cache"]["teachers"]) == {"qwen3", "o200k", "llama2"}
    run = (tmp_path / "students" / "p_kl-qwen3-seed0" / "config.yaml").read_text()
    assert f"cache: {tmp_path / 'cache' / 'qwen3'}" in run and "teachers/qwen3" not in run
    # The rows of issue 17 ran with the settings they name; the oracle read its own cache.
    assert (
        f"cache: {tmp_path / 'cache' / 'oracle'}"
        in (tmp_path / "students" / "p_kl-oracle-seed0" / "config.yaml").read_text()
    )
    assert "aggregation: chain" in (tmp_path / "students" / "p_kl-qwen3@chain-seed0" / "config.yaml").read_text()
    assert "combine: fixed" in (tmp_path / "students" / "p_kl-qwen3@fixed-seed0" / "config.yaml").read_text()
    reference = (tmp_path / "students" / "p_kl-qwen3@reference-seed0" / "config.yaml").read_text()
    assert "semantics: reference" in reference
    three = (tmp_path / "students" / "three-ce-seed0" / "config.yaml").read_text()
    assert "teacher_weighting: ce" in three and three.count(f"cache: {tmp_path / 'cache'}/") == 3
    assert results["common"]["llama2"]["hkl"] > results["common"]["llama2"]["gold"]  # SentencePiece spelling
    for row in results["runs"].values():  # the per-position breakdown covers every held-out position
        assert sum(g["tokens"] for g in row["positions"].values()) > 0 and row["positions"]["numeral"]["tokens"] > 0
    assert "## Why the Qwen3 teacher costs non-numeral accuracy: controls" in table
    assert "- **Reading:** no verdict" in table  # one seed: no verdict, whatever the numbers
