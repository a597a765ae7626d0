"""Diagnosis before training: which student tokens a GOLD-style loss would push down, per teacher.

`diagnose(student, [(teacher, W or None), ...], texts)` audits the student vocabulary per category
(method.md §5), measures on a corpus how much of the student's next-token targets those tokens carry,
lists the suppressed tokens of one sample sentence, and recommends a loss per teacher. Definitions,
all counted over student token ids (unused ids left out, special tokens as category `special`):

- strict: in GOLD's 1:1 exact-match set as TRL builds it: the raw `get_vocab()` string (special
  tokens included) is also a teacher piece. `Ġ12` vs `▁12` is a miss, as it is for GOLD.
- exact: the canonical bytes match a regular teacher token (special tokens: the same content).
- common: in the H-KL common set of W (top weight ≥ 0.6, method.md §4, `score.common_set`).
- covered: W's row is not empty. Same-vocabulary teachers without a given W use the identity map.
- severity: a critical category is ok at a common share ≥ 0.95, warn at ≥ 0.5, else critical; other
  categories are ok or warn. (The strict column is GOLD's view; severity is the view of the loss
  the report recommends.)
- recommendation: "kd" when both tokenizers share one canonical vocabulary (equal fingerprints);
  "p_kl" when a critical category has a common share below 0.95 (H-KL's, like GOLD's, common-set
  KL pushes tokens outside the set down whatever the target, method.md §1); else "h_kl". The
  reason sentence quotes the table's own counts.
- corpus (null without texts): every student token of every text (no BOS) is a next-token target. `suppressed_mass` is
  the share of them outside the strict set: the ground truth GOLD pushes down and P-KL keeps. Chunks
  close where both tokenisations reach the same byte offset (method.md §3); a student position is
  "not 1:1" when its chunk is not one student token facing one teacher token.

Left out: anything that needs a model (teacher probabilities, gradients).
The text, figure and HTML renderings are re-exported here from `reports` and `diagnose_html`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np

from xtoken_align.categories import CATEGORY_ORDER, category_rank, is_numeral
from xtoken_align.diagnose_corpus import corpus_mass
from xtoken_align.diagnose_html import diagnose_figures, diagnose_html
from xtoken_align.errors import XTokenError
from xtoken_align.formats import check_tokenizers
from xtoken_align.projection import Projection, build_projection
from xtoken_align.reports import diagnose_text
from xtoken_align.score import common_set
from xtoken_align.spans import encode_spans
from xtoken_align.vocab import Vocab

__all__ = [
    "DEFAULT_CRITICAL",
    "check_categories",
    "diagnose",
    "diagnose_figures",
    "diagnose_html",
    "diagnose_text",
    "unmatched_critical_csv",
]

DEFAULT_CRITICAL: tuple[str, ...] = ("digits:1", "digits:2", "digits:3", "digits:4+")
DEFAULT_SAMPLE = "Natalia sold 48 clips in April and 124 in May, 172 in total."
OK_SHARE, WARN_SHARE = 0.95, 0.5


def check_categories(names: Sequence[str]) -> list[str]:
    """Category names in report order, or XTokenError naming the unknown ones and the known ones.

    >>> check_categories(["digits:3", "digits:2", "digits:3"])
    ['digits:2', 'digits:3']
    """
    unknown = [name for name in names if name not in CATEGORY_ORDER]
    if unknown:
        raise XTokenError(f"unknown category {', '.join(map(repr, unknown))}; known: {', '.join(CATEGORY_ORDER)}")
    return sorted(set(names), key=category_rank)


def severity(share: float, critical: bool) -> str:
    """ok / warn / critical for a category's strict share; only critical categories reach "critical".

    >>> severity(0.0, True), severity(0.0, False), severity(0.6, True), severity(1.0, True)
    ('critical', 'warn', 'warn', 'ok')
    """
    if share >= OK_SHARE:
        return "ok"
    return "warn" if share >= WARN_SHARE or not critical else "critical"


def diagnose(
    student: Vocab,
    teachers: list[tuple[Vocab, Projection | None]],
    texts: list[str] | None,
    critical: Sequence[str] = DEFAULT_CRITICAL,
    sample_text: str | None = None,
    *,
    corpus_name: str = "",
) -> dict:
    """The whole `xtoken-align diagnose` report as one JSON-ready dict (see the module docstring).
    A None W is built with the default rules (or is the identity for a same-vocabulary teacher)."""
    critical = check_categories(critical)
    if texts is not None and not any(text.strip() for text in texts):
        raise XTokenError(f"{f'corpus {corpus_name}' if corpus_name else 'the corpus'} holds no text")
    sample_text = DEFAULT_SAMPLE if sample_text is None else sample_text
    per_id = [_category(student, i) for i in range(student.size)]
    names = sorted(set(per_id), key=lambda c: (category_rank(c), c))
    codes = np.asarray([names.index(c) for c in per_id], dtype=np.int64)  # (V_S,) index into names
    critical_codes = [names.index(c) for c in critical if c in names]
    student_tokens = encode_spans(student, texts) if texts is not None else None
    sample_ids = student.tokenizer.encode(sample_text, add_special_tokens=False).ids
    report = {
        "student": _info(student),
        "critical": critical,
        "thresholds": {"ok": OK_SHARE, "warn": WARN_SHARE},
        "sample_text": sample_text,
        "teachers": [],
    }
    for teacher, projection in teachers:
        same = teacher.fingerprint == student.fingerprint
        if projection is not None:
            check_tokenizers(projection, student, teacher)
        elif not same:
            projection = build_projection(student, teacher, progress=False)
        strict = _strict(student, teacher)
        categories = _audit(student, teacher, projection, strict, codes, names, critical)
        recommendation, reason = _recommend(student, teacher, categories, critical, same)
        corpus = None
        if student_tokens is not None:
            tokens = (student_tokens, encode_spans(teacher, texts))
            corpus = {"name": corpus_name, "texts": len(texts)}
            corpus |= corpus_mass(*tokens, ~strict, codes, names, critical_codes)
        at_risk = np.flatnonzero(np.isin(codes, critical_codes) & ~strict).tolist()
        report["teachers"].append(
            {
                "teacher": _info(teacher),
                "recommendation": recommendation,
                "reason": reason,
                "categories": categories,
                "corpus": corpus,
                "suppressed_sample": [
                    {"position": p} | _token(student, i, names[codes[i]])
                    for p, i in enumerate(sample_ids)
                    if not strict[i]
                ],
                "unmatched_critical": [
                    _token(student, i, names[codes[i]]) | {"w_row": _w_row(projection, teacher, i)} for i in at_risk
                ],
            }
        )
    return report


def unmatched_critical_csv(report: dict) -> str:
    """Every teacher's unmatched critical student tokens as CSV (one row per teacher and token)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["teacher", "student_id", "piece", "display", "category", "w_row"])
    for entry in report["teachers"]:
        for token in entry["unmatched_critical"]:
            row = " ".join(f"{w['display']!r}:{w['weight']:.4f}" for w in token["w_row"])
            writer.writerow(
                [entry["teacher"]["name"], token["id"], token["piece"], token["display"], token["category"], row]
            )
    return out.getvalue()


