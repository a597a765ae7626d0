"""results.json, results.md (tables + the readings of readings.py) and charts.html (+ PNG when kaleido
works) of the study."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from readings import MULTI_PAIRS, REFERENCE_PAIRS, controls_reading, pairs_reading, reading, sentencepiece_reading

COLUMNS = [  # key, header, digits
    ("ce_token", "held-out CE/token", 3),
    ("nats_per_char", "nats/char", 3),
    ("multi_acc", "multi-digit numeral acc", 3),
    ("multi_p_true", "multi-digit p(true)", 3),
    ("mass@numeral", "multi-digit mass @numeral", 3),
    ("mass@other", "multi-digit mass @other", 4),
    ("other_acc", "other-token acc", 3),
    ("arith_em", "arith exact match", 3),
]
POSITION_COLUMNS = [  # per-position breakdown (run.py position_classes): where the student's damage sits
    (f"pos_{k}@{where}", f"{label} {name}", 3)
    for where, label in (("numeral", "in a numeral"), ("after", "right after one"), ("elsewhere", "elsewhere"))
    for k, name in (("acc", "acc"), ("ce", "CE"))
]


def summarise(results: dict) -> dict[str, dict]:
    """method -> {key: (mean, sd, n)} over seeds, in the order the runs were made."""
    by: dict[str, list[dict]] = {}
    for row in results["runs"].values():
        by.setdefault(row["method"], []).append(row)
    out = {}
    for method, rows in by.items():
        out[method] = {}
        for key, _, _ in COLUMNS + POSITION_COLUMNS + [("wall_s", "", 0)]:
            if any(key not in r for r in rows):  # runs made before a column existed
                continue
            values = [r[key] for r in rows]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            out[method][key] = (statistics.fmean(values), sd, len(values))
    return out


def cell(stat: tuple, digits: int) -> str:
    mean, sd, n = stat
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def table(summary: dict, columns: list = COLUMNS) -> str:
    lines = ["| method | seeds | " + " | ".join(h for _, h, _ in columns) + " | wall s/run |"]
    lines.append("|" + " --- |" * (len(columns) + 3))
    for method, stats in summary.items():
        if any(k not in stats for k, _, _ in columns):
            continue
        cells = [cell(stats[k], d) for k, _, d in columns]
        lines.append(f"| {method} | {stats['ce_token'][2]} | " + " | ".join(cells) + f" | {stats['wall_s'][0]:.0f} |")
    return "\n".join(lines)


def before_after(before: dict, after: dict) -> list[str]:
    """Markdown rows: each method of both runs, the run before the loss fixes of issue 12 next to this one,
    and the KD signs this run logged (steps with kd < 0, the smallest kd, the mean KD scale)."""
    old, new = summarise(before), summarise(after)
    keys = [("nats_per_char", 3), ("mass@numeral", 3), ("multi_p_true", 3), ("other_acc", 3)]
    lines = [
        "| method | seeds | " + " | ".join(f"{k} before → after" for k, _ in keys)
        + " | steps with kd < 0 | min kd | mean KD scale | mean unreachable mass |",
        "|" + " --- |" * (len(keys) + 6),
    ]  # fmt: skip
    for method, stats in new.items():
        if method not in old:
            continue
        cells = [f"{cell(old[method][k], d)} → {cell(stats[k], d)}" for k, d in keys]
        rows = [r for r in after["runs"].values() if r["method"] == method]
        signs = ["", "", "", ""]
        if "kd_negative_steps" in rows[0]:
            unreachable = [r["unreachable_mean"] for r in rows if r["unreachable_mean"] is not None]
            steps = len(rows) * after["settings"]["scale"]["student_steps"]
            signs = [
                f"{sum(r['kd_negative_steps'] for r in rows)} of {steps}",
                f"{min(r['kd_min'] for r in rows):.4f}",
                f"{statistics.fmean(r['kd_scale_mean'] for r in rows):.2f}",
                f"{statistics.fmean(unreachable):.4f}" if unreachable else "",
            ]
        lines.append(f"| {method} | {stats['ce_token'][2]} | " + " | ".join(cells + signs) + " |")
    return lines


def charts(results: dict, summary: dict, folder: Path) -> str:
    import os
    import shutil

    import plotly
    import plotly.graph_objects as go

    if shutil.which("chromium"):  # kaleido renders PNGs with a Chrome-family browser
        os.environ.setdefault("BROWSER_PATH", shutil.which("chromium"))

    methods = list(summary)
    bars = go.Figure()
    for key, name in (
        ("mass@numeral", "mass on multi-digit numerals where the next token is one"),
        ("mass@other", "mass on multi-digit numerals elsewhere"),
    ):
        bars.add_bar(x=methods, y=[summary[m][key][0] for m in methods], name=name,
                     error_y={"type": "data", "array": [summary[m][key][1] for m in methods]})  # fmt: skip
    bars.update_layout(title="Student probability on multi-digit numerals, held-out GSM8K (mean ± sd over seeds)",
                       barmode="group", template="plotly_white", width=1100, height=520, xaxis_tickangle=-30,
                       legend={"orientation": "h", "y": -0.35})  # fmt: skip
    curves = go.Figure()
    palette = plotly.colors.qualitative.Dark24  # 24 distinct colours: the default 10 repeat across 13 methods
    for index, row in enumerate(r for r in results["runs"].values() if r["seed"] == 0 and r["curve"]):
        dash = "dot" if "o200k" in row["method"] else "solid"  # Qwen3 teacher solid, o200k dotted
        curves.add_scatter(x=[c[0] for c in row["curve"]], y=[c[1] for c in row["curve"]], name=row["method"],
                           line={"color": palette[index % len(palette)], "dash": dash, "width": 2.5})  # fmt: skip
    curves.update_layout(title="Multi-digit numeral mass at numeral positions during training (seed 0)",
                         xaxis_title="step (0 = the shared CE warm-start)", yaxis_title="mass", template="plotly_white",
                         width=1100, height=520)  # fmt: skip
    html = bars.to_html(include_plotlyjs=True, full_html=False) + curves.to_html(
        include_plotlyjs=False, full_html=False
    )
    (folder / "charts.html").write_text(f"<html><head><meta charset='utf-8'></head><body>{html}</body></html>")
    for _ in range(3):  # under heavy load kaleido's browser sometimes fails a render once
        try:
            bars.write_image(folder / "numerals.png")
            curves.write_image(folder / "numeral_mass_curve.png")
            return "PNG: numerals.png, numeral_mass_curve.png."
        except Exception as exc:  # kaleido (and a browser) absent: HTML only
            failure = exc
    return f"PNG skipped: kaleido export unavailable ({type(failure).__name__})."


def vocab_line(results: dict) -> str:
    if not results.get("vocab"):
        return "Output layers: the full vocabularies (`--full-vocab`)."
    parts = [f"{n} {v['full']:,} → {v['kept']:,} ({v['reasons'].get('numeral', 0):,} numerals added beyond the text)"
             for n, v in results["vocab"].items()]  # fmt: skip
    return (
        "Output layers restricted to the tokens of the study's text (`xtoken-align restrict`: exact on that text,"
        " every numeral, special and byte kept, merge parents kept): " + "; ".join(parts) + "."
    )


def write_report(results: dict, folder: Path, before: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    summary = summarise(results)
    png = charts(results, summary, folder)
    t = results["teachers"]
    ce = summary.get("ce", {}).get("nats_per_char", (float("nan"),))[0]
    row = "| {} | {nats_per_char:.3f} | {ce_token:.3f} | {multi_acc:.3f} | {wall_s:.0f} |"
    teacher_lines = [row.format(n, **r) for n, r in t.items()]
    label = (
        "QUICK RUN: 1 seed, a handful of steps, a pipeline check and not evidence"
        if results["mode"] == "quick"
        else "full run"
    )
    md = [
        f"# Uncommon-token study: results ({label})",
        "",
        f"Command: `{results['command']}` · wall time {results['wall_s'] / 60:.1f} min"
        f" · seeds 0..{results['settings']['seeds'] - 1}",
        "(student init seed 100+s shared by every method of seed s; teachers seed 7, trained once).",
        "",
        f"Settings (identical for every method): `{json.dumps(results['settings'])}`; loss.combine=dynamic for",
        "every KD run (but the `@fixed` control: KD 1.0, CE 0.1), aggregation `mean` (but `@first`, `@chain`);",
        "the CE-only run is combine=fixed, kd_weight=0, ce_weight=1. Every student of seed s starts",
        "from the same CE warm-start (`warm-start` row: `warmup_steps` of CE from init seed 100+s) and then trains",
        "`student_steps` more with its method. Teachers: CE-only pre-training with the runner (1-layer",
        "same-tokenizer kd teacher, weight 0).",
        "",
        cache_line(results),
        "",
        vocab_line(results),
        "",
        "## Students (Llama-3 tokenizer), held-out GSM8K test solutions + held-out arithmetic",
        "",
        table(summary),
        "",
        "## Teachers (CE-only pre-training with the runner)",
        "",
        "| teacher | nats/char | CE/token (own tokenizer) | multi-digit acc | wall s |",
        "| --- | --- | --- | --- | --- |",
        *teacher_lines,
        "",
        f"CE-only student: {ce:.3f} nats/char. Teachers better than it: "
        + ", ".join(f"{n} {'yes' if r['nats_per_char'] < ce else 'NO'}" for n, r in t.items())
        + ".",
        "",
        "## Common sets: what GOLD and H-KL compare (student Llama-3, restricted vocabularies)",
        "",
        "| teacher | GOLD common (raw strings) | H-KL common (W ≥ 0.6) | identical pairs"
        " | multi-digit numerals in GOLD / H-KL common |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {t} | {c['gold']:,} | {c['hkl']:,} | {c['same_pairs']:,}"
            f" | {c['gold_multi_digit']:,} / {c['hkl_multi_digit']:,}"
            f" of {c['multi_digit']:,} |"
            for t, c in results.get("common", {}).items()
        ],
        "",
        "## Reading (measured; 'holds' means the difference exceeds the larger seed sd)",
        "",
        *reading(summary),
        "",
        "## Why the Qwen3 teacher costs non-numeral accuracy: controls",
        "",
        "Same warm start, data order and hyperparameters as p_kl-qwen3 (aggregation `mean`, combine `dynamic`),"
        " one setting changed per row. Oracle: a teacher cache with Qwen3's tokenizer holding, at every teacher"
        f" position, {results.get('oracle', {}).get('mass', 'n/a')} on the true next teacher token and the rest"
        " spread uniformly (experiments/numerals/oracle.py). 'holds' = the difference exceeds the larger seed sd.",
        "",
        *controls_reading(summary),
        "",
        "Per-position breakdown of held-out next-token predictions (GSM8K test + arithmetic): target inside a"
        " multi-digit number (≥ 2 digits), the first token right after one, elsewhere" + position_counts(results) + ".",
        "",
        table(summary, POSITION_COLUMNS),
        "",
        "## SentencePiece-spelled teacher (Llama-2 tokenizer)",
        "",
        *sentencepiece_reading(summary, results.get("common", {})),
        "",
        "## Reference P-KL semantics vs ours (loss.semantics, docs/method.md §9)",
        "",
        "Same runs but for `loss.semantics: reference` (log-space chunk aggregation, top-k over every",
        "position, ε-clamped logs: NeMo-RL's P-KL); 'holds' = beyond the larger seed sd.",
        "",
        *pairs_reading(summary, REFERENCE_PAIRS),
        "",
        "## Several teachers (seed 0: one run each, no verdict)",
        "",
        *pairs_reading(summary, MULTI_PAIRS),
        "",
        f"Charts: [charts.html](charts.html). {png}",
    ]
    if before is not None:
        md += [
            "",
            "## Before and after the loss fixes (issue 12)",
            "",
            f"Before: `{before['command']}` as published before issue 12 (results-before-issue12.json): P-KL",
            "priced teacher mass W cannot reach at log(float32 tiny), kept the projected student unnormalised",
            "within the top-k columns, and the dynamic scale was the signed ce / kd. After: that mass left out",
            "(and logged), the student renormalised within the columns, the scale |ce| / |kd| in [0.01, 100].",
            "Teachers (nats/char) before → after: "
            + ", ".join(
                f"{n} {before['teachers'][n]['nats_per_char']:.3f} → {r['nats_per_char']:.3f}"
                for n, r in t.items()
                if n in before["teachers"]
            )
            + " (CE-only training: a teacher that moved was changed by other commits, not by the losses).",
            "",
            *before_after(before, results),
        ]
    if results["mode"] == "quick":
        md += [
            "",
            "These numbers come from a handful of optimiser steps: every model is still near its random start,",
            "so no claim of the paper is tested here; this run only proves the pipeline works.",
        ]
    (folder / "results.md").write_text("\n".join(md) + "\n")


def position_counts(results: dict) -> str:
    """' (N, N and N student positions)' from any run's breakdown (every run sees the same texts)."""
    row = next((r for r in results["runs"].values() if "positions" in r), None)
    if row is None:
        return ""
    return " (" + ", ".join(f"{g['tokens']:,} {where}" for where, g in row["positions"].items()) + " positions)"


def cache_line(results: dict) -> str:
    """How the student runs saw their teachers: cached once (and how long that took) or live."""
    cache = results.get("teacher_cache")
    if cache is None:
        return "Teachers ran live in every student run (`--live-teachers`)."
    per = ", ".join(
        f"{name} {t['positions']:,} positions at {t['tokens_per_s']:,.0f}/s" for name, t in cache["teachers"].items()
    )
    how = f"top-K {cache['topk']}, {cache['sampled']} sampled, {cache['logp_dtype']} log-probs"
    took = f"{cache['wall_s']:.0f} s ({per})"
    return f"Teachers were run once into caches (`cache-teacher`: {how}) in {took}; every student run read them."
