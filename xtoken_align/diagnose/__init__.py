"""Diagnosis before training: which student tokens a GOLD-style loss would push down, per teacher.

`diagnose(student, [(teacher, W or None), ...], texts)` audits the student vocabulary per category
(method.md §5), measures on a corpus how much of the student's next-token targets those tokens carry,
lists the suppressed tokens of one sample sentence, and recommends a loss per teacher. Definitions,
all counted over student token ids (unused ids left out, special tokens as category `special`):

- strict: in GOLD's 1:1 exact-match set as TRL builds it: the raw `get_vocab()` string (special
  tokens included) is also a teacher piece. `Ġ12` vs `▁12` is a miss, as it is for GOLD.
- exact: the canonical bytes match a regular teacher token (special tokens: the same content).
- common: in the H-KL common set of W (top weight ≥ 0.6, method.md §4, `Projection.common_set`).
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
The report's models, text and CSV are in `diagnose.report`, its figures and HTML in `diagnose.html`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xtoken_align.categories import CATEGORY_ORDER, category_rank
from xtoken_align.diagnose.audit import OK_SHARE, WARN_SHARE, audit, recommend, strict_set, w_row
from xtoken_align.diagnose.corpus import corpus_mass
from xtoken_align.diagnose.html import diagnose_figures, diagnose_html
from xtoken_align.diagnose.report import (
    DiagnoseReport,
    SampleToken,
    TeacherDiagnosis,
    Thresholds,
    UnmatchedToken,
    diagnose_text,
    unmatched_critical_csv,
)
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, TokenizerInfo, build_projection
from xtoken_align.spans import encode_spans
from xtoken_align.vocab import Vocab

__all__ = [
    "DEFAULT_CRITICAL",
    "DiagnoseReport",
    "check_categories",
    "diagnose",
    "diagnose_figures",
    "diagnose_html",
    "diagnose_text",
    "unmatched_critical_csv",
]

DEFAULT_CRITICAL: tuple[str, ...] = ("digits:1", "digits:2", "digits:3", "digits:4+")
DEFAULT_SAMPLE = "Natalia sold 48 clips in April and 124 in May, 172 in total."


def check_categories(names: Sequence[str]) -> list[str]:
    """Category names in report order, or XTokenError naming the unknown ones and the known ones.

    >>> check_categories(["digits:3", "digits:2", "digits:3"])
    ['digits:2', 'digits:3']
    """
    unknown = [name for name in names if name not in CATEGORY_ORDER]
    if unknown:
        raise XTokenError(f"unknown category {', '.join(map(repr, unknown))}; known: {', '.join(CATEGORY_ORDER)}")
    return sorted(set(names), key=category_rank)


def diagnose(
    student: Vocab,
    teachers: list[tuple[Vocab, Projection | None]],
    texts: list[str] | None,
    critical: Sequence[str] = DEFAULT_CRITICAL,
    sample_text: str | None = None,
    *,
    corpus_name: str = "",
) -> DiagnoseReport:
    """The whole `xtoken-align diagnose` report (see the package docstring). A None W is built
    with the default rules (or is the identity for a same-vocabulary teacher)."""
    critical = check_categories(critical)
    if texts is not None and not any(text.strip() for text in texts):
        raise XTokenError(f"{f'corpus {corpus_name}' if corpus_name else 'the corpus'} holds no text")
    sample_text = DEFAULT_SAMPLE if sample_text is None else sample_text
    categories = student.category_codes
    codes, names = categories.codes, categories.names
    critical_codes = [names.index(c) for c in critical if c in names]
    student_tokens = encode_spans(student, texts) if texts is not None else None
    sample_ids = student.tokenizer.encode(sample_text, add_special_tokens=False).ids
    diagnoses = []
    for teacher, projection in teachers:
        same = teacher.fingerprint == student.fingerprint
        if projection is not None:
            projection.check_tokenizers(student, teacher)
        elif not same:
            projection = build_projection(student, teacher, progress=False)
        strict = strict_set(student, teacher)
        table = audit(student, teacher, projection, strict, critical)
        recommendation, reason = recommend(student, teacher, table, critical, same)
        corpus = None
        if student_tokens is not None:
            teacher_tokens = encode_spans(teacher, texts)
            corpus = corpus_mass(student_tokens, teacher_tokens, ~strict, codes, names, critical_codes, corpus_name)
        at_risk = np.flatnonzero(np.isin(codes, critical_codes) & ~strict).tolist()
        diagnoses.append(
            TeacherDiagnosis(
                teacher=TokenizerInfo.of(teacher),
                recommendation=recommendation,
                reason=reason,
                categories=table,
                corpus=corpus,
                suppressed_sample=[
                    SampleToken(position=p, **_token(student, i)) for p, i in enumerate(sample_ids) if not strict[i]
                ],
                unmatched_critical=[
                    UnmatchedToken(w_row=w_row(projection, teacher, i), **_token(student, i)) for i in at_risk
                ],
            )
        )
    return DiagnoseReport(
        student=TokenizerInfo.of(student),
        critical=critical,
        thresholds=Thresholds(ok=OK_SHARE, warn=WARN_SHARE),
        sample_text=sample_text,
        teachers=diagnoses,
    )


def _token(vocab: Vocab, index: int) -> dict:
    return {
        "id": index,
        "piece": vocab.pieces[index],
        "display": vocab.display(index),
        "category": vocab.categories[index],
    }
