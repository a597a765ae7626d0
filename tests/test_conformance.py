"""The conformance suite every tokenizer family must pass: parametrised over every demo tokenizer
and every ordered demo pair, on the stress corpus (`stress.py`) and GSM8K.

- Canonical bytes: decoding ids gives their concatenated canonical bytes, special tokens included,
  up to the tokenizer's own start rule (`spans`), on every stress text and chat rendering.
- Alignment: for every ordered pair, the byte-offset chunks close at the end of every text, cover
  at least 99.5% of the student's GSM8K tokens, and the consumers (training's aligner, `score`,
  `diagnose`) see the very chunks `spans.align_chunks` gives.

A new family joins by becoming a demo (`xtoken_align.demo`); nothing here names one.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
from conftest import FAMILIES, gsm8k, vocab
from stress import stress_corpus

from xtoken_align.diagnose.corpus import one_to_one
from xtoken_align.distill.align import align_batch
from xtoken_align.sources import load_tokenizer
from xtoken_align.spans import Spans, align_chunks, encode_spans, round_trips, token_spans

PAIRS = list(itertools.permutations(FAMILIES, 2))
CHUNKED_SHARE = 0.995


@cache
def stress_texts() -> list[str]:
    return [text for _, text in stress_corpus()]


@cache
def spans_of(name: str, corpus: str) -> Spans:
    return encode_spans(vocab(name), stress_texts() if corpus == "stress" else gsm8k("test"))


@pytest.mark.parametrize("name", FAMILIES)
def test_decoding_is_canonical_bytes(name: str) -> None:
    v = vocab(name)
    spans = spans_of(name, "stress")
    for k, (label, _) in enumerate(stress_corpus()):
        ids = spans.ids[spans.tokens(k)].tolist()
        assert v.tokenizer.decode(ids, skip_special_tokens=True).encode() == spans.text_bytes(k), label
    # With special tokens in the text: they decode to their content, and take no bytes of the text.
    marker_ids = sorted(v.special)[:8]
    for label, text in stress_corpus()[:: max(1, len(stress_corpus()) // 10)]:
        ids = v.tokenizer.encode(text, add_special_tokens=False).ids
        cut = char_boundary(v, ids, len(ids) // 2)
        mixed = [marker_ids[0], *ids[:cut], *marker_ids[1:], *ids[cut:]]
        assert v.tokenizer.decode(mixed, skip_special_tokens=False).encode() == v.decode_bytes(mixed), label
        assert token_spans(v, [mixed]).text_bytes(0) == v.tokenizer.decode(mixed, skip_special_tokens=True).encode()


def char_boundary(v, ids: list[int], near: int) -> int:
    """The first token index at or after `near` where the text so far is whole UTF-8 characters."""
    for cut in range(near, len(ids) + 1):
        try:
            b"".join(v.token_bytes[i] for i in ids[:cut]).decode("utf-8")
            return cut
        except UnicodeDecodeError:
            continue
    return len(ids)


@pytest.mark.parametrize("name", FAMILIES)
def test_gsm8k_round_trips(name: str) -> None:
    """Every GSM8K problem is reproduced byte for byte (so its chunks are exact on every pair)."""
    flags = round_trips(spans_of(name, "gsm8k"), gsm8k("test"))
    assert flags.all(), [gsm8k("test")[k][:60] for k in np.flatnonzero(~flags)[:5]]


def check_chunks_close(s: Spans, t: Spans, label: str) -> None:
    chunks = align_chunks(s, t)
    both = round_trips_of(s) & round_trips_of(t)
    for k in range(s.texts):
        tokens = s.tokens(k)
        chunked = chunks.student[tokens] >= 0
        if both[k] and s.size[k]:
            # The last chunk ends where the text ends, on both sides; every regular token is in one.
            assert chunked[~s.special[tokens]].all(), (label, k)
            assert (chunks.teacher[t.tokens(k)] >= 0)[~t.special[t.tokens(k)]].all(), (label, k)
            last = chunks.first[k] + chunks.count[k] - 1
            assert s.end[tokens][chunks.student[tokens] == last].max() == s.size[k], (label, k)


def round_trips_of(spans: Spans) -> np.ndarray:
    texts = stress_texts() if spans.texts == len(stress_texts()) else gsm8k("test")
    return round_trips(spans, texts)


@pytest.mark.slow
@pytest.mark.parametrize(("student", "teacher"), PAIRS)
def test_pair_chunks_close_and_consumers_agree(student: str, teacher: str) -> None:
    for corpus in ("stress", "gsm8k"):
        check_chunks_close(spans_of(student, corpus), spans_of(teacher, corpus), f"{student}/{teacher}/{corpus}")
    s, t = spans_of(student, "gsm8k"), spans_of(teacher, "gsm8k")
    chunks = align_chunks(s, t)
    chunked = chunks.student >= 0
    assert chunked.mean() >= CHUNKED_SHARE, chunked.mean()
    # diagnose: a position is 1:1 exactly when its chunk has one token on each side.
    s_count = np.bincount(chunks.student[chunked], minlength=chunks.total)
    t_count = np.bincount(chunks.teacher[chunks.teacher >= 0], minlength=chunks.total)
    expected = np.zeros(len(s.ids), dtype=bool)
    expected[chunked] = (s_count[chunks.student[chunked]] == 1) & (t_count[chunks.student[chunked]] == 1)
    assert np.array_equal(one_to_one(s, t), expected)
    # training: position p carries the chunk of token p + 1, renumbered from the same chunks.
    some = range(0, s.texts, 7)
    trained = align_batch(
        vocab(student), vocab(teacher), [s.ids[s.tokens(k)] for k in some], [t.ids[t.tokens(k)] for k in some]
    )
    for k, sample in zip(some, trained, strict=True):
        own = chunks.student[s.tokens(k)][1:]
        kept = sample.student_chunk[:-1] >= 0
        # Renumbering is monotone, so equal chunks stay equal and different ones stay different.
        pairs = set(zip(own[kept].tolist(), sample.student_chunk[:-1][kept].tolist(), strict=True))
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
        dropped = set(own[~kept].tolist()) - {-1}
        first_s, first_t = chunks.student[s.tokens(k)][0], chunks.teacher[t.tokens(k)][0]
        assert dropped <= {first_s, first_t}  # only a chunk holding a text's first token is dropped


CONVERSATION = [
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in total?"},
    {"role": "assistant", "content": "In May she sold 48 / 2 = 24.\n\n    Total: 48 + 24 = 72"},
]


@cache
def chat_rendering(name: str) -> str | None:
    """The demo's own chat template rendered on `CONVERSATION` (None without a template)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    loaded = load_tokenizer(f"demo:{name}")
    if not loaded.chat_template:
        return None
    for messages in (CONVERSATION, CONVERSATION[1:]):  # some templates refuse a system message
        try:
            rendered, _ = render_jinja_template([messages], chat_template=loaded.chat_template, **loaded.config_roles)
            return rendered[0]
        except Exception:  # a template's raise_exception
            continue
    raise AssertionError(f"{name}'s chat template renders no conversation")


@pytest.mark.parametrize("name", FAMILIES)
def test_chat_renderings_decode_and_their_markers_have_roles(name: str) -> None:
    rendered, v = chat_rendering(name), vocab(name)
    if rendered is None:  # no template shipped: roles come from the config and the family table alone
        assert not any("chat template:" in e for evidence in v.role_evidence.values() for e in evidence)
        return
    ids = v.tokenizer.encode(rendered, add_special_tokens=False).ids
    assert v.tokenizer.decode(ids, skip_special_tokens=False).encode() == v.decode_bytes(ids)
    assert token_spans(v, [ids]).text_bytes(0) == v.tokenizer.decode(ids, skip_special_tokens=True).encode()
    markers = {i for i in ids if i in v.special}
    assert markers, f"{name}: the rendering holds no special token"
    # Each marker of the rendering has a role its template (or its config) gave it, never a guess.
    for i in markers:
        assert set(v.special[i]) - {"marker"}, (name, v.pieces[i], v.special[i])
        assert any("chat template:" in e or "tokenizer_config" in e for e in v.role_evidence[i]), (name, v.pieces[i])
