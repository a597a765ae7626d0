"""GET /api/teachers/{teacher}/export/{format} (webapp/routes/export.py): the current W (base + edits) as a
safetensors zip, a NeMo/TRL .pt and CSV/Parquet tables, read back with the library and checked entry by entry.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import vocab
from web_fixtures import LLAMA3, MISTRAL, STUDENT, client_for, copy_workspace, download, pid, put_row

from xtoken_align.formats import load_projection


@pytest.fixture(scope="module")
def edited_client(web_workspace, tmp_path_factory):
    """A workspace with two edits on llama3 (one undone and redone) and none on mistral-v1."""
    workspace = copy_workspace(web_workspace, tmp_path_factory.mktemp("exports") / "workspace")
    client = client_for(workspace)
    sid = pid(vocab("llama2"), "▁Hello")
    assert put_row(client, sid, [(10, 2), (11, 1), (12, 1)], 0, "export me").status_code == 200
    # <unk>'s base row is empty: emptying it takes a real edit first (a save that changes nothing is not journalled)
    assert put_row(client, 0, [(0, 1)], 0, "unk for a moment").status_code == 200
    assert put_row(client, 0, [], 1, "unk maps nowhere").status_code == 200
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert client.post(f"/api/teachers/{LLAMA3}/redo").status_code == 200
    return client, sid


def test_export_safetensors_zip(edited_client, tmp_path: Path) -> None:
    client, sid = edited_client
    response = download(client, "safetensors")
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="W-llama2-llama3.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["W-llama2-llama3.json", "W-llama2-llama3.safetensors"]
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-llama3.safetensors", vocab("llama2"), vocab("llama3"))
    assert [(c, round(w, 6), r) for c, w, r, _ in projection.row(sid)] == [
        (10, 0.5, "edit"), (11, 0.25, "edit"), (12, 0.25, "edit"),
    ]  # fmt: skip
    assert projection.row(0) == []
    edits = [h for h in projection.history if h.get("action") == "edit"]
    assert [(h["student_id"], h["note"]) for h in edits] == [
        (sid, "export me"),
        (0, "unk for a moment"),
        (0, "unk maps nowhere"),
    ]
    assert [e[0] for e in edits[0]["after"]] == [10, 11, 12]
    sidecar = json.loads((tmp_path / "W-llama2-llama3.json").read_text(encoding="utf-8"))
    assert sidecar["history"] == projection.history


def test_export_of_an_unedited_teacher_is_its_base_w(edited_client, web_workspace, tmp_path: Path) -> None:
    client, sid = edited_client
    with zipfile.ZipFile(io.BytesIO(download(client, "safetensors", MISTRAL).content)) as archive:
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-mistral-v1.safetensors")
    base = web_workspace.teacher(MISTRAL).base
    assert (projection.matrix != base.matrix).nnz == 0
    assert not [h for h in projection.history if h.get("action") == "edit"]


def test_export_nemo_pt(edited_client, tmp_path: Path) -> None:
    import torch  # installed by the project's set-up (the distill extra)

    client, sid = edited_client
    response = download(client, "nemo")
    path = tmp_path / "W.pt"
    path.write_bytes(response.content)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    indices, likelihoods = payload["indices"], payload["likelihoods"]
    assert indices.shape == likelihoods.shape and indices.shape[0] == vocab("llama2").size
    assert indices[sid, :3].tolist() == [10, 11, 12] and (indices[sid, 3:] == -1).all()
    assert likelihoods[sid, :3].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert (indices[0] == -1).all()
    assert payload["student_model_id"] == STUDENT and payload["teacher_model_id"] == "demo:llama3"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_tables(edited_client, fmt: str) -> None:
    client, sid = edited_client
    response = download(client, fmt)
    table = pl.read_csv(io.BytesIO(response.content)) if fmt == "csv" else pl.read_parquet(io.BytesIO(response.content))
    row = table.filter(pl.col("student_id") == sid).sort("rank")
    assert row["teacher_id"].to_list() == [10, 11, 12]
    assert row["weight"].to_list() == pytest.approx([0.5, 0.25, 0.25])
    assert row["rule"].to_list() == ["edit"] * 3
    assert row["student_piece"].to_list() == ["▁Hello"] * 3
    assert table.filter(pl.col("student_id") == 0).height == 0
    sums = table.group_by("student_id").agg(pl.col("weight").sum())["weight"].to_numpy()
    assert np.allclose(sums, 1.0, atol=1e-5)


def test_export_bad_format_or_teacher(edited_client) -> None:
    client, _ = edited_client
    assert client.get(f"/api/teachers/{LLAMA3}/export/xlsx").status_code == 422
    assert client.get("/api/teachers/gpt2/export/csv").status_code == 404
