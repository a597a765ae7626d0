"""The numerals study's reading: a claim 'holds' only when the difference beats the seed spread."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "numerals"))

from readings import reading  # noqa: E402
from report import before_after, summarise  # noqa: E402


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


def control_runs(rows: dict[str, tuple[list[float], float]]) -> dict:
    """method -> (other-token accuracy per seed, accuracy elsewhere's offset); nats/char moves with it."""
    out = {}
    for method, (accs, far) in rows.items():
        for seed, acc in enumerate(accs):
            out[f"{method}/{seed}"] = {
                "method": method, "seed": seed, "wall_s": 1.0, "ce_token": 5.0, "nats_per_char": 2.0 - acc,
                "multi_acc": 0.0, "multi_p_true": 0.01, "mass@numeral": 0.4, "mass@other": 0.1, "other_acc": acc,
                "arith_em": 0.0, "pos_acc@numeral": 0.0, "pos_ce@numeral": 8.0, "pos_acc@after": 0.1,
                "pos_ce@after": 6.0, "pos_acc@elsewhere": acc + far, "pos_ce@elsewhere": 5.0,
            }  # fmt: skip
    return {"runs": out}


DEGRADED = [0.115, 0.120, 0.125]  # P-KL with Qwen3: far below CE only (0.21 ± 0.005)


def test_controls_name_the_cause_the_numbers_support():
    from readings import controls_reading

    summary = summarise(
        control_runs(
            {
                "ce": ([0.205, 0.210, 0.215], 0.0),
                "gold-qwen3": (DEGRADED, 0.0),
                "p_kl-qwen3": (DEGRADED, 0.0),
                "p_kl-oracle": ([0.205, 0.210, 0.215], 0.0),
                "gold-oracle": ([0.205, 0.212, 0.215], 0.0),
                "p_kl-qwen3@first": ([0.11, 0.12, 0.13], 0.0),
                "p_kl-qwen3@chain": ([0.11, 0.12, 0.13], 0.0),
                "p_kl-qwen3@fixed": ([0.11, 0.12, 0.13], 0.0),
            }
        )  # fmt: skip
    )
    lines = controls_reading(summary)
    verdict = lines[-1]
    assert "supported by the numbers: the Qwen3 teacher's own predictions (p_kl" in verdict
    assert "even the oracle" not in verdict  # the oracle is level with CE only
    assert "Not supported:" in verdict and "aggregation `first` instead of `mean` (within noise)" in verdict
    assert "damage confined to numerals" in verdict  # accuracy elsewhere drops with the rest
    assert any("Oracle vs real Qwen3 teacher under p_kl" in x and "better, holds" in x for x in lines)


def test_controls_rule_the_teacher_out_when_the_oracle_degrades_as_much():
    from readings import controls_reading

    same = (DEGRADED, 0.0)
    summary = summarise(
        control_runs(
            {
                "ce": ([0.205, 0.210, 0.215], 0.0),
                "gold-qwen3": same,
                "p_kl-qwen3": same,
                "p_kl-oracle": same,
                "gold-oracle": same,
                "p_kl-qwen3@first": same,
                "p_kl-qwen3@chain": same,
                "p_kl-qwen3@fixed": ([0.20, 0.205, 0.21], 0.0),
            }
        )  # fmt: skip
    )
    verdict = controls_reading(summary)[-1]
    assert "the path through Qwen3's tokenization (p_kl: even the oracle is below CE only)" in verdict
    assert "fixed CE/KD weights (KD 1.0, CE 0.1), not dynamic (it recovers part of the loss)" in verdict
    assert "the Qwen3 teacher's quality (p_kl: the oracle does no better)" in verdict.split("Not supported:")[1]


def test_controls_name_nothing_without_a_degradation_or_with_one_seed():
    from readings import controls_reading

    level = ([0.205, 0.210, 0.215], 0.0)
    summary = summarise(control_runs({"ce": level, "p_kl-qwen3": level, "p_kl-qwen3@chain": level}))
    assert "there is no cause to name" in controls_reading(summary)[-1]
    one = summarise(control_runs({"ce": ([0.21], 0.0), "p_kl-qwen3": ([0.12], 0.0), "p_kl-oracle": ([0.2], 0.0)}))
    lines = controls_reading(one)
    assert lines[-1] == "- **Reading:** no verdict: a row is missing or has one seed."
    assert "holds" not in "".join(lines)
