"""Training data for distillation: texts -> student and teacher ids -> pre-aligned samples -> batches.

- `encode_texts` tokenises every text with the student and with each teacher, each side with its own
  BOS convention (Llama-3 `<|begin_of_text|>`, none for Qwen3). A text too long for `max_length`
  student tokens is cut at a student token's start in the TEXT, and every side encodes that same
  cut text, so student and teachers always cover the same characters.
- `DistillDataset` aligns each sample with each cross-tokenizer teacher once, at construction
  (`align_batch`, the byte walk by default), never in the training step.
- `collate` pads a list of samples into LongTensors and offsets chunk ids so they are unique in
  the batch (docs/distill-interfaces.md).

Left out: packing several texts into one sequence, chat templates, corpora larger than memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from xtoken_align.corpus import read_corpus
from xtoken_align.distill.align import SampleAlignment, align_batch
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab

PAD_ID = 0  # id written under attention_mask == 0; never attended to nor scored
_RECUTS = 4  # re-encoding a cut text can shift its last tokens; cut again at most this often


@dataclass
class EncodedText:
    text: str  # the text every side encodes (cut to fit max_length student tokens)
    student_ids: np.ndarray  # int64, with the student's BOS when it has one
    teacher_ids: dict[str, np.ndarray]  # per teacher; a same-tokenizer teacher (None) gets the student ids


@dataclass
class DistillSample:
    input_ids: np.ndarray  # int64 (T_s,)
    labels: np.ndarray  # int64 (T_s,) next student token, -100 at the last position
    alignments: dict[str, SampleAlignment]  # per teacher
    index: int = 0  # its position in the training set (what a teacher cache is keyed by)


def bos_id(vocab: Vocab) -> int | None:
    """The id a sequence starts with: the vocabulary's BOS, unless that token is also its end of
    text (GPT-2 style `<|endoftext|>`, as in o200k), which such models do not prepend."""
    roles = vocab.roles()
    bos = roles.get("bos")
    if bos is None or "eos" in vocab.special[bos] or "end_of_text" in vocab.special[bos]:
        return None
    return bos


def _encode(vocab: Vocab, texts: list[str], add_bos: bool) -> list[np.ndarray]:
    bos = bos_id(vocab) if add_bos else None
    head = [] if bos is None else [bos]
    encodings = vocab.tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.asarray(head + e.ids, dtype=np.int64) for e in encodings]


def encode_texts(
    texts: Sequence[str],
    student: Vocab,
    teachers: Mapping[str, Vocab | None],
    max_length: int,
    add_bos: bool = True,
) -> list[EncodedText]:
    """Student and teacher ids of every text, all sides covering the same (possibly cut) text.

    Teacher sequences are not capped: they cover the same text, so they may be a little longer
    than `max_length` (Qwen3 spells "2024" in four tokens where Llama-3 uses two).
    """
    room = max_length - (1 if add_bos and bos_id(student) is not None else 0)
    if room < 1:
        raise XTokenError(f"max_length {max_length} leaves no room for text after the BOS")
    texts = list(texts)
    pending = list(range(len(texts)))
    for attempt in range(_RECUTS + 1):
        encodings = student.tokenizer.encode_batch([texts[i] for i in pending], add_special_tokens=False)
        too_long = [(i, e) for i, e in zip(pending, encodings, strict=True) if len(e.ids) > room]
        for i, e in too_long:  # cut before the first token that does not fit (and encode again)
            texts[i] = "" if attempt == _RECUTS else texts[i][: e.offsets[max(room - attempt, 0)][0]]
        pending = [i for i, _ in too_long]
        if not pending:
            break
    student_ids = _encode(student, texts, add_bos)
    teacher_ids = {
        key: student_ids if vocab is None else _encode(vocab, texts, add_bos) for key, vocab in teachers.items()
    }
    return [
        EncodedText(text, ids, {key: teacher_ids[key][i] for key in teachers})
        for i, (text, ids) in enumerate(zip(texts, student_ids, strict=True))
    ]


def _labels(ids: np.ndarray) -> np.ndarray:
    """Next token at each position, -100 at the last. `_labels([5, 6, 7]) -> [6, 7, -100]`"""
    return np.append(np.asarray(ids[1:], dtype=np.int64), -100)[: len(ids)]


def _same_tokenizer(ids: np.ndarray) -> SampleAlignment:
    """Positions align 1:1: every position that has a next token is its own chunk."""
    labels = _labels(ids)
    scored = labels != -100
    chunk = np.where(scored, np.cumsum(scored) - 1, -1)
    return SampleAlignment(ids, ids, chunk, chunk.copy(), labels, int(scored.sum()))


class DistillDataset(Dataset):
    """Samples aligned with every teacher once, here; `__getitem__` only returns them."""

    def __init__(
        self,
        encoded: Sequence[EncodedText],
        student: Vocab,
        teachers: Mapping[str, Vocab | None],
        method: str = "bytes",
    ) -> None:
        for item in encoded:
            if set(item.teacher_ids) != set(teachers):
                raise XTokenError(f"encoded teachers {sorted(item.teacher_ids)} differ from {sorted(teachers)}")
        student_ids = [item.student_ids for item in encoded]
        per_teacher: dict[str, list[SampleAlignment]] = {}
        for key, vocab in teachers.items():
            if vocab is None:
                per_teacher[key] = [_same_tokenizer(ids) for ids in student_ids]
            else:
                teacher_ids = [item.teacher_ids[key] for item in encoded]
                per_teacher[key] = align_batch(student, vocab, student_ids, teacher_ids, method)
        self.samples = [
            DistillSample(ids, _labels(ids), {key: per_teacher[key][i] for key in teachers}, i)
            for i, ids in enumerate(student_ids)
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> DistillSample:
        return self.samples[index]


def training_set(
    paths: Sequence[str], limit: int | None, max_length: int, student: Vocab, teachers: Mapping[str, Vocab | None]
) -> DistillDataset:
    """The run's training samples: texts read, encoded and aligned exactly as the runner and
    `cache-teacher` both need them (a teacher of None shares the student's tokenizer)."""
    encoded = encode_texts(load_texts(paths, limit=limit), student, teachers, max_length)
    return DistillDataset(encoded, student, teachers)


def collate(samples: Sequence[DistillSample]) -> dict:
    """Right-padded LongTensors. Student side (B, T_s): `input_ids`, `attention_mask`, `labels`
    (-100 pad), `index` (B,) each sample's position in the training set; per teacher key:
    `teacher_input_ids[key]`, `teacher_attention_mask[key]` (B, T_t),
    `student_chunk[key]` (B, T_s) and `teacher_chunk[key]` (B, T_t), chunk ids offset so they are
    unique in the batch, -1 for padding and positions outside every valid chunk."""
    if not samples:
        raise XTokenError("collate needs at least one sample")
    n, t_s = len(samples), max(len(s.input_ids) for s in samples)
    input_ids = np.full((n, t_s), PAD_ID, dtype=np.int64)
    mask = np.zeros((n, t_s), dtype=np.int64)
    labels = np.full((n, t_s), -100, dtype=np.int64)
    for row, sample in enumerate(samples):
        input_ids[row, : len(sample.input_ids)] = sample.input_ids
        mask[row, : len(sample.input_ids)] = 1
        labels[row, : len(sample.labels)] = sample.labels
    batch: dict = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
        "index": torch.tensor([s.index for s in samples], dtype=torch.long),  # (B,) training-set positions
        "teacher_input_ids": {},
        "teacher_attention_mask": {},
        "student_chunk": {},
        "teacher_chunk": {},
    }
    for key in samples[0].alignments:
        t_t = max(len(s.alignments[key].teacher_ids) for s in samples)
        t_ids = np.full((n, t_t), PAD_ID, dtype=np.int64)
        t_mask = np.zeros((n, t_t), dtype=np.int64)
        s_chunk = np.full((n, t_s), -1, dtype=np.int64)
        t_chunk = np.full((n, t_t), -1, dtype=np.int64)
        offset = 0
        for row, sample in enumerate(samples):
            a = sample.alignments[key]
            t_ids[row, : len(a.teacher_ids)] = a.teacher_ids
            t_mask[row, : len(a.teacher_ids)] = 1
            s_chunk[row, : len(a.student_chunk)] = np.where(a.student_chunk >= 0, a.student_chunk + offset, -1)
            t_chunk[row, : len(a.teacher_chunk)] = np.where(a.teacher_chunk >= 0, a.teacher_chunk + offset, -1)
            offset += a.n_chunks
        batch["teacher_input_ids"][key] = torch.from_numpy(t_ids)
        batch["teacher_attention_mask"][key] = torch.from_numpy(t_mask)
        batch["student_chunk"][key] = torch.from_numpy(s_chunk)
        batch["teacher_chunk"][key] = torch.from_numpy(t_chunk)
    return batch


def load_texts(paths: str | Path | Sequence[str | Path], limit: int | None = None) -> list[str]:
    """Texts of one or more corpus files (JSONL `text` or GSM8K `question`/`answer`, or plain
    text split on blank lines; see `xtoken_align.score.read_corpus`), the first `limit` overall."""
    if isinstance(paths, str | Path):
        paths = [paths]
    texts: list[str] = []
    for path in paths:
        if limit is not None and len(texts) >= limit:
            break
        texts += read_corpus(path, limit=None if limit is None else limit - len(texts))
    return texts
