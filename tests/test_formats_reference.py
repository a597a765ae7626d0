"""`formats.reference`: the NeMo-RL / TRL X-Token `.pt` W file: export, import, the scale-trick leak, and
refused input. (That importing it needs no torch is checked in test_formats.py.)"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import vocab

from xtoken_align.errors import XTokenError
from xtoken_align.formats.reference import export_reference, import_reference
from xtoken_align.projection import Projection, build_projection
from xtoken_align.rules import RULE_CODES
from xtoken_align.score import off_piece_mass

STUDENT, TEACHER = "llama3", "qwen3"
LEAK_ID = 14  # '/' in byte-level vocabularies: where the reference tools' scale slot lands for 1-mapping rows
LEAK_WEIGHT = 1 / 7  # ≈ .143 in each of two slots; the real entries share the remaining 5/7 ≈ .715


@cache
def built() -> Projection:
    return build_projection(vocab(STUDENT), vocab(TEACHER), progress=False)


@pytest.fixture(scope="module")
def clean_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our llama3 x qwen3 W exported in float32; tests copy its payload, never edit the file."""
    return export_reference(built(), tmp_path_factory.mktemp("reference") / "W.pt")


def read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def write(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def same_matrix(a: Projection, b: Projection) -> bool:
    """CSR arrays equal entry for entry (no densifying)."""
    return all(np.array_equal(getattr(a.matrix, n), getattr(b.matrix, n)) for n in ("indptr", "indices", "data"))


def row_201() -> int:
    return vocab(STUDENT).id_of_bytes(b"201")


def non_exact_rows(projection: Projection) -> np.ndarray:
    """Filled regular student rows with no exact canonical match in the teacher."""
    s, t, indptr = vocab(STUDENT), vocab(TEACHER), projection.matrix.indptr
    return np.asarray(
        [
            r
            for r in range(s.size)
            if s.is_regular(r) and indptr[r + 1] > indptr[r] and t.id_of_bytes(s.token_bytes[r]) is None
        ]
    )


def scale_trick_payload(projection: Projection) -> dict:
    """A top-4 file with the reference tools' measured leak on every non-exact row.

    Non-exact rows become `[t1, LEAK, t2, LEAK]` (or `[t, LEAK, -1, LEAK]`) with weights
    `[.715·w1, .143, .715·w2, .143]` from their two heaviest real entries; every other row is copied
    (exact and special rows stay one-hot). Stored in bfloat16, like the reference output.
    """
    m = projection.matrix
    v_s = m.shape[0]
    rows = np.repeat(np.arange(v_s), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # per row: heaviest first
    rows, cols, weights = rows[order], m.indices[order].astype(np.int64), m.data[order].astype(np.float64)
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    leaky = np.zeros(v_s, dtype=bool)
    leaky[non_exact_rows(projection)] = True

    indices, likelihoods = np.full((v_s, 4), -1, dtype=np.int64), np.zeros((v_s, 4))
    copied = ~leaky[rows]
    indices[rows[copied], rank[copied]] = cols[copied]
    likelihoods[rows[copied], rank[copied]] = weights[copied]
    top = leaky[rows] & (rank < 2)
    top_mass = np.bincount(rows[top], weights=weights[top], minlength=v_s)
    slot = np.where(rank[top] == 0, 0, 2)
    indices[rows[top], slot] = cols[top]
    likelihoods[rows[top], slot] = weights[top] / top_mass[rows[top]] * (1 - 2 * LEAK_WEIGHT)
    indices[leaky, 1] = indices[leaky, 3] = LEAK_ID
    likelihoods[leaky, 1] = likelihoods[leaky, 3] = LEAK_WEIGHT
    return {
        "indices": torch.from_numpy(indices),
        "likelihoods": torch.from_numpy(likelihoods).to(torch.bfloat16),
        "student_model_id": "meta-llama/Llama-3.2-1B",
        "teacher_model_id": "Qwen/Qwen3-4B",
        "enable_scale_trick": True,
    }


# --- export and import ------------------------------------------------------------------------


def test_export_then_import_round_trips_exactly(clean_file: Path) -> None:
    imported, summary = import_reference(clean_file, vocab(STUDENT), vocab(TEACHER))
    assert same_matrix(imported, built())
    assert imported.shape == built().shape
    assert set(imported.rules.tolist()) == {RULE_CODES.index("imported")}
    assert imported.config is None and imported.history[0]["action"] == "import"
    assert summary.duplicate_entries_summed == 0 and summary.rows_renormalised == 0
    assert summary.padding_rows_dropped == 0
    assert summary.student_model_id == built().student.source
    assert summary.teacher_model_id == built().teacher.source
    assert summary.enable_scale_trick is False


def test_exported_file_has_the_reference_layout(clean_file: Path) -> None:
    payload = read(clean_file)
    indices, likelihoods = payload["indices"], payload["likelihoods"]
    per_row = np.diff(built().matrix.indptr)
    k = int(per_row.max())
    assert indices.dtype == torch.int64 and tuple(indices.shape) == (vocab(STUDENT).size, k)
    assert tuple(likelihoods.shape) == tuple(indices.shape) and likelihoods.dtype == torch.float32
    filled_slots = (indices >= 0).sum(dim=1).numpy()
    assert np.array_equal(filled_slots, per_row)  # every entry once, the rest -1
    assert torch.equal(indices == -1, likelihoods == 0)
    assert torch.all(indices < vocab(TEACHER).size)
    teacher = vocab(TEACHER)
    row = indices[row_201()].tolist()
    assert row == [teacher.id_of_bytes(b"2"), teacher.id_of_bytes(b"0"), teacher.id_of_bytes(b"1"), -1][:k]
    assert likelihoods[row_201()].tolist() == sorted(likelihoods[row_201()].tolist(), reverse=True)


@pytest.mark.slow
def test_student_rows_pads_and_import_drops_the_padding(clean_file: Path, tmp_path: Path) -> None:
    v_s, extra = vocab(STUDENT).size, 256
    path = export_reference(built(), tmp_path / "padded.pt", student_rows=v_s + extra)
    payload = read(path)
    assert payload["indices"].shape[0] == v_s + extra
    assert torch.all(payload["indices"][v_s:] == -1) and torch.all(payload["likelihoods"][v_s:] == 0)
    assert torch.equal(payload["indices"][:v_s], read(clean_file)["indices"])
    imported, summary = import_reference(path, vocab(STUDENT), vocab(TEACHER))
    assert summary.padding_rows_dropped == extra and summary.padding_mass_dropped == 0
    assert same_matrix(imported, built())


def test_padding_rows_with_the_empty_row_signature_are_dropped(clean_file: Path, tmp_path: Path) -> None:
    """Reference padding rows (config vocab > tokenizer) read `[30,-1,-1,30]`/`[.5,0,0,.5]`; their mass is reported."""
    payload, extra = read(clean_file), 16
    pad_indices = torch.full((extra, payload["indices"].shape[1]), -1, dtype=torch.int64)
    pad_likelihoods = torch.zeros((extra, payload["indices"].shape[1]))
    pad_indices[:, 0] = pad_indices[:, -1] = 30
    pad_likelihoods[:, 0] = pad_likelihoods[:, -1] = 0.5
    payload["indices"] = torch.cat([payload["indices"], pad_indices])
    payload["likelihoods"] = torch.cat([payload["likelihoods"], pad_likelihoods])
    imported, summary = import_reference(write(tmp_path / "W.pt", payload), vocab(STUDENT), vocab(TEACHER))
    assert summary.padding_rows_dropped == extra and summary.padding_mass_dropped == pytest.approx(extra)
    assert same_matrix(imported, built())


def test_export_refuses_fewer_student_rows_than_the_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="smaller than the student vocabulary"):
        export_reference(built(), tmp_path / "W.pt", student_rows=vocab(STUDENT).size - 1)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bfloat16_export_imports_with_rows_renormalised(tmp_path: Path) -> None:
    path = export_reference(built(), tmp_path / "bf16.pt", bf16=True)
    assert read(path)["likelihoods"].dtype == torch.bfloat16
    imported, summary = import_reference(path, vocab(STUDENT), vocab(TEACHER))
    assert summary.dtype == "bfloat16" and summary.rows_renormalised > 0
    filled = np.diff(imported.matrix.indptr) > 0
    assert np.all(np.abs(imported.row_sums()[filled] - 1) <= 1e-6)
    original = built().matrix
    assert np.array_equal(imported.matrix.indptr, original.indptr)
    assert np.array_equal(imported.matrix.indices, original.indices)
    assert np.allclose(imported.matrix.data, original.data, rtol=1e-2, atol=1e-4)


def test_legacy_model_id_keys_are_read(clean_file: Path, tmp_path: Path) -> None:
    payload = read(clean_file)
    payload["model_A_id"], payload["model_B_id"] = payload.pop("student_model_id"), payload.pop("teacher_model_id")
    _, summary = import_reference(write(tmp_path / "W.pt", payload), vocab(STUDENT), vocab(TEACHER))
    assert (summary.student_model_id, summary.teacher_model_id) == ("demo:llama3", "demo:qwen3")


def test_summary_is_recorded_in_history_and_saves_as_json(clean_file: Path, tmp_path: Path) -> None:
    """A value a foreign file records as a tensor is kept as text: the summary and the W still save."""
    from xtoken_align.formats import load_projection, save_projection

    payload = read(clean_file)
    payload["enable_scale_trick"] = torch.tensor(False)
    imported, summary = import_reference(write(tmp_path / "W.pt", payload), vocab(STUDENT), vocab(TEACHER))
    assert summary.enable_scale_trick == str(torch.tensor(False)) and summary.entries == built().matrix.nnz
    assert json.loads(summary.model_dump_json())["file"] == str(tmp_path / "W.pt")
    record = load_projection(save_projection(imported, tmp_path / "W.safetensors")).history[0]
    assert record == {"action": "import", **summary.model_dump(exclude={"output", "entries"})}


def test_zero_weight_slots_may_hold_any_teacher_id(clean_file: Path, tmp_path: Path) -> None:
    """The reference step 1 leaves arbitrary ids on zero-likelihood slots; they carry nothing and are ignored."""
    payload = read(clean_file)
    empty = payload["indices"] == -1
    payload["indices"][empty] = vocab(TEACHER).size + 7
    imported, _ = import_reference(write(tmp_path / "W.pt", payload), vocab(STUDENT), vocab(TEACHER))
    assert same_matrix(imported, built())


# --- the scale-trick leak ---------------------------------------------------------------------


def test_scale_trick_file_imports_and_its_leak_is_measured(tmp_path: Path) -> None:
    payload = scale_trick_payload(built())
    leaky = non_exact_rows(built())
    assert payload["indices"][leaky[0]].tolist()[1::2] == [LEAK_ID, LEAK_ID]  # the signature, as built
    imported, summary = import_reference(write(tmp_path / "trick.pt", payload), vocab(STUDENT), vocab(TEACHER))
    assert summary.enable_scale_trick is True
    assert summary.duplicate_entries_summed >= len(leaky)  # LEAK_ID twice per leaky row
    assert summary.rows_renormalised > 0
    assert imported.row_sums()[leaky] == pytest.approx(1, abs=1e-6)

    report = off_piece_mass(imported, vocab(STUDENT), vocab(TEACHER))
    assert 0.95 * len(leaky) <= report.rows_with_off_piece_mass <= len(leaky)
    assert 0.2 <= report.mean_of_non_exact_rows <= 0.35
    receivers = {r.teacher_id: r for r in report.top_receivers}
    assert LEAK_ID in receivers and receivers[LEAK_ID].rows >= 0.95 * len(leaky)
    assert receivers[LEAK_ID].piece == vocab(TEACHER).pieces[LEAK_ID]


def test_clean_w_has_no_off_piece_mass(clean_file: Path) -> None:
    imported, _ = import_reference(clean_file, vocab(STUDENT), vocab(TEACHER))
    report = off_piece_mass(imported, vocab(STUDENT), vocab(TEACHER))
    assert report.rows_checked > 100_000
    assert report.rows_with_off_piece_mass == 0 and report.total_off_piece_mass == 0
    assert report.top_receivers == []


# --- refused input ----------------------------------------------------------------------------


def damaged(clean_file: Path, tmp_path: Path, edit) -> Path:
    """A copy of the clean payload after `edit(payload)`, saved with torch.save."""
    payload = read(clean_file)
    edit(payload)
    return write(tmp_path / "damaged.pt", payload)


def _set(key: str, slot: int, value: float):
    """An edit setting one slot of the `201` row."""

    def edit(payload: dict) -> None:
        payload[key][row_201(), slot] = value

    return edit


def _cut_likelihoods(payload: dict) -> None:
    payload["likelihoods"] = payload["likelihoods"][:, :2]


def _flatten(payload: dict) -> None:
    payload["indices"], payload["likelihoods"] = payload["indices"].reshape(-1), payload["likelihoods"].reshape(-1)


def _halve_row(payload: dict) -> None:
    payload["likelihoods"][row_201()] *= 0.5


def _weigh_empty_slot(payload: dict) -> None:
    row = payload["likelihoods"][row_201()]
    empty = int((payload["indices"][row_201()] == -1).nonzero()[0])
    row[empty] = 0.1
    row /= row.sum()  # the row still sums to 1: only the -1 slot is wrong


def _drop_last_row(payload: dict) -> None:
    payload["indices"], payload["likelihoods"] = payload["indices"][:-1], payload["likelihoods"][:-1]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_cut_likelihoods, r"'likelihoods' \(128256, 2\) must both be \[V_S, K\]"),
        (_flatten, r"must both be \[V_S, K\]"),
        (_set("likelihoods", 0, float("nan")), "1 likelihoods are NaN or infinite"),
        (_set("likelihoods", 0, float("inf")), "1 likelihoods are NaN or infinite"),
        (_set("likelihoods", 0, -0.5), "1 likelihoods are negative"),
        (_halve_row, r"1 rows do not sum to 1 \(first: row \d+ sums to 0\.5000\)"),
        (_set("indices", 0, 151_669), r"teacher ids outside 0\.\.151668 carry weight"),
        (_set("indices", 0, -5), r"teacher ids outside 0\.\.151668"),
        (_weigh_empty_slot, r"empty slots \(-1\) carry weight"),
        (_drop_last_row, "128,255 rows, fewer than the student's 128,256 tokens"),
        (lambda p: p.update(indices=p["indices"].tolist()), "must be tensors"),
        (lambda p: p.pop("likelihoods"), "expected a dict with 'indices' and 'likelihoods'"),
    ],
    ids=[
        "shapes-differ", "one-dimensional", "nan", "inf", "negative", "row-sums-to-half", "teacher-id-too-large",
        "id-below-minus-one", "weighted-empty-slot", "too-few-rows", "list-not-tensor", "no-likelihoods",
    ],
)  # fmt: skip
def test_malformed_payload_is_refused_with_a_message(clean_file: Path, tmp_path: Path, edit, message: str) -> None:
    path = damaged(clean_file, tmp_path, edit)
    with pytest.raises(XTokenError, match=message):
        import_reference(path, vocab(STUDENT), vocab(TEACHER))


