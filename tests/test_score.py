"""Scores of W: coverage, the H-KL common set, off-piece mass and corpus agreement."""

from __future__ import annotations

import json
import re
from functools import cache

import numpy as np
from conftest import vocab

from xtoken_align.assemble import assemble_entries
from xtoken_align.config import BuildConfig, DigitsRule, ExactRule, MultitokenRule, SpecialRule
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.projection import Projection, TokenizerInfo, build_projection
from xtoken_align.score import ScoreReport, corpus_agreement, coverage, score_projection


@cache
def llama3_qwen3(config: BuildConfig | None = None) -> Projection:
    return build_projection(vocab("llama3"), vocab("qwen3"), config, progress=False)


def tiny(entries: list[tuple[int, int, float]], shape=(4, 3)) -> Projection:
    rows, cols, weights = (np.asarray(x) for x in zip(*entries, strict=True))
    matrix, codes, scores = assemble_entries(
        rows.astype(np.int64), cols.astype(np.int64), weights.astype(float), np.zeros(len(rows), np.uint8), shape, 4
    )
    info = TokenizerInfo("tiny", "tiny", shape[0], "0" * 64)
    return Projection(matrix, codes, scores, info, TokenizerInfo("t", "t", shape[1], "1" * 64), BuildConfig())


def test_common_set_threshold_and_collisions() -> None:
    w = tiny([(0, 0, 0.7), (0, 1, 0.3), (1, 0, 0.9), (1, 2, 0.1), (2, 1, 0.5), (2, 2, 0.5), (3, 2, 1.0)])
    # Row 2 tops out at 0.5 < 0.6; rows 0 and 1 collide on teacher 0 and the heavier (row 1) wins.
    assert w.common_set() == {1: 0, 3: 2}
    assert w.common_set(threshold=0.5) == {1: 0, 2: 1, 3: 2}  # row 2's tie goes to the lower teacher id


def test_common_set_tie_keeps_lowest_student_id() -> None:
    w = tiny([(0, 1, 1.0), (2, 1, 1.0), (3, 0, 1.0)])
    assert w.common_set() == {0: 1, 3: 0}


def test_coverage_of_llama3_under_qwen3() -> None:
    report = coverage(llama3_qwen3(), vocab("llama3"))
    assert report["digits:2"].model_dump() == {"total": 100, "covered": 100, "exact": 0, "common": 0}
    assert report["digits:3"].model_dump() == {"total": 1000, "covered": 1000, "exact": 0, "common": 0}
    assert report["digits:1"].exact == 10
    assert list(report)[:3] == ["digits:1", "digits:2", "digits:3"]
    assert sum(c.exact for c in report.values()) == 109_566


def test_corpus_agreement_sees_a_worse_w() -> None:
    texts = read_corpus(default_corpus(), limit=300)
    good = corpus_agreement(llama3_qwen3(), vocab("llama3"), vocab("qwen3"), texts)
    assert good.aligned_share > 0.95 and good.agreement_at_1 > 0.99
    assert good.categories["digits:3"].agreement_at_1 > 0.99
    assert 0.85 < good.categories["digits:3"].mass < 0.95  # 0.9009 on the leading digit
    # Equal weights for all pieces: the top teacher token of `201` becomes the lowest id (`0`), not `2`.
    flat = BuildConfig(rules=[SpecialRule(), ExactRule(), DigitsRule(gamma=1.0), MultitokenRule()])
    worse = corpus_agreement(llama3_qwen3(flat), vocab("llama3"), vocab("qwen3"), texts)
    assert worse.categories["digits:3"].agreement_at_1 < 0.5
    assert worse.categories["letters:latin"].agreement_at_1 == good.categories["letters:latin"].agreement_at_1


def test_score_report_has_every_section() -> None:
    report = score_projection(llama3_qwen3(), vocab("llama3"), vocab("qwen3"), read_corpus(default_corpus(), limit=50))
    assert report.rows.regular == report.rows.regular_filled == report.rows.regular_summing_to_1
    assert report.off_piece_mass.rows_with_off_piece_mass == 0
    # Qwen3 has no BOS and no header closer; <|start_header_id|> opens a turn as <|im_start|> does.
    assert {s.piece for s in report.rows.special_unmatched} == {"<|begin_of_text|>", "<|end_header_id|>"}
    reserved = [p for p in vocab("llama3").pieces if re.fullmatch(r"<\|reserved_special_token_\d+\|>", p)]
    assert report.rows.special_unused_unmatched == len(reserved) > 200  # placeholders: empty by design
    assert report.corpus.texts == 50 and report.entries_per_rule["exact"] == 109_566


def test_gemma3_and_llama3_align_on_every_byte() -> None:
    """Gemma-3's whitespace-run tokens once drifted the byte offsets of a quarter of GSM8K."""
    texts = read_corpus(default_corpus())
    gemma, llama = vocab("gemma3"), vocab("llama3")
    for student, teacher in ((gemma, llama), (llama, gemma)):
        w = build_projection(student, teacher, BuildConfig(rules=[SpecialRule(), ExactRule()]), progress=False)
        report = corpus_agreement(w, student, teacher, texts)
        assert report.not_round_trip.model_dump() == {"student": 0, "teacher": 0, "texts": []}
        assert report.chunked_share == 1.0
        assert report.categories["letters:latin"].aligned_share > 0.95
    # Llama-3 tokens start where Gemma tokens do; Gemma's split digits inside Llama's numerals cannot.
    assert report.aligned_share > 0.97
    assert report.categories["digits:3"].aligned_share == 1.0


def test_score_json_is_the_documented_shape() -> None:
    """`--json` names fields by alias (`agreement@1`), a missing corpus is null, and it parses back."""
    texts = read_corpus(default_corpus(), limit=20)
    report = score_projection(llama3_qwen3(), vocab("llama3"), vocab("qwen3"), texts, corpus_name="gsm8k")
    document = json.loads(report.model_dump_json())
    assert document["corpus"]["agreement@1"] == report.corpus.agreement_at_1
    assert (
        document["corpus"]["categories"]["digits:3"]["agreement@1"]
        == report.corpus.categories["digits:3"].agreement_at_1
    )
    assert ScoreReport.model_validate(document) == report
    assert (
        json.loads(score_projection(llama3_qwen3(), vocab("llama3"), vocab("qwen3"), None).model_dump_json())["corpus"]
        is None
    )


def test_vectorised_coverage_matches_a_row_by_row_count() -> None:
    w, student = llama3_qwen3(), vocab("llama3")
    common = w.common_set()
    naive: dict[str, list[int]] = {}
    for row in range(student.size):
        if student.categories[row] == "unused":
            continue
        entries = w.row(row)
        counts = naive.setdefault(student.categories[row], [0, 0, 0, 0])
        for k, flag in enumerate((True, bool(entries), any(e.rule == "exact" for e in entries), row in common)):
            counts[k] += flag
    got = {name: [c.total, c.covered, c.exact, c.common] for name, c in coverage(w, student).items()}
    assert got == naive
