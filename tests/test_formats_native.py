"""`formats.native`: W files (safetensors + JSON sidecar), on W built from the real demo tokenizers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import vocab

import xtoken_align
from xtoken_align.config import BuildConfig
from xtoken_align.errors import XTokenError
from xtoken_align.formats.native import load_projection, save_projection, sidecar_path
from xtoken_align.projection import Projection, build_projection
from xtoken_align.vocab import Vocab

STUDENT, TEACHER = "llama3", "qwen3"


@cache
def built(student: str = STUDENT, teacher: str = TEACHER) -> Projection:
    return build_projection(vocab(student), vocab(teacher), progress=False)


def saved(folder: Path, projection: Projection | None = None, name: str = "W.safetensors") -> Path:
    return save_projection(projection or built(), folder / name)


def sidecar(path: Path) -> dict:
    return json.loads(sidecar_path(path).read_text(encoding="utf-8"))


def edit_sidecar(path: Path, **changes: object) -> None:
    """Rewrite the sidecar with `changes`; a value of `...` removes the key."""
    meta = sidecar(path)
    for key, value in changes.items():
        if value is ...:
            del meta[key]
        else:
            meta[key] = value
    sidecar_path(path).write_text(json.dumps(meta), encoding="utf-8")


def lines_without_sha(path: Path) -> list[str]:
    lines = sidecar_path(path).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if '"tensors_sha256"' not in line]


def with_matrix(projection: Projection, matrix: sp.csr_array) -> Projection:
    """A copy of `projection` holding `matrix` (provenance arrays cut to its entries)."""
    nnz = matrix.nnz
    return dataclasses.replace(
        projection, matrix=matrix, rules=projection.rules[:nnz].copy(), scores=projection.scores[:nnz].copy()
    )


def with_edited_row(projection: Projection, row: int, edit) -> Projection:
    """A copy of `projection` whose `row` data goes through `edit(data) -> data`."""
    matrix = projection.matrix.copy()
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    matrix.data[start:end] = edit(matrix.data[start:end].copy())
    return with_matrix(projection, matrix)


def altered(v: Vocab) -> Vocab:
    """The same tokenizer with one token's canonical bytes changed: same size, another fingerprint."""
    token_bytes = list(v.token_bytes)
    token_bytes[v.id_of_bytes(b" the")] = b" th\xc3\xa9"
    return dataclasses.replace(v, name=f"{v.name}-altered", token_bytes=token_bytes, _by_bytes={})


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


def row_201() -> int:
    return vocab(STUDENT).id_of_bytes(b"201")


# --- round trip and determinism ---------------------------------------------------------------


def test_save_load_round_trip_keeps_everything(tmp_path: Path) -> None:
    """Matrix, provenance, config, tokenizer info, timestamps and history all survive."""
    original = dataclasses.replace(built(), history=[{"action": "edit", "row": row_201(), "note": "ünïcode"}])
    loaded = load_projection(saved(tmp_path, original), vocab(STUDENT), vocab(TEACHER))
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(loaded.matrix, name), getattr(original.matrix, name)), name
    assert loaded.matrix.dtype == np.float32 and loaded.shape == original.shape
    assert np.array_equal(loaded.rules, original.rules)
    assert np.array_equal(loaded.scores, original.scores)
    assert loaded.config == original.config and isinstance(loaded.config, BuildConfig)
    assert loaded.student == original.student and loaded.teacher == original.teacher
    assert loaded.created == original.created and loaded.tool_version == original.tool_version
    assert loaded.history == original.history
    assert loaded.row(row_201()) == original.row(row_201())


def test_w_without_a_config_round_trips(tmp_path: Path) -> None:
    """An imported W (config None, import history) is saved and read back as such."""
    original = dataclasses.replace(built(), config=None, history=[{"action": "import", "file": "W.pt"}])
    path = saved(tmp_path, original)
    assert sidecar(path)["config"] is None
    loaded = load_projection(path, vocab(STUDENT), vocab(TEACHER))
    assert loaded.config is None and loaded.history == original.history
    assert np.array_equal(loaded.matrix.data, original.matrix.data)


def split_safetensors(blob: bytes) -> tuple[dict, bytes]:
    """(parsed JSON header, tensor bytes) of a safetensors file."""
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def test_two_builds_hold_identical_tensors(tmp_path: Path) -> None:
    """Same header contents and same tensor bytes, whatever order the header's keys come in."""
    first = saved(tmp_path / "a").read_bytes()
    second = saved(tmp_path / "b", build_projection(vocab(STUDENT), vocab(TEACHER), progress=False)).read_bytes()
    assert len(first) == len(second)
    assert split_safetensors(first) == split_safetensors(second)


