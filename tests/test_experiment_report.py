"""The numerals study's reading: a claim 'holds' only when the difference beats the seed spread."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "numerals"))

from report import before_after, reading, summarise  # noqa: E402


def runs(values: dict[str, list[float]]) -> dict:
    rows = {}
    for method, masses in values.items():
        for seed, mass in enumerate(masses):
            rows[f"{method}/{seed}"] = {
                "method": method, "seed": seed, "wall_s": 1.0, "ce_token": 5.0, "nats_per_char": 1.8,
                "multi_acc": 0.0, "multi_p_true": mass / 10, "mass@numeral": mass, "mass@other": 0.1,
                "other_acc": 0.2, "arith_em": 0.0,
            }  # fmt: skip
    return {"runs": rows}


def test_verdicts_follow_the_seed_spread():
    summary = summarise(
        runs(
            {
                "ce": [0.40, 0.42, 0.44],
                "gold-qwen3": [0.01, 0.012, 0.014],  # far below CE: holds
                "p_kl-qwen3": [0.00, 0.02, 0.04],  # above GOLD by less than its own spread: within noise
                "gold-o200k": [0.50, 0.50, 0.50],
                "h_kl-o200k": [0.30, 0.31, 0.32],  # H-KL clearly below GOLD: reversed
            }
        )  # fmt: skip
    )
    gold, pkl, hkl = reading(summary)
    assert "mass@numeral 0.012 vs 0.420" in gold and gold.count("holds") == 2
    assert "within noise" in pkl
    assert hkl.count("reversed") == 2


def test_one_seed_gives_no_verdict_and_missing_rows_are_named():
    gold, pkl, hkl = reading(summarise(runs({"ce": [0.4], "gold-qwen3": [0.01], "p_kl-qwen3": [0.5]})))
    assert "1 seed: no spread, no verdict" in gold and "holds" not in gold
    assert hkl.endswith("not measured in this run.")


def test_before_after_puts_the_old_numbers_next_to_the_new():
    before = runs({"ce": [0.40, 0.42], "gold-qwen3": [0.01, 0.02]})
    after = runs({"ce": [0.40, 0.42], "gold-qwen3": [0.30, 0.32], "uld-qwen3": [0.2]})
    for row in after["runs"].values():
        row |= {"kd_negative_steps": 3, "kd_min": -0.25, "kd_scale_mean": 12.0, "unreachable_mean": None}
    after["settings"] = {"scale": {"student_steps": 80}}
    header, _, ce, gold = before_after(before, after)
    assert "mass@numeral before → after" in header
    assert "| gold-qwen3 | 2 | " in gold and "0.015 ± 0.007 → 0.310 ± 0.014" in gold
    assert "| 6 of 160 | -0.2500 | 12.00 |  |" in gold
