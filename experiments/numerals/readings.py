"""The study's readings: each claim of results.md as a comparison of two rows' means against the larger
seed sd ("holds" only beyond it), with the verdict computed, never written by hand. Left out: the
tables, charts and files (report.py)."""

from __future__ import annotations


def reading(summary: dict) -> list[str]:
    def get(method, key="mass@numeral"):
        return summary[method][key][0] if method in summary else None

    def spread(method, key="mass@numeral"):
        return summary[method][key][1] if method in summary else 0.0

    claims = [
        ("GOLD suppresses numerals below CE-only (Qwen3 teacher)", "gold-qwen3", "ce", -1),
        ("P-KL restores them (P-KL vs GOLD, Qwen3 teacher)", "p_kl-qwen3", "gold-qwen3", +1),
        ("H-KL ≥ GOLD with o200k", "h_kl-o200k", "gold-o200k", +1),
    ]
    out = []
    for text, a, b, sign in claims:
        if get(a) is None or get(b) is None:
            out.append(f"- {text}: not measured in this run.")
            continue
        parts = []
        for key in ("mass@numeral", "multi_p_true"):
            diff = get(a, key) - get(b, key)
            noise = max(spread(a, key), spread(b, key))
            verdict = "holds" if diff * sign > noise else ("within noise" if abs(diff) <= noise else "reversed")
            if summary[a][key][2] < 2:
                verdict = "1 seed: no spread, no verdict"
            parts.append(
                f"{key} {get(a, key):.3f} vs {get(b, key):.3f} (Δ {diff:+.3f}, seed sd {noise:.3f}: {verdict})"
            )
        out.append(f"- {text}: " + "; ".join(parts) + ".")
    return out


HIGHER_BETTER = {"other_acc": True, "nats_per_char": False, "mass@numeral": True, "multi_p_true": True}


def compare(summary: dict, a: str, b: str, key: str) -> tuple[str, str | None]:
    """`a` against `b` on `key`: the text, and the verdict: "better" / "worse" when the difference
    exceeds the larger seed sd (in the direction in which `key` is better), "within noise", "no verdict"
    (a row with one seed), or None when a row was not run."""
    if a not in summary or b not in summary or key not in summary[a] or key not in summary[b]:
        return f"{a} vs {b}: not measured in this run", None
    (ma, sa, na), (mb, sb, nb) = summary[a][key], summary[b][key]
    diff, noise = ma - mb, max(sa, sb)
    if min(na, nb) < 2:
        verdict = "no verdict"
    elif abs(diff) <= noise:
        verdict = "within noise"
    else:
        verdict = "better" if (diff > 0) == HIGHER_BETTER.get(key, True) else "worse"
    shown = {"better": "better, holds", "worse": "worse, holds", "no verdict": "1 seed: no spread, no verdict"}
    text = f"{a} {ma:.3f} vs {b} {mb:.3f} (Δ {diff:+.3f}, seed sd {noise:.3f}: {shown.get(verdict, verdict)})"
    return text, verdict


def overall(verdicts: list[str | None]) -> str | None:
    """One verdict from several metrics': better / worse only when no metric says the opposite."""
    vs = [v for v in verdicts if v is not None]
    if not vs:
        return None
    if "no verdict" in vs:
        return "no verdict"
    if "better" in vs and "worse" in vs:
        return "mixed"
    return "better" if "better" in vs else "worse" if "worse" in vs else "within noise"


