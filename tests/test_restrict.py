"""Restricted tokenizers: exact on their corpus, lossless elsewhere, every numeral and special kept."""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import gsm8k, vocab
from tokenizers import Tokenizer, decoders, models

from xtoken_align.categories import is_numeral
from xtoken_align.errors import XTokenError
from xtoken_align.projection import build_projection
from xtoken_align.restrict import restrict
from xtoken_align.sources import LoadedTokenizer
from xtoken_align.vocab import build_vocab, load_vocab

CORPUS = gsm8k("train")[:400]
UNSEEN = gsm8k("test")[:150] + ["Grüße aus Köln: 12345 + 98,765.4321 = ?", "日本語のテキスト 🙂", "zebra\tquokka\r\n"]


@cache
def restricted(name: str):
    """The restriction and the Vocab reloaded from its saved folder, as a user gets it."""
    result = restrict(vocab(name), CORPUS)
    return result, load_vocab(str(result.save(Path(tempfile.mkdtemp()) / name)))


@pytest.mark.parametrize("name", ["llama3", "qwen3", "o200k", "llama2"])
def test_corpus_tokenizes_identically_and_other_text_round_trips(name):
    full = vocab(name)
    result, small = restricted(name)
    assert small.size == result.size < full.size / 2
    kept = np.array(result.kept)
    for text in CORPUS[:100]:
        before = full.tokenizer.encode(text, add_special_tokens=False).ids
        after = small.tokenizer.encode(text, add_special_tokens=False).ids
        assert kept[after].tolist() == before
    for text in UNSEEN:
        ids = small.tokenizer.encode(text, add_special_tokens=False).ids
        assert small.decode_bytes(ids) == full.decode_bytes(full.tokenizer.encode(text, add_special_tokens=False).ids)
    # Every kept token is the same token: same bytes, same category, same special roles.
    assert [small.token_bytes[i] for i in range(small.size)] == [full.token_bytes[k] for k in kept]
    roles = {result.kept[i]: r for i, r in small.special.items()}
    assert roles == {k: full.special[k] for k in kept if k in full.special}


@pytest.mark.parametrize("name", ["llama3", "o200k"])
def test_every_numeral_is_kept(name):
    full = vocab(name)
    result, small = restricted(name)
    numerals = {full.token_bytes[i] for i, c in enumerate(full.categories) if is_numeral(c)}
    assert len(numerals) == 1110
    assert {small.token_bytes[i] for i, c in enumerate(small.categories) if is_numeral(c)} == numerals
    assert result.reasons["numeral"] > 0  # the corpus alone does not use them all
    corpus_only = restrict(full, CORPUS, keep_numerals=False)
    assert "numeral" not in corpus_only.reasons
    # Without the flag only the corpus's numerals stay (and those that are merge parents of them).
    assert 1110 - result.reasons["numeral"] <= sum(is_numeral(full.categories[i]) for i in corpus_only.kept) < 1110


def test_template_post_processor_adds_the_renumbered_bos():
    result, small = restricted("llama2")
    ids = small.tokenizer.encode("Hello").ids
    assert small.pieces[ids[0]] == "<s>" and result.kept[ids[0]] == vocab("llama2").roles()["bos"]


def test_w_on_restricted_pair_matches_the_full_w():
    """Rows whose teacher tokens all survive are the same rows of the full W, renumbered."""
    student, teacher = restricted("llama3"), restricted("qwen3")
    small = build_projection(student[1], teacher[1], progress=False)
    full = build_projection(vocab("llama3"), vocab("qwen3"), progress=False)
    s_kept, t_kept = np.array(student[0].kept), np.array(teacher[0].kept)
    t_new = {old: new for new, old in enumerate(t_kept)}
    compared, numerals = 0, 0
    for row in range(student[0].size):
        if not student[1].is_regular(row):
            continue
        entries = full.row(int(s_kept[row]))
        if entries and all(col in t_new for col, *_ in entries):
            expected = {t_new[col]: (round(weight, 6), rule) for col, weight, rule, _ in entries}
            got = {col: (round(weight, 6), rule) for col, weight, rule, _ in small.row(row)}
            assert got == expected, student[1].display(row)
            compared += 1
            numerals += is_numeral(student[1].categories[row])
    # The rest point at teacher tokens the corpus never produced; their rows re-route to kept pieces.
    assert compared > 0.5 * student[0].size and numerals == 1110
    assert np.allclose(small.row_sums()[[i for i in range(small.shape[0]) if student[1].is_regular(i)]], 1, atol=1e-6)
    two_oh_one = student[1].id_of_bytes(b"201")
    assert [teacher[1].display(col) for col, *_ in small.row(two_oh_one)] == ["2", "0", "1"]


def test_refuses_non_bpe_and_empty_corpus():
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("\u2581a", -1.0), ("b", -2.0)], unk_id=0))
    unigram.decoder = decoders.Metaspace()
    toy = build_vocab(LoadedTokenizer("toy", "toy", unigram, "tokenizer.json"))
    with pytest.raises(XTokenError, match="only BPE"):
        restrict(toy, ["ab"])
    with pytest.raises(XTokenError, match="non-empty corpus"):
        restrict(vocab("qwen3"), [])


def test_cli_writes_a_loadable_folder_and_never_overwrites(run_cli, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS[:50]))
    out = tmp_path / "small"
    done = run_cli("restrict", "demo:o200k", "--corpus", str(corpus), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "200,019 ->" in done.stdout and "all 50 corpus texts" in done.stdout
    small = load_vocab(str(out))
    record = json.loads((out / "restriction.json").read_text())
    assert record["source_fingerprint"] == vocab("o200k").fingerprint and len(record["kept"]) == small.size
    before = (out / "tokenizer.json").read_bytes()
    again = run_cli("restrict", "demo:o200k", "--corpus", str(corpus), "-o", str(out))
    assert again.returncode == 2 and "not an empty folder" in again.stderr and "Traceback" not in again.stderr
    assert (out / "tokenizer.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "small"]  # no temporary folder left
    missing = run_cli("restrict", "demo:o200k", "--corpus", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x"))
    assert missing.returncode == 2 and "no such corpus file" in missing.stderr


def test_save_replaces_an_earlier_folder_whole(tmp_path):
    small, larger = restrict(vocab("qwen3"), CORPUS[:5]), restrict(vocab("qwen3"), CORPUS[:50])
    small.save(tmp_path / "r")
    larger.save(tmp_path / "r")
    assert load_vocab(str(tmp_path / "r")).size == larger.size != small.size
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary or old folder left behind