def test_source_date_epoch_fixes_the_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything in the sidecar is the same for two builds once the build time is pinned."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = saved(tmp_path / "a", build_projection(vocab("llama2"), vocab(STUDENT), progress=False))
    second = saved(tmp_path / "b", build_projection(vocab("llama2"), vocab(STUDENT), progress=False))
    assert sidecar(first)["created"] == "2023-11-14T22:13:20Z"  # 1,700,000,000 s after the epoch
    assert lines_without_sha(first) == lines_without_sha(second)


def test_source_date_epoch_makes_both_files_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builds, each saved 8 times: a random header order shows up with near certainty (1 - 2**-15)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    builds = [build_projection(vocab("llama2"), vocab(STUDENT), progress=False) for _ in range(2)]
    paths = [saved(tmp_path / f"{b}-{i}", w) for b, w in enumerate(builds) for i in range(8)]
    assert len({p.read_bytes() for p in paths}) == 1
    assert len({sidecar_path(p).read_bytes() for p in paths}) == 1


def test_sidecar_records_how_w_was_made(tmp_path: Path) -> None:
    projection = dataclasses.replace(built(), history=[{"action": "edit", "row": 7}])
    path = saved(tmp_path, projection)
    meta = sidecar(path)
    assert meta["format_version"] == 1
    for side, info, v in (
        ("student", projection.student, vocab(STUDENT)),
        ("teacher", projection.teacher, vocab(TEACHER)),
    ):
        assert meta[side]["source"] == info.source == f"demo:{v.name}"
        assert meta[side]["fingerprint"] == info.fingerprint == v.fingerprint
        assert meta[side]["size"] == info.size == v.size
    assert BuildConfig.from_dict(meta["config"]) == projection.config
    assert meta["config"]["top_k"] == projection.config.top_k
    assert [rule["name"] for rule in meta["config"]["rules"]] == [rule.name for rule in projection.config.rules]
    assert meta["created"] == projection.created
    assert meta["tool_version"] == xtoken_align.__version__
    assert meta["history"] == [{"action": "edit", "row": 7}]
    assert meta["tensors_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


# --- tokenizers checked on load ---------------------------------------------------------------


def test_load_with_the_right_tokenizers_passes(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert load_projection(path, vocab(STUDENT), vocab(TEACHER)).shape == (vocab(STUDENT).size, vocab(TEACHER).size)
    assert load_projection(path).shape == built().shape  # no tokenizers given: nothing to compare


def test_same_canonical_vocabulary_from_another_source_is_accepted(tmp_path: Path) -> None:
    """llama3 read from its tiktoken file is the same canonical vocabulary as its tokenizer.json."""
    assert vocab("llama3-tiktoken").fingerprint == vocab(STUDENT).fingerprint
    assert load_projection(saved(tmp_path), vocab("llama3-tiktoken"), vocab(TEACHER)).shape == built().shape


def test_wrong_student_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match=r"student.*32,000.*128,256"):
        load_projection(saved(tmp_path), vocab("llama2"), vocab(TEACHER))


def test_wrong_teacher_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match=r"teacher.*200,019.*151,669"):
        load_projection(saved(tmp_path), vocab(STUDENT), vocab("o200k"))


@pytest.mark.parametrize("side", ["student", "teacher"])
def test_same_size_other_fingerprint_is_refused(tmp_path: Path, side: str) -> None:
    student, teacher = vocab(STUDENT), vocab(TEACHER)
    if side == "student":
        student = altered(student)
    else:
        teacher = altered(teacher)
    assert (student.size, teacher.size) == built().shape
    with pytest.raises(XTokenError, match=rf"{side} tokenizer .*fingerprints differ"):
        load_projection(saved(tmp_path), student, teacher)


def test_llama2_and_mistral_v1_share_a_fingerprint(tmp_path: Path) -> None:
    """Both 32,000 tokens with identical canonical bytes: a W built for one loads for the other."""
    assert vocab("llama2").fingerprint == vocab("mistral-v1").fingerprint
    path = saved(tmp_path, build_projection(vocab("llama2"), vocab(TEACHER), progress=False))
    assert load_projection(path, vocab("mistral-v1"), vocab(TEACHER)).shape == (32_000, vocab(TEACHER).size)