def test_truncated_file_is_refused(clean_file: Path, tmp_path: Path) -> None:
    data = clean_file.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(XTokenError, match="not a readable PyTorch/reference W file"):
        import_reference(path, vocab(STUDENT), vocab(TEACHER))


def test_list_instead_of_dict_is_refused(clean_file: Path, tmp_path: Path) -> None:
    payload = read(clean_file)
    path = write(tmp_path / "list.pt", [payload["indices"], payload["likelihoods"]])
    with pytest.raises(XTokenError, match="expected a dict"):
        import_reference(path, vocab(STUDENT), vocab(TEACHER))


def test_foreign_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    """weights_only loading: an arbitrary object in the pickle is an error, not code execution."""
    path = write(tmp_path / "foreign.pt", {"indices": torch.zeros(2, 2), "likelihoods": Path("/")})
    with pytest.raises(XTokenError, match="not a readable PyTorch/reference W file"):
        import_reference(path, vocab(STUDENT), vocab(TEACHER))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="no such file"):
        import_reference(tmp_path / "absent.pt", vocab(STUDENT), vocab(TEACHER))


def with_ids(clean_file: Path, tmp_path: Path, student_id: object, teacher_id: object) -> Path:
    payload = read(clean_file)
    payload["student_model_id"], payload["teacher_model_id"] = student_id, teacher_id
    return write(tmp_path / "ids.pt", payload)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (("demo:llama2", f"demo:{TEACHER}"), f"made for student demo:llama2, not --student demo:{STUDENT}"),
        ((f"demo:{STUDENT}", "demo:o200k"), f"made for teacher demo:o200k, not --teacher demo:{TEACHER}"),
        ((f"demo:{TEACHER}", f"demo:{STUDENT}"), "--student and --teacher are swapped"),
    ],
)
def test_file_recorded_for_other_tokenizers_is_refused(clean_file: Path, tmp_path: Path, ids, message: str) -> None:
    with pytest.raises(XTokenError, match=message):
        import_reference(with_ids(clean_file, tmp_path, *ids), vocab(STUDENT), vocab(TEACHER))