def controls_reading(summary: dict) -> list[str]:
    """What the controls say about why the Qwen3 teacher costs the student its non-numeral accuracy:
    each candidate cause against the seed sd (other-token accuracy and nats/char), then the causes the
    numbers support and those they do not; nothing is named by hand."""
    lines, supported, ruled_out = [], [], []

    def both(a: str, b: str) -> tuple[str, str | None]:
        parts = [compare(summary, a, b, key) for key in ("other_acc", "nats_per_char")]
        text = "; ".join(f"{name} {t}" for name, (t, _) in zip(("other-token acc", "nats/char"), parts, strict=True))
        return text, overall([v for _, v in parts])

    base, degraded = both("p_kl-qwen3", "ce")
    lines.append(f"- The degradation itself, P-KL with Qwen3 vs CE only: {base}.")
    lines.append(f"- GOLD with Qwen3 vs CE only: {both('gold-qwen3', 'ce')[0]}.")
    # (a) the teacher: an oracle with Qwen3's tokenizer in the real teacher's place
    for loss in ("p_kl", "gold"):
        text, vs_real = both(f"{loss}-oracle", f"{loss}-qwen3")
        vs_ce_text, vs_ce = both(f"{loss}-oracle", "ce")
        lines.append(f"- Oracle vs real Qwen3 teacher under {loss}: {text}. Oracle vs CE only: {vs_ce_text}.")
        if vs_real == "better":
            supported.append(f"the Qwen3 teacher's own predictions ({loss}: the oracle does better than it)")
        elif vs_real in ("within noise", "worse"):
            ruled_out.append(f"the Qwen3 teacher's quality ({loss}: the oracle does no better)")
        if vs_ce == "worse" and vs_real is not None:
            supported.append(f"the path through Qwen3's tokenization ({loss}: even the oracle is below CE only)")
    # (b) chunk aggregation, (c) the dynamic CE/KD scale: does changing it recover the student?
    for row, what in (("p_kl-qwen3@first", "aggregation `first` instead of `mean`"),
                      ("p_kl-qwen3@chain", "aggregation `chain` instead of `mean`"),
                      ("p_kl-qwen3@fixed", "fixed CE/KD weights (KD 1.0, CE 0.1), not dynamic")):  # fmt: skip
        text, v = both(row, "p_kl-qwen3")
        lines.append(f"- {what[0].upper() + what[1:]} (P-KL, Qwen3): {text}.")
        if v == "better":
            supported.append(f"{what} (it recovers part of the loss)")
        elif v in ("within noise", "worse"):
            ruled_out.append(f"{what} ({v})")
    # (d) where the damage sits: positions inside / right after multi-digit numerals vs elsewhere
    far = {}
    for method in ("p_kl-qwen3", "gold-qwen3", "p_kl-oracle", "gold-oracle"):
        if method not in summary:
            continue
        parts = []
        for where in ("numeral", "after", "elsewhere"):
            t, v = compare(summary, method, "ce", f"pos_acc@{where}")
            parts.append(f"{where}: {t}")
            far[method] = v
        lines.append(f"- Per-position accuracy, {method} vs CE only: " + "; ".join(parts) + ".")
    if far.get("p_kl-qwen3") == "worse":
        ruled_out.append("damage confined to numerals (P-KL/Qwen3 loses accuracy away from them, beyond the sd)")
    elif far.get("p_kl-qwen3") == "within noise":
        supported.append("numeral positions (away from multi-digit numbers P-KL/Qwen3 is within noise of CE)")
    if degraded in (None, "no verdict"):
        verdict = "no verdict: a row is missing or has one seed"
    elif degraded != "worse":
        verdict = (
            f"P-KL with Qwen3 is not below CE only beyond the seed sd here ({degraded}), so there is no cause to name"
        )
    elif supported:
        verdict = "supported by the numbers: " + "; ".join(supported)
    else:
        verdict = "none of the tested causes is supported by the numbers"
    lines.append(f"- **Reading:** {verdict}" + (f". Not supported: {'; '.join(ruled_out)}." if ruled_out else "."))
    return lines


def sentencepiece_reading(summary: dict, common: dict) -> list[str]:
    """The SentencePiece-spelled teacher (Llama-2): H-KL vs GOLD, P-KL vs GOLD, against the seed sd."""
    c = common.get("llama2")
    lines = []
    if c:
        lines.append(f"- Common sets with Llama-2: GOLD {c['gold']:,} pairs (raw strings), H-KL {c['hkl']:,} (W ≥ 0.6),"
                     f" multi-digit numerals common {c['gold_multi_digit']:,} / {c['hkl_multi_digit']:,} of "
                     f"{c['multi_digit']:,}.")  # fmt: skip
    for a, b, keys in (("h_kl-llama2", "gold-llama2", ("nats_per_char", "other_acc", "mass@numeral")),
                       ("p_kl-llama2", "gold-llama2", ("mass@numeral", "multi_p_true", "nats_per_char"))):  # fmt: skip
        parts = [f"{k} {compare(summary, a, b, k)[0]}" for k in keys]
        lines.append(f"- {a} vs {b}: " + "; ".join(parts) + ".")
    return lines


PAIR_KEYS = ("mass@numeral", "other_acc", "nats_per_char")


def pairs_reading(summary: dict, pairs: tuple, keys: tuple = PAIR_KEYS) -> list[str]:
    """One line per (a, b, label): a against b on `keys`, each against the seed sd."""
    return [f"- {label}: " + "; ".join(f"{k} {compare(summary, a, b, k)[0]}" for k in keys) + "."
            for a, b, label in pairs]  # fmt: skip


REFERENCE_PAIRS = (("p_kl-qwen3@reference", "p_kl-qwen3", "Qwen3, reference vs ours"),
                   ("p_kl-o200k@reference", "p_kl-o200k", "o200k, reference vs ours"))  # fmt: skip
MULTI_PAIRS = (("two-ce", "two-static", "two teachers (Qwen3 P-KL + o200k H-KL), CE-softmax vs equal weights"),
               ("three-ce", "three-static", "three teachers (+ Llama-2 P-KL), CE-softmax vs equal weights"),
               ("two-static", "h_kl-o200k", "two teachers, equal weights, vs o200k alone (H-KL)"),
               ("three-static", "h_kl-o200k", "three teachers, equal weights, vs o200k alone (H-KL)"))  # fmt: skip