def _info(vocab: Vocab) -> dict:
    return {"name": vocab.name, "source": vocab.source, "size": vocab.size, "fingerprint": vocab.fingerprint}


def _token(vocab: Vocab, index: int, category: str) -> dict:
    return {"id": index, "piece": vocab.pieces[index], "display": vocab.display(index), "category": category}


def _category(vocab: Vocab, index: int) -> str:
    return vocab.categories[index]


def _strict(student: Vocab, teacher: Vocab) -> np.ndarray:
    """(V_S,) bool: the raw piece is also a teacher piece, as GOLD's `get_vocab()` match."""
    pieces = {piece for piece in teacher.pieces if piece}
    return np.fromiter((bool(p) and p in pieces for p in student.pieces), dtype=bool, count=student.size)


def _audit(
    student: Vocab,
    teacher: Vocab,
    projection: Projection | None,
    strict: np.ndarray,
    codes: np.ndarray,
    names: list[str],
    critical: list[str],
) -> dict[str, dict]:
    """Per student category (`codes`: (V_S,) index into `names`): total, strict, exact, common,
    covered, severity."""
    specials = {teacher.pieces[i] for i in teacher.special}
    exact = np.fromiter(
        (
            student.pieces[i] in specials if i in student.special else teacher.id_of_bytes(data) is not None
            for i, data in enumerate(student.token_bytes)
        ),
        dtype=bool,
        count=student.size,
    )
    if projection is None:  # same canonical vocabulary: the identity map, every id common
        common = covered = np.ones(student.size, dtype=bool)
    else:
        covered = np.diff(projection.matrix.indptr) > 0
        common = np.zeros(student.size, dtype=bool)
        common[list(common_set(projection))] = True
    counts = {
        field: np.bincount(codes, weights=flags, minlength=len(names)).astype(np.int64)
        for field, flags in (("strict", strict), ("exact", exact), ("common", common), ("covered", covered))
    }
    totals = np.bincount(codes, minlength=len(names))
    report = {}
    for k, name in enumerate(names):
        if name == "unused":
            continue
        row = {"total": int(totals[k])} | {field: int(counts[field][k]) for field in counts}
        report[name] = row | {"severity": severity(row["common"] / row["total"], name in critical)}
    return report


