"""Distillation data: encoding with each side's BOS, truncation on text, pre-aligned dataset, collate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import GSM8K, gsm8k, vocab

from xtoken_align.distill import data as data_module
from xtoken_align.distill.data import DistillDataset, bos_id, collate, encode_texts, load_texts
from xtoken_align.errors import XTokenError


def decoded(name: str, ids: np.ndarray) -> str:
    v = vocab(name)
    return v.decode_bytes([i for i in ids.tolist() if i not in v.special]).decode("utf-8")


def test_each_side_keeps_its_own_bos_convention() -> None:
    assert bos_id(vocab("llama3")) == 128000 and bos_id(vocab("llama2")) == 1
    assert bos_id(vocab("qwen3")) is None  # Qwen3 has no BOS
    assert bos_id(vocab("o200k")) is None  # its "bos" is <|endoftext|>, also its end of text
    teachers = {"qwen": vocab("qwen3"), "llama2": vocab("llama2")}
    [item] = encode_texts(["Tom has 201 apples."], vocab("llama3"), teachers, max_length=64)
    assert item.student_ids[0] == 128000 and 128000 not in item.student_ids[1:].tolist()
    assert item.teacher_ids["qwen"][0] not in vocab("qwen3").special
    assert item.teacher_ids["llama2"][0] == 1
    [bare] = encode_texts(["Tom has 201 apples."], vocab("llama3"), teachers, max_length=64, add_bos=False)
    assert bare.student_ids.tolist() == item.student_ids[1:].tolist()
    assert bare.teacher_ids["llama2"].tolist() == item.teacher_ids["llama2"][1:].tolist()


@pytest.mark.parametrize("student,teacher", [("llama3", "qwen3"), ("llama2", "llama3"), ("qwen3", "llama2")])
def test_truncation_keeps_both_sides_on_the_same_text(student, teacher) -> None:
    long = [" ".join(gsm8k("test")[:4]), "Emoji 😀👍🏽 漢字 " * 40, gsm8k("test")[5]]
    for max_length in (9, 32, 100):
        items = encode_texts(long, vocab(student), {"t": vocab(teacher)}, max_length=max_length)
        for original, item in zip(long, items, strict=True):
            assert len(item.student_ids) <= max_length
            assert original.startswith(item.text)
            assert decoded(student, item.student_ids) == item.text == decoded(teacher, item.teacher_ids["t"])
        assert len(items[0].student_ids) >= max_length - 2  # cut close to the limit, not far before it
    [short] = encode_texts([gsm8k("test")[5]], vocab(student), {"t": vocab(teacher)}, max_length=4096)
    assert short.text == gsm8k("test")[5]


def test_max_length_without_room_is_refused() -> None:
    with pytest.raises(XTokenError, match="no room"):
        encode_texts(["x"], vocab("llama3"), {}, max_length=1)


def make_dataset(texts: list[str], max_length: int = 96) -> DistillDataset:
    teachers = {"qwen": vocab("qwen3"), "self": None}
    return DistillDataset(encode_texts(texts, vocab("llama3"), teachers, max_length), vocab("llama3"), teachers)


def test_collate_shapes_padding_and_offsets() -> None:
    texts = [gsm8k("test")[0], "Short one: 201.", gsm8k("test")[1]]
    dataset = make_dataset(texts)
    batch = collate([dataset[i] for i in range(3)])
    lengths = [len(dataset[i].input_ids) for i in range(3)]
    t_s = max(lengths)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["labels"].shape == (3, t_s)
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, n in enumerate(lengths):
        assert batch["input_ids"][row, :n].tolist() == dataset[row].input_ids.tolist()
        assert batch["labels"][row, : n - 1].tolist() == dataset[row].input_ids[1:].tolist()
        assert (batch["labels"][row, n - 1 :] == -100).all()
    for key in ("qwen", "self"):
        s_chunk, t_chunk = batch["student_chunk"][key], batch["teacher_chunk"][key]
        t_ids, t_mask = batch["teacher_input_ids"][key], batch["teacher_attention_mask"][key]
        t_lengths = [len(dataset[i].alignments[key].teacher_ids) for i in range(3)]
        assert s_chunk.shape == (3, t_s) and t_chunk.shape == t_ids.shape == t_mask.shape == (3, max(t_lengths))
        assert t_mask.sum(1).tolist() == t_lengths
        offset = 0
        for row in range(3):
            a = dataset[row].alignments[key]
            want = np.where(a.student_chunk >= 0, a.student_chunk + offset, -1)
            assert s_chunk[row, : lengths[row]].tolist() == want.tolist()
            assert (s_chunk[row, lengths[row] :] == -1).all() and (t_chunk[row, t_lengths[row] :] == -1).all()
            row_ids = set(s_chunk[row][s_chunk[row] >= 0].tolist())
            assert row_ids == set(t_chunk[row][t_chunk[row] >= 0].tolist()) == set(range(offset, offset + a.n_chunks))
            offset += a.n_chunks
        assert int(s_chunk.max()) + 1 == offset  # unique in the batch: K = max + 1


def test_same_tokenizer_teacher_aligns_position_by_position() -> None:
    dataset = make_dataset([gsm8k("test")[2]])
    sample = dataset[0]
    a = sample.alignments["self"]
    assert a.teacher_ids.tolist() == sample.input_ids.tolist()
    scored = sample.labels != -100
    assert a.student_chunk.tolist() == a.teacher_chunk.tolist() == np.where(scored, np.arange(len(scored)), -1).tolist()
    assert a.n_chunks == int(scored.sum())
    batch = collate([sample, sample])
    assert batch["teacher_input_ids"]["self"].tolist() == batch["input_ids"].tolist()


def test_alignment_runs_once_at_construction(monkeypatch) -> None:
    calls = []
    real = data_module.align_batch

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "align_batch", counting)
    dataset = make_dataset(gsm8k("test")[:6])
    assert calls == [6]  # one batched call for the one cross-tokenizer teacher, over every sample
    first = dataset[3].alignments["qwen"]
    for _ in range(3):
        collate([dataset[i] for i in range(6)])
    assert calls == [6] and dataset[3].alignments["qwen"] is first


def test_mismatched_teachers_are_refused() -> None:
    encoded = encode_texts(["a b"], vocab("llama3"), {"qwen": vocab("qwen3")}, 16)
    with pytest.raises(XTokenError, match="differ"):
        DistillDataset(encoded, vocab("llama3"), {"other": vocab("qwen3")})


def test_dataset_from_gsm8k_lines(tmp_path) -> None:
    rows = [json.loads(line) for line in GSM8K["test"].read_text().splitlines()[:5]]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    second.write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    assert load_texts([first]) == gsm8k("test")[:3]
    assert load_texts(str(first), limit=2) == gsm8k("test")[:2]
    texts = load_texts([first, second], limit=4)
    assert texts == gsm8k("test")[:4] and load_texts([first, second], limit=0) == []
    dataset = make_dataset(texts, max_length=64)
    assert len(dataset) == 4
    batch = collate([dataset[i] for i in range(4)])
    assert batch["input_ids"].shape[1] <= 64 and batch["student_chunk"]["qwen"].max() > 50
    with pytest.raises(XTokenError, match="no such corpus"):
        load_texts([tmp_path / "missing.jsonl"])
