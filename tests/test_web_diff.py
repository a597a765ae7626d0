"""GET /api/teachers/{teacher}/diff (webapp/routes/diff.py) and `serve --compare NAME=PATH`."""

from __future__ import annotations

import pytest
from conftest import vocab
from fastapi.testclient import TestClient
from web_fixtures import LLAMA3, MISTRAL, STUDENT, TEACHERS, client_for, detail, put_row

from webapp.app import create_app
from webapp.cli import main
from webapp.settings import Settings
from xtoken_align.edits import apply_rows
from xtoken_align.errors import XTokenError
from xtoken_align.formats import save_projection
from xtoken_align.projection import RowEntry, build_projection


@pytest.fixture
def compared(fresh_workspace, tmp_path) -> tuple[TestClient, int]:
    """A client whose workspace compares llama3's W with a copy that has one row edited."""
    workspace = fresh_workspace()
    base = workspace.export(LLAMA3)
    sid = workspace.student.pieces.index("▁the")
    edited = apply_rows(base, {sid: [RowEntry(0, 0.5, "edit", 1.0), RowEntry(1, 0.5, "edit", 1.0)]})
    path = save_projection(edited, tmp_path / "edited.safetensors")
    workspace.add_compare("edited", str(path))
    return client_for(workspace), sid


def test_diff_of_the_workspace_against_a_compare_w(compared) -> None:
    client, sid = compared
    meta = client.get("/api/meta").json()
    assert [(c["name"], c["teacher"]) for c in meta["compare"]] == [("edited", LLAMA3)]
    response = client.get(f"/api/teachers/{LLAMA3}/diff", params={"other": "edited"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows_changed"], report["mass_moved"]) == (1, 1.0)
    assert report["a"] == "workspace" and report["b"].startswith("edited (")
    assert report["categories"][report["top"][0]["student"]["category"]]["rows_changed"] == 1
    row = report["top"][0]
    assert row["student"]["id"] == sid and [e["teacher_id"] for e in row["b"]] == [0, 1]
    assert [e["weight"] for e in row["a"]] == [e["weight"] for e in detail(client, sid)["row"]]

    # An edit in the workspace shows in the next diff: the edited row now matches, another one moved.
    other = vocab("llama2").pieces.index("▁and")
    assert put_row(client, sid, [(0, 1.0), (1, 1.0)], 0).status_code == 200
    assert put_row(client, other, [(5, 1.0)], 0).status_code == 200
    report = client.get(f"/api/teachers/{LLAMA3}/diff", params={"other": "edited", "top": 5}).json()
    assert report["rows_changed"] == 1 and [r["student"]["id"] for r in report["top"]] == [other]


def test_unknown_names_are_404(compared) -> None:
    client, _ = compared
    unknown = client.get(f"/api/teachers/{LLAMA3}/diff", params={"other": "nope"})
    assert unknown.status_code == 404 and "edited" in unknown.json()["detail"]
    assert client.get(f"/api/teachers/{MISTRAL}/diff", params={"other": "edited"}).status_code == 404
    assert client.get("/api/teachers/nobody/diff", params={"other": "edited"}).status_code == 404
    assert client.get(f"/api/teachers/{LLAMA3}/diff").status_code == 422  # `other` is required
    assert client.get(f"/api/teachers/{LLAMA3}/diff", params={"other": "edited", "top": -1}).status_code == 422


def test_compare_ws_of_other_tokenizers_are_refused_at_start(web_workspace, tmp_path) -> None:
    other_student = build_projection(vocab("llama3"), vocab("mistral-v1"), progress=False)
    path = save_projection(other_student, tmp_path / "other.safetensors")
    settings = Settings(web_workspace.folder, STUDENT, TEACHERS, compare=(("other", str(path)),))
    workspace = web_workspace
    with pytest.raises(XTokenError, match="--compare other=.*student tokenizer llama2 has 32,000 tokens"):
        create_app(settings, workspace=workspace)
    assert workspace.compares == {}


def test_compare_for_a_teacher_the_workspace_lacks(fresh_workspace, tmp_path) -> None:
    workspace = fresh_workspace()
    path = save_projection(
        build_projection(vocab("llama2"), vocab("qwen3"), progress=False), tmp_path / "q.safetensors"
    )
    with pytest.raises(XTokenError, match="teacher qwen3, which this workspace does not have"):
        workspace.add_compare("q", str(path))
    with pytest.raises(XTokenError, match="no such W file"):
        workspace.add_compare("q", str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("spec", ["nameonly", "=W.safetensors", "bad name=W.safetensors", "x="])
def test_malformed_compare_is_one_usage_line(spec: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--demo", "--compare", spec])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xtoken-align: error: serve: argument --compare")
