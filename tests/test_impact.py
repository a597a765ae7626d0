"""The impact order (xtoken_align/impact.py) against a naive per-token computation on real demo pairs.

The reference walks every text token by token with `tokenizer.encode`, lays tokens on byte offsets from
their canonical bytes, and counts chunk openings and agreements by hand; W's rows are read one by one
with `Projection.row`. Only texts both tokenizers round-trip are used, so every byte is in a chunk.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest
from conftest import gsm8k, vocab

from xtoken_align.errors import XTokenError
from xtoken_align.impact import TokenImpact, combine_risk, token_impact
from xtoken_align.projection import Projection, build_projection
from xtoken_align.score import corpus_agreement, token_agreement
from xtoken_align.spans import encode_spans
from xtoken_align.vocab import Vocab

PAIRS = [("llama3", "qwen3"), ("llama2", "llama3")]  # byte-level BPE × BPE; SentencePiece (▁, dummy prefix)


@cache
def projection(student: str, teacher: str) -> Projection:
    return build_projection(vocab(student), vocab(teacher), progress=False)


def encode(v: Vocab, text: str) -> list[int]:
    return v.tokenizer.encode(text, add_special_tokens=False).ids


@cache
def clean_texts(student: str, teacher: str, n: int = 300) -> list[str]:
    """The first `n` GSM8K test problems that both tokenizers decode back to themselves."""
    texts = [
        text
        for text in gsm8k("test")[:n]
        if all(v.tokenizer.decode(encode(v, text)) == text for v in (vocab(student), vocab(teacher)))
    ]
    assert len(texts) > 0.9 * n
    return texts


def starts(v: Vocab, ids: list[int]) -> list[int]:
    """Byte offset of each token in the decoded text (a stripped dummy-prefix space shifts them left)."""
    at, out = 0, []
    for i in ids:
        out.append(at)
        at += len(v.token_bytes[i])
    if v.strips_leading_space and ids and v.token_bytes[ids[0]].startswith(b" "):
        out = [max(x - 1, 0) for x in out]
    return out


def naive(student: str, teacher: str) -> dict[int, tuple[int, int, int, float]]:
    """student id -> (frequency, chunks opened, agreements, risk), by hand, for every emitted token."""
    s, t, w = vocab(student), vocab(teacher), projection(student, teacher)
    frequency, opened, agreed = Counter(), Counter(), Counter()
    for text in clean_texts(student, teacher):
        s_ids, t_ids = encode(s, text), encode(t, text)
        frequency.update(s_ids)
        s_starts, t_starts = starts(s, s_ids), starts(t, t_ids)
        size = len(text.encode("utf-8"))
        shared = (set(s_starts) | {size}) & (set(t_starts) | {size})  # chunk boundaries
        teacher_at: dict[int, int] = {}
        for tid, at in zip(t_ids, t_starts, strict=True):
            teacher_at.setdefault(at, tid)  # the first teacher token at a boundary opens its chunk
        for position, (sid, at) in enumerate(zip(s_ids, s_starts, strict=True)):
            if at in shared and at < size and s_starts.index(at) == position:
                opened[sid] += 1
                agreed[sid] += w.row(sid)[0].teacher == teacher_at[at]
    common = w.common_set()
    out = {}
    for sid, count in frequency.items():
        row = w.row(sid)
        checks = [float(not row or row[0].rule not in ("exact", "special")), float(sid not in common)]
        if opened[sid]:
            checks.append(1 - agreed[sid] / opened[sid])
        out[sid] = (count, opened[sid], agreed[sid], sum(checks) / len(checks))
    return out


@cache
def measured(student: str, teacher: str) -> TokenImpact:
    return token_impact(projection(student, teacher), vocab(student), vocab(teacher), clean_texts(student, teacher))


@pytest.mark.slow
@pytest.mark.parametrize(("student", "teacher"), PAIRS)
def test_arrays_match_a_naive_per_token_computation(student: str, teacher: str) -> None:
    found, expected = measured(student, teacher), naive(student, teacher)
    assert found.frequency.shape == found.risk.shape == found.impact.shape == (vocab(student).size,)
    emitted = np.flatnonzero(found.frequency)
    assert sorted(emitted.tolist()) == sorted(expected)  # the same tokens, no more
    for sid, (count, opened, agreed, risk) in expected.items():
        assert (found.frequency[sid], found.opened[sid]) == (count, opened), sid
        if opened:
            assert found.agreement[sid] == pytest.approx(agreed / opened), sid
        else:
            assert np.isnan(found.agreement[sid]), sid
        assert found.risk[sid] == pytest.approx(risk), (sid, found.explain(sid))
        assert found.impact[sid] == pytest.approx(count * risk), sid
    assert (found.impact[found.frequency == 0] == 0).all()
    assert ((found.risk >= 0) & (found.risk <= 1)).all()


@pytest.mark.slow
def test_exact_common_agreeing_rows_are_risk_free_and_numerals_lead() -> None:
    """The module docstring's examples: `Ġthe` is risk-free, Llama-3's `20` leads the order under Qwen3."""
    llama3, found = vocab("llama3"), measured("llama3", "qwen3")
    w, common = projection("llama3", "qwen3"), projection("llama3", "qwen3").common_set()
    safe = [
        sid
        for sid in np.flatnonzero(found.frequency).tolist()
        if w.row(sid)[0].rule == "exact" and sid in common and found.agreement[sid] == 1
    ]
    assert llama3.pieces.index("Ġthe") in safe and len(safe) > 1000
    assert (found.risk[safe] == 0).all() and (found.impact[safe] == 0).all()
    twenty = llama3.pieces.index("20")
    assert found.unmatched[twenty] and found.uncommon[twenty] and found.agreement[twenty] == 1
    assert found.risk[twenty] == pytest.approx(2 / 3)
    assert int(np.argmax(found.impact)) == twenty
    assert found.explain(twenty).startswith(f"frequency {found.frequency[twenty]} × risk 0.67 (unmatched, uncommon")


def test_token_agreement_adds_up_to_corpus_agreement() -> None:
    student, teacher, texts = vocab("llama3"), vocab("qwen3"), gsm8k("test")[:200]
    w = projection("llama3", "qwen3")
    per_token = token_agreement(w, encode_spans(student, texts), encode_spans(teacher, texts))
    report = corpus_agreement(w, student, teacher, texts)
    assert per_token.opened.sum() == report.aligned_tokens
    assert round(per_token.agreed.sum() / per_token.opened.sum(), 4) == report.agreement_at_1
    assert (per_token.agreed <= per_token.opened).all()


def test_risk_combines_the_checks_that_apply() -> None:
    unmatched = np.array([False, True, True, False, True])
    uncommon = np.array([False, True, False, True, True])
    agreement = np.array([1.0, 0.0, np.nan, 0.5, np.nan])
    assert combine_risk(unmatched, uncommon, agreement).tolist() == pytest.approx([0, 1, 0.5, 0.5, 1])


def test_a_w_of_other_tokenizers_is_refused() -> None:
    with pytest.raises(XTokenError):
        token_impact(projection("llama3", "qwen3"), vocab("llama2"), vocab("qwen3"), ["one two"])
