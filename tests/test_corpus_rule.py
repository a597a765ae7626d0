"""The `corpus` rule: its counts against a naive loop, the blend formula at its limits, rows it must
not touch, config refusals, and a W made with it through its file and the CLI."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from conftest import GSM8K, gsm8k, vocab

from xtoken_align.config import BuildConfig, CorpusRule, default_rules
from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection, save_projection
from xtoken_align.projection import build_projection
from xtoken_align.rules import RULE_CODES
from xtoken_align.rules.corpus import corpus_entries, count_openers
from xtoken_align.spans import encode_spans, round_trips

TRAIN_TEXTS = 300  # enough for many rows to pass min_count, quick to count


def corpus_config(prior: float, min_count: int = 3, **extra) -> BuildConfig:
    rule = CorpusRule(corpus=str(GSM8K["train"]), limit=TRAIN_TEXTS, prior=prior, min_count=min_count, **extra)
    return BuildConfig(rules=(*default_rules(), rule))


@cache
def built(student: str, teacher: str, config: BuildConfig | None = None):
    return build_projection(vocab(student), vocab(teacher), config, progress=False)


@cache
def counts(student: str, teacher: str):
    return count_openers(vocab(student), vocab(teacher), gsm8k("train")[:TRAIN_TEXTS])


def naive_pairs(student, teacher, texts: list[str]) -> dict[tuple[int, int], int]:
    """Per text, one token at a time: a student token whose start offset is also where a teacher
    token starts (and is the first student token there) pairs with the first teacher token there."""
    found: dict[tuple[int, int], int] = {}
    for text in texts:
        s, t = encode_spans(student, [text]), encode_spans(teacher, [text])
        firsts = {}
        for pos in range(len(t.ids)):
            if not t.special[pos]:
                firsts.setdefault(int(t.start[pos]), int(t.ids[pos]))
        seen = set()
        for pos in range(len(s.ids)):
            start = int(s.start[pos])
            if s.special[pos] or start in seen:
                continue
            seen.add(start)
            if start in firsts:
                key = (int(s.ids[pos]), firsts[start])
                found[key] = found.get(key, 0) + 1
    return found


@pytest.mark.parametrize(("student", "teacher"), [("llama3", "qwen3"), ("llama3", "o200k"), ("llama2", "mistral-v1")])
def test_counts_equal_a_naive_loop_over_aligned_pairs(student: str, teacher: str) -> None:
    s, t = vocab(student), vocab(teacher)
    texts = gsm8k("train")[:40]
    clean = round_trips(encode_spans(s, texts), texts) & round_trips(encode_spans(t, texts), texts)
    texts = [text for text, ok in zip(texts, clean, strict=True) if ok]
    assert len(texts) >= 30
    coo = count_openers(s, t, texts).tocoo()
    got = {(int(r), int(c)): int(v) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)}
    assert got == naive_pairs(s, t, texts)
    assert sum(got.values()) > 1_000


def test_a_huge_prior_gives_the_rules_alone() -> None:
    rules, blended = built("llama3", "qwen3"), built("llama3", "qwen3", corpus_config(prior=1e12))
    assert abs(rules.matrix - blended.matrix).max() < 1e-6
    assert RULE_CODES.index("corpus") not in set(blended.leading().rule.tolist())


def blended_rows(student: str, teacher: str, config: BuildConfig) -> np.ndarray:
    """Rows the corpus rule blends: not exact/special in the rules-only W, seen min_count times."""
    rules = built(student, teacher)
    one_hot = np.flatnonzero(np.bincount(rules.entry_rows()[rules.identity()], minlength=rules.shape[0]) > 0)
    allowed = sorted(set(range(rules.shape[0])) - set(one_hot.tolist()))
    return np.unique(corpus_entries(counts(student, teacher), allowed, config.rule("corpus")).rows)


def test_prior_zero_gives_the_normalised_counts() -> None:
    config = corpus_config(prior=0)
    w, c = built("llama3", "qwen3", config), counts("llama3", "qwen3")
    rows = blended_rows("llama3", "qwen3", config)
    assert len(rows) > 50  # Llama's numerals, which Qwen spells digit by digit
    for row in rows.tolist():
        expected = c[[row], :].toarray().ravel()
        if np.count_nonzero(expected) > config.top_k:
            continue
        got = w.matrix[[row], :].toarray().ravel()
        np.testing.assert_allclose(got, expected / expected.sum(), atol=1e-6)
        assert {entry.rule for entry in w.row(row)} == {"corpus"}


def test_blended_rows_follow_the_formula_and_other_rows_are_unchanged() -> None:
    prior, config = 10.0, corpus_config(prior=10.0)
    rules, w, c = built("llama3", "qwen3"), built("llama3", "qwen3", config), counts("llama3", "qwen3")
    rows = blended_rows("llama3", "qwen3", config)
    checked = 0
    for row in rows.tolist():
        seen = c[[row], :].toarray().ravel()
        prior_row = rules.matrix[[row], :].toarray().ravel()
        expected = (seen + prior * prior_row) / (seen.sum() + prior)
        if np.count_nonzero(expected) <= config.top_k:
            np.testing.assert_allclose(w.matrix[[row], :].toarray().ravel(), expected, atol=1e-6)
            checked += 1
    assert checked > 50
    untouched = np.setdiff1d(np.arange(rules.shape[0]), rows)
    a, b = rules.matrix[untouched], w.matrix[untouched]
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)
    mask_a, mask_b = np.isin(rules.entry_rows(), untouched), np.isin(w.entry_rows(), untouched)
    assert np.array_equal(rules.rules[mask_a], w.rules[mask_b])
    assert np.array_equal(rules.scores[mask_a], w.scores[mask_b])
    w.check()


def test_exact_rows_stay_one_hot_unless_asked() -> None:
    s, w = vocab("llama3"), built("llama3", "o200k", corpus_config(prior=0))
    the = s.pieces.index("Ġthe")
    assert [(e.weight, e.rule) for e in w.row(the)] == [(1.0, "exact")]
    opened = built("llama3", "o200k", corpus_config(prior=0, blend_exact=True))
    assert {e.rule for e in opened.row(the)} == {"corpus"}  # o200k writes ` theory`, ` there`, ...


def test_corpus_is_opt_in_and_its_code_is_appended() -> None:
    assert "corpus" not in [rule.name for rule in BuildConfig().rules]
    assert RULE_CODES[:9] == (
        "exact",
        "special",
        "digits",
        "bytes",
        "multitoken",
        "fuzzy",
        "reverse",
        "edit",
        "imported",
    )
    assert RULE_CODES[9] == "corpus"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such corpus file"), ("", "holds no text"), ("\n\n  \n", "holds no text")],
)
def test_a_missing_or_empty_corpus_is_refused(tmp_path, content: str | None, message: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_text(content)
    config = BuildConfig(rules=(*default_rules(), CorpusRule(corpus=str(path))))
    with pytest.raises(XTokenError, match=message):
        build_projection(vocab("llama2"), vocab("mistral-v1"), config, progress=False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"name": "exact"}, {"name": "corpus"}]}, "rules.1.corpus.corpus: Field required"),
        ({"rules": [{"name": "exact"}, {"name": "corpus", "corpus": []}]}, "at least 1 item"),
        ({"rules": [{"name": "exact"}, {"name": "corpus", "corpus": "a.txt", "prior": -1}]}, "prior"),
        ({"rules": [{"name": "exact"}, {"name": "corpus", "corpus": "a.txt", "min_count": 0}]}, "min_count"),
        ({"rules": [{"name": "corpus", "corpus": "a.txt"}, {"name": "exact"}]}, "list it last"),
    ],
)
def test_bad_corpus_configs_are_refused(data: dict, message: str) -> None:
    with pytest.raises(XTokenError, match=message):
        BuildConfig.from_dict(data)


def write_corpus(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"text": text}) for text in gsm8k("train")[:200]), encoding="utf-8")
    return path


def test_a_w_with_the_corpus_rule_saves_and_loads(tmp_path) -> None:
    config = BuildConfig(
        rules=(*default_rules(), CorpusRule(corpus=str(write_corpus(tmp_path)), prior=0, blend_exact=True))
    )
    w = build_projection(vocab("llama2"), vocab("mistral-v1"), config, progress=False)
    assert RULE_CODES.index("corpus") in set(w.rules.tolist())
    path = save_projection(w, tmp_path / "W.safetensors")
    loaded = load_projection(path, vocab("llama2"), vocab("mistral-v1"))
    assert loaded.config == w.config and w.config.rule("corpus").sha256 is not None
    assert np.array_equal(loaded.rules, w.rules) and np.array_equal(loaded.matrix.data, w.matrix.data)
    assert "corpus" in {e.rule for row in range(loaded.shape[0]) for e in loaded.row(row)}


def test_cli_build_accepts_the_corpus_rule(tmp_path, run_cli) -> None:
    corpus = write_corpus(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n  - {{name: special}}\n  - {{name: exact}}\n  - {{name: bytes}}\n"
                     f"  - {{name: multitoken}}\n  - {{name: corpus, corpus: '{corpus}', prior: 5}}\n")  # fmt: skip
    out = tmp_path / "W.safetensors"
    result = run_cli(
        "build", "--student", "demo:llama2", "--teacher", "demo:mistral-v1", "-o", str(out), "--config", str(rules)
    )
    assert result.returncode == 0, result.stderr
    assert load_projection(out).config.rule("corpus").prior == 5
    missing = rules.with_name("missing.yaml")
    missing.write_text(rules.read_text().replace(str(corpus), str(tmp_path / "nope.jsonl")))
    result = run_cli(
        "build", "--student", "demo:llama2", "--teacher", "demo:mistral-v1", "-o", str(out), "--config", str(missing)
    )
    assert result.returncode != 0 and "no such corpus file" in result.stderr


def test_the_corpus_files_checksums_go_into_w_and_a_changed_file_is_refused(tmp_path) -> None:
    """W's config records each corpus file's sha256; building again from that config refuses a changed file."""
    import hashlib

    from xtoken_align.config import BuildConfig, CorpusRule, default_rules
    from xtoken_align.errors import XTokenError
    from xtoken_align.projection import build_projection

    corpus = tmp_path / "train.txt"
    corpus.write_text("Tom has 123 apples.\n\nHe ate 45 of them.\n", encoding="utf-8")
    config = BuildConfig(rules=(*default_rules(), CorpusRule(corpus=str(corpus), min_count=1)))
    student, teacher = vocab("llama3"), vocab("qwen3")
    built = build_projection(student, teacher, config, progress=False)
    assert built.config.rule("corpus").sha256 == (hashlib.sha256(corpus.read_bytes()).hexdigest(),)
    again = build_projection(student, teacher, built.config, progress=False)  # same file: builds
    assert (again.matrix != built.matrix).nnz == 0
    corpus.write_text("Tom has 124 apples.\n", encoding="utf-8")
    with pytest.raises(XTokenError, match="train.txt changed since this config was written"):
        build_projection(student, teacher, built.config, progress=False)
