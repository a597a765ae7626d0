"""W built from the default rules on real tokenizers: the paper's rows, and invariants on every row."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from conftest import vocab

from xtoken_align.assemble import assemble_entries
from xtoken_align.config import BuildConfig, DigitsRule, ExactRule, FuzzyRule, MultitokenRule, ReverseRule, SpecialRule
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, TokenizerInfo, build_projection
from xtoken_align.rules import RULE_CODES


@cache
def built(student: str, teacher: str, config: BuildConfig | None = None):
    return build_projection(vocab(student), vocab(teacher), config, progress=False)


def row_of(student: str, teacher: str, piece: str, config: BuildConfig | None = None):
    s, t = vocab(student), vocab(teacher)
    return [
        (t.pieces[col], weight, rule)
        for col, weight, rule, _ in built(student, teacher, config).row(s.pieces.index(piece))
    ]


def test_numeral_row_has_the_papers_weights() -> None:
    row = row_of("llama3", "qwen3", "201")
    assert [piece for piece, _, _ in row] == ["2", "0", "1"]
    assert [round(w, 4) for _, w, _ in row] == [0.9009, 0.0901, 0.0090]  # β·γ^i with (0.9, 0.1), normalised
    assert {rule for _, _, rule in row} == {"digits"}


def test_exact_and_special_rows_are_one_hot() -> None:
    assert row_of("llama3", "qwen3", "Ġthe") == [("Ġthe", 1.0, "exact")]
    assert row_of("llama3", "qwen3", "<|eot_id|>") == [("<|im_end|>", 1.0, "special")]
    assert row_of("llama3", "qwen3", "<|end_of_text|>") == [("<|endoftext|>", 1.0, "special")]
    assert row_of("llama3", "qwen3", "<|begin_of_text|>") == []  # Qwen has no BOS: listed, not invented


def test_every_multi_digit_numeral_has_a_digit_row() -> None:
    s = vocab("llama3")
    w = built("llama3", "qwen3")
    numerals = [i for i in range(s.size) if s.categories[i] in ("digits:2", "digits:3")]
    assert len(numerals) == 1_100
    for index in numerals:
        entries = w.row(index)
        assert entries and {e[2] for e in entries} == {"digits"}
        assert abs(sum(e[1] for e in entries) - 1) < 1e-6


@pytest.mark.parametrize(("student", "teacher"), [("llama3", "qwen3"), ("llama3", "o200k"), ("llama2", "mistral-v1")])
def test_every_regular_row_sums_to_one_and_stays_in_its_candidates(student: str, teacher: str) -> None:
    s, t = vocab(student), vocab(teacher)
    w = built(student, teacher)
    regular = np.asarray([i for i in range(s.size) if s.is_regular(i)])
    w.check(regular)  # shape, finite, non-negative, non-empty regular rows, sums within 1e-6
    sums = w.row_sums()[regular]
    assert np.all(np.abs(sums - 1) <= 1e-6)
    assert np.diff(w.matrix.indptr).max() <= 4
    for index in regular[:: max(1, len(regular) // 4000)]:  # a spread sample of rows
        entries = w.row(int(index))
        if entries[0][2] == "exact":
            assert len(entries) == 1 and t.token_bytes[entries[0][0]] == s.token_bytes[index]
            continue
        # Every entry is a piece of the token's own text, and the heaviest one is where it starts.
        assert all(t.token_bytes[e[0]] in s.token_bytes[index] for e in entries), (index, s.pieces[index])
        assert s.token_bytes[index].startswith(t.token_bytes[entries[0][0]]), (index, s.pieces[index])


def test_sentencepiece_student_meets_byte_level_teacher() -> None:
    # The fallback piece spells the byte `A`, but the real `A` token is the exact match; the piece is the bytes rule's.
    assert row_of("llama2", "llama3", "<0x41>") == [("A", 1.0, "bytes")]
    assert row_of("llama2", "llama3", "▁the") == [("Ġthe", 1.0, "exact")]
    assert row_of("llama2", "llama3", "<0x0A>") == [("Ċ", 1.0, "exact")]


def test_partial_utf8_maps_to_teacher_bytes() -> None:
    s = vocab("llama3")
    partial = [i for i in range(s.size) if s.categories[i] == "partial-utf8"]
    w = built("llama3", "mistral-v1")  # SentencePiece teacher: only <0xNN> pieces can spell these
    t = vocab("mistral-v1")
    for index in partial[:200]:
        entries = w.row(index)
        assert entries and entries[0][2] == "bytes"
        assert all(t.token_bytes[e[0]] in s.token_bytes[index] for e in entries)
        assert any(t.categories[e[0]] == "byte" for e in entries)


def test_sentencepiece_teacher_gets_no_invented_prefix_space() -> None:
    """Re-tokenising `ing` with a SentencePiece teacher must not give `▁ing`; ` ing` must."""
    s, t = vocab("qwen3"), vocab("mistral-v1")
    w = built("qwen3", "mistral-v1")
    assert row_of("qwen3", "mistral-v1", "ing")[0][0] == "ing"
    spelled = [i for i in range(s.size) if s.is_regular(i) and s.categories[i] == "letters:latin" and w.row(i)]
    spelled = [i for i in spelled if w.row(i)[0][2] == "multitoken"][:2000]
    assert len(spelled) == 2000
    for index in spelled:
        first = t.token_bytes[w.row(index)[0][0]]
        assert first.startswith(b" ") == s.token_bytes[index].startswith(b" "), s.pieces[index]


def test_rule_order_decides_provenance() -> None:
    config = BuildConfig(rules=[ExactRule(), MultitokenRule(), DigitsRule()])
    assert {rule for _, _, rule in row_of("llama3", "qwen3", "201", config)} == {"multitoken"}


def test_digit_weights_follow_the_config() -> None:
    config = BuildConfig(rules=[ExactRule(), DigitsRule(beta=0.5, gamma=0.5)], top_k=2)
    row = row_of("llama3", "qwen3", "201", config)
    assert [piece for piece, _, _ in row] == ["2", "0"]
    assert [round(w, 4) for _, w, _ in row] == [0.6667, 0.3333]


def test_fuzzy_rule_adds_lower_weight_entries() -> None:
    config = BuildConfig(rules=[*BuildConfig().rules, FuzzyRule()])
    w = built("llama3", "qwen3", config)
    fuzzy = np.flatnonzero(w.rules == RULE_CODES.index("fuzzy"))
    assert len(fuzzy) > 100
    assert float(w.matrix.data[fuzzy].max()) < 0.5  # never outranks a token's own spelling
    exact = w.rules == RULE_CODES.index("exact")
    assert np.all(w.matrix.data[exact] == 1.0)  # exact rows stay one-hot


def test_reverse_rule_adds_entries_and_keeps_rows_normalised() -> None:
    config = BuildConfig(rules=[*BuildConfig().rules, ReverseRule()])
    w = built("llama3", "qwen3", config)  # Llama-2 and Mistral share 31,997 tokens: nothing to add there
    assert np.sum(w.rules == RULE_CODES.index("reverse")) > 100
    filled = np.diff(w.matrix.indptr) > 0
    assert np.allclose(w.row_sums()[filled], 1, atol=1e-6)


def test_same_inputs_give_identical_matrices() -> None:
    first = build_projection(vocab("llama2"), vocab("mistral-v1"), progress=False)
    second = build_projection(vocab("llama2"), vocab("mistral-v1"), progress=False)
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(first.matrix, name), getattr(second.matrix, name))
    assert np.array_equal(first.rules, second.rules) and np.array_equal(first.scores, second.scores)


def test_check_names_the_problem() -> None:
    w = build_projection(vocab("llama2"), vocab("mistral-v1"), progress=False)
    w.matrix.data[0] = np.nan
    with pytest.raises(XTokenError, match="NaN"):
        w.check()
    w.matrix.data[0] = -0.5
    with pytest.raises(XTokenError, match="negative"):
        w.check()
    w.matrix.data[0] = 0.25
    with pytest.raises(XTokenError, match="do not sum to 1"):
        w.check()


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        ("gemma3", "llama3", {"<start_of_turn>": "<|start_header_id|>", "<end_of_turn>": "<|eot_id|>"}),
        ("gemma3", "qwen3", {"<start_of_turn>": "<|im_start|>", "<end_of_turn>": "<|im_end|>"}),
        ("llama3", "gemma3", {"<|start_header_id|>": "<start_of_turn>", "<|eot_id|>": "<end_of_turn>"}),
    ],
)
def test_chat_markers_map_by_role_and_placeholders_stay_empty(student: str, teacher: str, expected: dict) -> None:
    s, t = vocab(student), vocab(teacher)
    config = BuildConfig(rules=[SpecialRule(), ExactRule()])
    w = build_projection(s, t, config, progress=False)
    for marker, counterpart in expected.items():
        assert [(t.pieces[c], weight, rule) for c, weight, rule, _ in w.row(s.pieces.index(marker))] == [
            (counterpart, 1.0, "special")
        ]
    placeholders = [i for i in range(s.size) if s.categories[i] == "special:unused"]
    assert placeholders and all(not w.row(i) for i in placeholders)


def _random_w(seed: int, shape=(300, 40)) -> Projection:
    """A W with ties, empty rows and one-hot (exact) entries, to test the row views on."""
    rng = np.random.default_rng(seed)
    n = 900
    rows, cols = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    scores = rng.choice([0.25, 0.5, 1.0, 2.0], n)  # few values: many ties
    codes = rng.choice([RULE_CODES.index("exact"), RULE_CODES.index("digits")], n).astype(np.uint8)
    matrix, codes, scores = assemble_entries(rows, cols, scores, codes, shape, 4)
    info = [TokenizerInfo(name, name, size, "0" * 64) for name, size in (("s", shape[0]), ("t", shape[1]))]
    return Projection(matrix, codes, scores, *info, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_views_match_row_by_row(seed: int) -> None:
    w = _random_w(seed)
    leading = w.leading()
    for row in range(w.shape[0]):
        entries = w.row(row)
        assert w.entries_per_row()[row] == len(entries) and w.filled()[row] == bool(entries)
        if entries:
            first = entries[0]
            assert (leading.teacher[row], leading.weight[row]) == (first.teacher, np.float32(first.weight))
            assert RULE_CODES[leading.rule[row]] == first.rule
        else:
            assert leading.teacher[row] == -1 and leading.entry[row] == -1
    assert (w.entry_rows() == np.repeat(np.arange(w.shape[0]), [len(w.row(r)) for r in range(w.shape[0])])).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_common_set_matches_the_rule_applied_row_by_row(seed: int, threshold: float) -> None:
    """Each row offers its top entry; on a collision the row that *is* the teacher token wins, then
    the higher weight, then the lower student id."""
    w = _random_w(seed)
    best: dict[int, tuple[bool, float, int]] = {}
    for row in range(w.shape[0]):
        entries = w.row(row)
        if not entries or entries[0].weight < threshold:
            continue
        top = entries[0]
        claim = (top.rule == "exact", np.float32(top.weight), -row)
        if top.teacher not in best or claim > best[top.teacher]:
            best[top.teacher] = claim
    assert w.common_set(threshold) == {-claim[2]: col for col, claim in best.items()}
