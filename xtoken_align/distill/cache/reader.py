"""`TeacherCache`: a cached teacher for the runner, checked against the run, read back as log-probs.

`TeacherCache.open` (in `prepare_teachers`, before any model loads) reads manifest.json, refuses a
cache made for other data, max_length, tokenizers or W in one line (manifest.py) and an unfinished
one; `verify` (once the runner has its samples) checks that every sample's teacher ids and chunk ids
are those stored; `signal` reads a micro-batch's teacher log-probabilities, sparse (signal.slots),
which the losses take in place of a live teacher's logits. Shards are memory-mapped and read by slices.
Left out: writing a cache (writer.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from xtoken_align.distill.cache.ids import unpack_ids
from xtoken_align.distill.cache.manifest import TOKENIZER, CacheManifest, check_manifest, shard_name
from xtoken_align.distill.cache.signal import slots
from xtoken_align.distill.config import DistillConfig, TeacherSpec
from xtoken_align.distill.data import DistillDataset, DistillSample
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab, load_vocab

PER_POSITION = ("topk_logp", "next_logp", "sample_counts", "residual", "sample_logp")
PACKED = ("topk_ids", "sample_ids")


class TeacherCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = CacheManifest.read(self.folder)
        missing = [j for j in range(self.manifest.shards) if not (self.folder / shard_name(j)).is_file()]
        if missing:
            done = self.manifest.shards - len(missing)
            raise XTokenError(f"teacher cache {self.folder} is unfinished ({done} of {self.manifest.shards} shards); "
                              "run the same xtoken-align cache-teacher again to finish it")  # fmt: skip
        self._files: dict[int, object] = {}
        self._offsets: dict[tuple[int, bool], np.ndarray] = {}  # (shard, student side) -> (n+1,)

    @classmethod
    def open(cls, spec: TeacherSpec, name: str, config: DistillConfig, student: Vocab) -> tuple[TeacherCache, Vocab]:
        """The cache of teacher `name` and its tokenizer (the run's `tokenizer:`, else the cache's copy)."""
        cache = cls(spec.cache)
        teacher = load_vocab(spec.tokenizer or str(cache.folder / TOKENIZER))
        check_manifest(cache.manifest, cache.folder, config, spec, name, student, teacher)
        return cache, teacher

    def _file(self, j: int):
        if j not in self._files:
            self._files[j] = f = safe_open(str(self.folder / shard_name(j)), framework="numpy")
            self._offsets[j, False], self._offsets[j, True] = f.get_tensor("offsets"), f.get_tensor("student_offsets")
        return self._files[j]

    def _rows(self, index: int, names: tuple[str, ...], student: bool = False) -> dict[str, np.ndarray]:
        """The stored rows of sample `index`: planes of `names` sliced to its positions."""
        j, row = divmod(index, self.manifest.shard_samples)
        f = self._file(j)
        offsets = self._offsets[j, student]
        start, end = int(offsets[row]), int(offsets[row + 1])
        return {n: f.get_slice(n)[start:end] for n in names}

    def _ids(self, index: int, name: str) -> np.ndarray:
        layout = self.manifest.id_layout
        planes = (name, f"{name}.hi") if layout == "uint16+uint8" else (name,)
        rows = self._rows(index, planes)
        return unpack_ids(name, rows.__getitem__, layout)

    def verify(self, dataset: DistillDataset, name: str) -> None:
        """Refuse, in one line, a cache whose samples are not the run's (teacher ids or chunk ids differ)."""
        if len(dataset) != self.manifest.samples:
            raise XTokenError(f"teacher '{name}': cache {self.folder} holds {self.manifest.samples} samples, the run "
                              f"has {len(dataset)}; cache again (xtoken-align cache-teacher)")  # fmt: skip
        for sample in dataset.samples:
            self.verify_sample(sample, name)

    def verify_sample(self, sample: DistillSample, name: str) -> None:
        """Refuse a sample whose teacher ids or chunk ids are not those stored at its index."""
        if not 0 <= sample.index < self.manifest.samples:
            raise XTokenError(f"teacher '{name}': cache {self.folder} holds samples 0-{self.manifest.samples - 1}, "
                              f"not {sample.index}")  # fmt: skip
        a = sample.alignments[name]
        same = np.array_equal(self._ids(sample.index, "input_ids"), a.teacher_ids)
        chunks = self._rows(sample.index, ("teacher_chunk",))["teacher_chunk"]
        same = same and np.array_equal(chunks, a.teacher_chunk)
        student = self._rows(sample.index, ("student_chunk",), student=True)["student_chunk"]
        if not (same and np.array_equal(student, a.student_chunk)):
            raise XTokenError(f"teacher '{name}': cache {self.folder} differs from the run's data at sample "
                              f"{sample.index} (teacher ids or chunk ids); cache again")  # fmt: skip

    def signal(self, index: torch.Tensor, length: int, device: torch.device) -> SparseTeacher:
        """(B,) training-set indices -> the stored log p̂ of their positions, (B, length, K + 1 + S) slots;
        padding positions get p̂ = 1 on id 0 (a row no loss reads). The drawn ids' log p − log p̂ ride along
        (`SparseTeacher.log_ratio`)."""
        sampled = self.manifest.sampled
        width = min(self.manifest.topk, self.manifest.teacher_vocab_size) + 1 + sampled
        ids = torch.zeros(len(index), length, width, dtype=torch.long)
        logp = torch.full((len(index), length, width), -torch.inf)
        logp[..., 0] = 0.0
        ratio = torch.zeros(len(index), length, width)
        for row, i in enumerate(index.tolist()):
            stored = self._rows(i, PER_POSITION)  # float16/float32 log-probs and masses, uint16 counts
            signal = {
                k: torch.from_numpy(v.astype(np.float32 if v.dtype.kind == "f" else np.int64))
                for k, v in stored.items()
            }
            signal.update({k: torch.from_numpy(self._ids(i, k)) for k in PACKED})
            teacher_ids = torch.from_numpy(self._ids(i, "input_ids"))
            following = torch.cat([teacher_ids[1:], torch.tensor([-1])])
            n = len(teacher_ids)
            ids[row, :n], logp[row, :n], ratio[row, :n] = slots(signal, following, sampled)
        size = self.manifest.teacher_vocab_size
        return SparseTeacher(ids.to(device), logp.to(device), size, ratio.to(device))
