"""W files in our own format: safetensors tensors + a JSON sidecar, written and read back checked.

Format, version 1. `W.safetensors` holds the CSR arrays and per-entry provenance:

    indptr  int64 (V_S+1,)   indices int32 (nnz,)   data float32 (nnz,)
    rules   uint8 (nnz,)  index into the sidecar's `rule_codes`
    scores  float32 (nnz,)  raw score before top-K and normalisation

`W.json` beside it records the format version, both tokenizers (name, source to reopen them,
size, sha256 fingerprint of the canonical vocabulary), the rule config, build time, tool
version, the edit history and the sha256 of the tensor file, so a mismatched or truncated pair is
refused. Files are written to a temporary name and renamed: a crash never leaves half a file.
Left out: the CSV/Parquet tables (`formats.tables`) and the NeMo-RL/TRL `.pt` (`formats.reference`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load, save

from xtoken_align.atomic import write_atomic
from xtoken_align.config import BuildConfig
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, TokenizerInfo
from xtoken_align.rules import RULE_CODES
from xtoken_align.vocab import Vocab

FORMAT = "xtoken-align-projection"
FORMAT_VERSION = 1


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside a W file: `sidecar_path("out/W.safetensors") -> Path("out/W.json")`."""
    return Path(path).with_suffix(".json")


def save_projection(projection: Projection, path: str | Path) -> Path:
    """Write `path` (.safetensors) and its `.json` sidecar; returns the tensor file's path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise XTokenError(f"{path}: W files end in .safetensors (the sidecar goes beside it as .json)")
    m = projection.matrix
    tensors = {
        "indptr": np.ascontiguousarray(m.indptr, dtype=np.int64),
        "indices": np.ascontiguousarray(m.indices, dtype=np.int32),
        "data": np.ascontiguousarray(m.data, dtype=np.float32),
        "rules": np.ascontiguousarray(projection.rules, dtype=np.uint8),
        "scores": np.ascontiguousarray(projection.scores, dtype=np.float32),
    }
    # One metadata key: safetensors writes several in no fixed order, and files must be reproducible.
    blob = save(tensors, metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "shape": list(projection.shape),
        "nnz": int(m.nnz),
        "student": projection.student.as_dict(),
        "teacher": projection.teacher.as_dict(),
        "config": projection.config.model_dump() if projection.config else None,
        "rule_codes": list(RULE_CODES),
        "created": projection.created,
        "tool_version": projection.tool_version,
        "history": projection.history,
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }
    write_atomic(path, blob)
    write_atomic(sidecar_path(path), (json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def load_projection(path: str | Path, student: Vocab | None = None, teacher: Vocab | None = None) -> Projection:
    """Read a W file, or the W of a hub folder (`formats.hub`), and check it; given tokenizers, refuse
    it unless it was built for them."""
    from xtoken_align.formats.hub import hub_projection_file

    path = Path(path)
    if path.is_dir():
        path = hub_projection_file(path)
    meta_path = sidecar_path(path)
    if not path.is_file():
        raise XTokenError(f"no such W file: {path}")
    if not meta_path.is_file():
        raise XTokenError(f"{path}: its sidecar {meta_path.name} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise XTokenError(f"{meta_path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise XTokenError(f"{meta_path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise XTokenError(f"{meta_path}: not an xtoken-align W sidecar")
    if meta.get("format_version") != FORMAT_VERSION:
        raise XTokenError(f"{meta_path}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
        raise XTokenError(f"{path}: contents do not match its sidecar (truncated, corrupted or from another build)")
    try:
        tensors = load(blob)
        v_s, v_t = (int(x) for x in meta["shape"])
        matrix = sp.csr_array((tensors["data"], tensors["indices"], tensors["indptr"]), shape=(v_s, v_t))
        config = BuildConfig.from_dict(meta["config"], origin=str(meta_path)) if meta["config"] is not None else None
        projection = Projection(
            matrix, tensors["rules"], tensors["scores"], TokenizerInfo(**meta["student"]),
            TokenizerInfo(**meta["teacher"]), config, meta["created"], meta["tool_version"],
            list(meta.get("history", [])),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, SafetensorError) as exc:
        raise XTokenError(f"{path}: malformed W file ({type(exc).__name__}: {exc})") from None
    projection.check_tokenizers(student, teacher)
    projection.check()
    return projection
