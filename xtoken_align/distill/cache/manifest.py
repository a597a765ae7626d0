"""What a teacher cache was made from (`manifest.json`), and the check that refuses, in one line and
before training, a cache made for other inputs than the run's.

A cache's signal depends on the training data (files' sha256, `data.limit`), `data.max_length`, the
teacher's tokenizer and the student's (the chunk ids), and on the teacher model (recorded, not
checkable once the model is gone). W does not enter the signal, but the W the cache was made with is
recorded and a run with another W is refused, so one cache serves one experiment. Left out: reading
the shards (reader.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from xtoken_align import __version__
from xtoken_align.atomic import write_atomic
from xtoken_align.distill.config import DistillConfig, TeacherSpec
from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab

FORMAT = "xtoken-align/teacher-cache/2"  # 2: drawn ids' own log p
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"  # the teacher's tokenizer, copied so the model folder can go


class DataFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str


class CacheManifest(BaseModel):
    """manifest.json of one teacher's cache (docs/teacher-cache.md lists every field)."""

    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    tool_version: str = __version__
    teacher: str
    teacher_model: str
    teacher_model_fingerprint: str
    teacher_tokenizer: str
    teacher_tokenizer_fingerprint: str
    teacher_vocab_size: int
    student_tokenizer_fingerprint: str
    data_files: list[DataFile]
    data_limit: int | None
    max_length: int
    samples: int  # training samples
    projection: str | None
    projection_sha256: str | None
    topk: int  # K: the K most probable ids per position, exact
    sampled: int  # S: draws per position from the rest (with replacement), stored as ids + counts
    seed: int
    logp_dtype: Literal["float16", "float32"]
    id_layout: str  # ids.py
    precision: str  # the teacher's forward dtype
    shard_samples: int
    shards: int

    def save(self, folder: Path) -> None:
        write_atomic(folder / MANIFEST, (self.model_dump_json(indent=2) + "\n").encode())

    @classmethod
    def read(cls, folder: Path) -> CacheManifest:
        path = folder / MANIFEST
        if not path.is_file():
            hint = "make one with xtoken-align cache-teacher"
            raise XTokenError(f"{folder} is not a teacher cache (no {MANIFEST}); {hint}")
        manifest = cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        if manifest.format != FORMAT:
            raise XTokenError(f"{path}: cache format {manifest.format!r}, this version reads {FORMAT!r}; "
                              f"delete {folder} and run xtoken-align cache-teacher again")  # fmt: skip
        return manifest


def shard_name(j: int) -> str:
    """`shard_name(3) -> "shard-00003.safetensors"`"""
    return f"shard-{j:05d}.safetensors"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """sha256 of a model folder's config.json and of its weight files' names and sizes (cheap, and
    changes whenever the weights are replaced); for a hub id, the id itself."""
    folder = Path(model)
    if not folder.is_dir():
        return f"hub:{model}"
    digest = hashlib.sha256((folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b"")
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()


def data_files(config: DistillConfig) -> list[DataFile]:
    return [DataFile(path=str(p), sha256=sha256_file(p)) for p in config.data.train]


def check_manifest(
    manifest: CacheManifest, folder: Path, config: DistillConfig, spec: TeacherSpec, name: str, student: Vocab,
    teacher: Vocab,
) -> None:  # fmt: skip
    """Refuse a cache made for other inputs than this run's, naming the first that differs."""
    why = _difference(manifest, config, spec, student, teacher)
    if why:
        again = "cache again (xtoken-align cache-teacher)"
        raise XTokenError(f"teacher '{name}': cache {folder} was made for {why}; {again}")


def _difference(manifest: CacheManifest, config: DistillConfig, spec: TeacherSpec, student: Vocab, teacher: Vocab):
    cached = [f.sha256 for f in manifest.data_files]
    files = data_files(config)
    if cached != [f.sha256 for f in files]:
        changed = [f.path for f, old in zip(files, cached, strict=False) if f.sha256 != old] or [f.path for f in files]
        return f"other data ({', '.join(changed)} sha256 differs)"
    if manifest.data_limit != config.data.limit:
        return f"other data (data.limit {manifest.data_limit}, the run has {config.data.limit})"
    if manifest.max_length != config.data.max_length:
        return f"another max_length ({manifest.max_length}, the run has {config.data.max_length})"
    if teacher.fingerprint != manifest.teacher_tokenizer_fingerprint:
        return f"another teacher tokenizer ({manifest.teacher_tokenizer}, the run has {teacher.name})"
    if student.fingerprint != manifest.student_tokenizer_fingerprint:
        return f"another student tokenizer (the run's {student.name} differs; chunk ids depend on it)"
    if spec.projection and manifest.projection_sha256 and sha256_file(spec.projection) != manifest.projection_sha256:
        return f"another W ({manifest.projection}, sha256 differs from the run's {spec.projection})"
    return None