# --- malformed files --------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def swap_in_other_build(path: Path) -> None:
    other = save_projection(built("llama2", "mistral-v1"), path.parent / "other" / "W.safetensors")
    path.write_bytes(other.read_bytes())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncate, "do not match its sidecar"),
        (flip_last_byte, "do not match its sidecar"),
        (swap_in_other_build, "do not match its sidecar"),
        (lambda p: sidecar_path(p).unlink(), "sidecar W.json is missing"),
        (lambda p: sidecar_path(p).write_text("{not json", encoding="utf-8"), "not valid JSON"),
        (lambda p: sidecar_path(p).write_bytes(b"\xff\xfe\x00"), "not valid JSON"),
        (lambda p: sidecar_path(p).write_text("[1, 2]", encoding="utf-8"), "not an xtoken-align W sidecar"),
        (lambda p: edit_sidecar(p, format="something-else"), "not an xtoken-align W sidecar"),
        (lambda p: edit_sidecar(p, format_version=2), "format version 2 is not 1"),
        (lambda p: edit_sidecar(p, tensors_sha256=...), "do not match its sidecar"),
        (lambda p: edit_sidecar(p, shape=[5, 5]), "malformed W file"),
        (lambda p: edit_sidecar(p, student={"name": "x"}), "malformed W file"),
        (lambda p: edit_sidecar(p, config={"top_k": 0}), "invalid build config"),
        (lambda p: p.unlink(), "no such W file"),
    ],
    ids=[
        "truncated", "flipped-byte", "other-build", "no-sidecar", "sidecar-not-json", "sidecar-not-utf8",
        "sidecar-a-list", "wrong-format", "wrong-version", "no-sha", "wrong-shape", "bad-student", "bad-config",
        "no-tensor-file",
    ],
)  # fmt: skip
def test_malformed_files_are_refused_with_a_message(tmp_path: Path, damage, message: str) -> None:
    path = saved(tmp_path)
    damage(path)
    with pytest.raises(XTokenError, match=message):
        load_projection(path, vocab(STUDENT), vocab(TEACHER))


@pytest.mark.parametrize(
    "key",
    [
        "shape",
        "student",
        "teacher",
        "config",
        "created",
        "tool_version",
    ],
)
def test_sidecar_missing_a_key_is_refused(tmp_path: Path, key: str) -> None:
    path = saved(tmp_path)
    edit_sidecar(path, **{key: ...})
    with pytest.raises(XTokenError, match=key):
        load_projection(path)


def test_tensor_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    """A sidecar whose sha matches a file that is not safetensors at all (e.g. written by hand)."""
    path = saved(tmp_path)
    garbage = b"this is not a safetensors file"
    path.write_bytes(garbage)
    edit_sidecar(path, tensors_sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(XTokenError, match="malformed W file"):
        load_projection(path)


def cut_last_row(projection: Projection) -> Projection:
    return with_matrix(projection, sp.csr_array(projection.matrix[:-1]))


@pytest.mark.parametrize(
    ("invalid", "message"),
    [
        (lambda p: with_edited_row(p, row_201(), lambda d: np.where(np.arange(len(d)) == 1, np.nan, d)), "NaN"),
        (lambda p: with_edited_row(p, row_201(), lambda d: -d), "negative"),
        (lambda p: with_edited_row(p, row_201(), lambda d: d * 0.5), r"do not sum to 1 .*sums to 0\.5"),
        (cut_last_row, "shape 128255x151669"),
    ],
    ids=["nan", "negative", "half-row", "shape"],
)
def test_invalid_w_saved_intact_is_refused_on_load(tmp_path: Path, invalid, message: str) -> None:
    """The sha matches (save_projection wrote the pair), but the W itself breaks the rules."""
    path = saved(tmp_path, invalid(built()))
    with pytest.raises(XTokenError, match=message):
        load_projection(path)


@pytest.mark.parametrize("name", ["W.json", "W", "W.safetensors.bak", "W.pt"])
def test_save_refuses_a_path_not_ending_in_safetensors(tmp_path: Path, name: str) -> None:
    with pytest.raises(XTokenError, match=r"\.safetensors"):
        save_projection(built(), tmp_path / name)
    assert not list(tmp_path.iterdir())


# --- atomic writes ----------------------------------------------------------------------------


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = saved(tmp_path / "new" / "folder")
    assert sorted(p.name for p in path.parent.iterdir()) == ["W.json", "W.safetensors"]
    assert no_temp_files(path.parent)


def _fail_to_serialise(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("xtoken_align.formats.native.save", boom)


def _fail_to_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)


@pytest.mark.parametrize("fail", [_fail_to_serialise, _fail_to_rename], ids=["serialise", "rename"])
def test_failed_save_keeps_the_older_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail) -> None:
    path = saved(tmp_path, built("llama2", "mistral-v1"))
    before = (path.read_bytes(), sidecar_path(path).read_bytes())
    fail(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_projection(built(), path)
    monkeypatch.undo()
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before
    assert no_temp_files(tmp_path)
    assert load_projection(path, vocab("llama2"), vocab("mistral-v1")).shape == (32_000, 32_000)


def test_failure_between_the_two_files_is_detected_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tensor file is replaced but the sidecar rename fails: the mismatched pair is refused."""
    path = saved(tmp_path, built("llama2", "mistral-v1"))
    real_replace, calls = os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_once)
    with pytest.raises(OSError, match="disk full"):
        save_projection(built(), path)
    monkeypatch.undo()
    assert no_temp_files(tmp_path)
    with pytest.raises(XTokenError, match="do not match its sidecar"):
        load_projection(path)