@pytest.mark.parametrize(
    "ids",
    [
        ("meta-llama/Llama-3.2-1B", "Qwen/Qwen3-0.6B"),  # hub ids against demo names: nothing to compare
        (None, None),  # nothing recorded
        ("/not/on/this/machine/tokenizer.json", f"demo:{TEACHER}"),
    ],
)
def test_model_ids_that_cannot_be_compared_pass(clean_file: Path, tmp_path: Path, ids) -> None:
    projection, summary = import_reference(with_ids(clean_file, tmp_path, *ids), vocab(STUDENT), vocab(TEACHER))
    assert same_matrix(projection, built()) and summary.student_model_id == ids[0]


def test_recorded_demo_with_the_same_vocabulary_passes(tmp_path: Path) -> None:
    """llama2 and mistral-v1 are one canonical vocabulary under two names: ids compare by fingerprint."""
    path = export_reference(build_projection(vocab("llama2"), vocab("mistral-v1"), progress=False), tmp_path / "W.pt")
    projection, _ = import_reference(path, vocab("mistral-v1"), vocab("llama2"))
    assert projection.shape == (32_000, 32_000)


def test_hub_ids_must_match(clean_file: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    student = replace(vocab(STUDENT), source="meta-llama/Llama-3.2-1B")
    path = with_ids(clean_file, tmp_path, "hf:Meta-Llama/Llama-3.2-1B", f"demo:{TEACHER}")
    assert import_reference(path, student, vocab(TEACHER))[0].shape == built().shape  # hub ids ignore case
    path = with_ids(clean_file, tmp_path, "meta-llama/Llama-3.1-8B", f"demo:{TEACHER}")
    with pytest.raises(XTokenError, match="give --student meta-llama/Llama-3.1-8B"):
        import_reference(path, student, vocab(TEACHER))