def _recommend(
    student: Vocab, teacher: Vocab, categories: dict[str, dict], critical: list[str], same: bool
) -> tuple[str, str]:
    """(recommendation, reason in one sentence), by the rule of method.md §5: critical tokens outside
    W's H-KL common set → P-KL, else H-KL. Every number in the sentence is a number of the table."""
    if same:
        return "kd", (
            f"{teacher.name} has the same canonical vocabulary as {student.name} (fingerprint "
            f"{teacher.fingerprint[:12]}): plain per-position KD, no W needed (method §6)"
        )
    present = [c for c in critical if c in categories]
    if not present:
        return "h_kl", f"{student.name} has no tokens in the critical categories; H-KL's partition is safe (method §5)"
    noun = "numeral" if all(is_numeral(c) for c in present) else "critical"
    total = sum(categories[c]["total"] for c in present)

    def counts(field: str, names: list[str]) -> str:
        return ", ".join(f"{c} {categories[c][field]:,}/{categories[c]['total']:,}" for c in names)

    def failing(field: str) -> list[str]:
        return [c for c in present if categories[c][field] / categories[c]["total"] < OK_SHARE]

    outside, gold = failing("common"), failing("strict")
    if outside:
        missing = sum(categories[c]["total"] - categories[c]["common"] for c in outside)
        who = "H-KL and GOLD" if gold else "H-KL"
        return "p_kl", (
            f"{missing:,} of {total:,} {noun} tokens are outside the H-KL common set for {teacher.name} "
            f"({counts('common', outside)} common): {who} would push them down (method §1); use P-KL"
        )
    kept = sum(categories[c]["common"] for c in present)
    reason = (
        f"{kept:,} of {total:,} {noun} tokens are in the H-KL common set for {teacher.name} "
        f"({counts('common', present)} common): the common set keeps them; use H-KL (method §5)"
    )
    if gold:  # H-KL's W finds what GOLD's string match misses: worth saying
        reason += f"; GOLD's string match would miss some ({counts('strict', gold)} strict)"
    return "h_kl", reason


def _w_row(projection: Projection | None, teacher: Vocab, index: int) -> list[dict]:
    if projection is None:
        return [{"id": index, "display": teacher.display(index), "weight": 1.0}]
    return [{"id": t, "display": teacher.display(t), "weight": round(w, 4)} for t, w, _, _ in projection.row(index)]
