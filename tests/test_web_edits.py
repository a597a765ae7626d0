"""Row edits (webapp/routes/edits.py) through FastAPI's TestClient: PUT with normalisation and optimistic
concurrency, what it refuses, undo, redo, history, and how an edit shows in search, detail and the pair view.

Editing tests run on fresh copies of the cheap workspace (llama2 student; llama3 and mistral-v1 teachers).
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import vocab
from web_fixtures import (
    LLAMA3,
    MISTRAL,
    client_for,
    copy_workspace,
    detail,
    download,
    every_page,
    open_workspace,
    page,
    pid,
    put_row,
)

from xtoken_align.formats import load_projection


def test_put_normalises_and_drops_zero_weights(fresh_client) -> None:
    teacher = vocab("llama3")
    sid = pid(vocab("llama2"), "▁Hello")
    response = put_row(fresh_client, sid, [(10, 2), (11, 1), (12, 1), (13, 0)], version=0, note="spread")
    assert response.status_code == 200, response.text
    row = response.json()
    assert (row["student_id"], row["version"]) == (sid, 1)
    assert [(e["teacher_id"], e["weight"], e["rule"]) for e in row["row"]] == [
        (10, 0.5, "edit"), (11, 0.25, "edit"), (12, 0.25, "edit"),
    ]  # fmt: skip
    assert [e["piece"] for e in row["row"]] == [teacher.pieces[t] for t in (10, 11, 12)]
    shown = detail(fresh_client, sid)
    assert (shown["version"], shown["row"]) == (1, row["row"])


def test_put_keeps_provenance_of_unchanged_entries(fresh_client, web_workspace) -> None:
    sid = pid(vocab("llama2"), "▁nederbörd")
    base = web_workspace.teacher(LLAMA3).base.row(sid)
    assert len(base) >= 2
    entries = [(c, w * 7) for c, w, _, _ in base]  # the same row, scaled: normalises back to the same weights
    row = put_row(fresh_client, sid, entries, version=0).json()["row"]
    assert [(e["teacher_id"], e["rule"]) for e in row] == [(c, r) for c, _, r, _ in base]
    assert [e["weight"] for e in row] == pytest.approx([w for _, w, _, _ in base], abs=1e-6)


@pytest.fixture(scope="module")
def rejecting_client(web_workspace, tmp_path_factory):
    """One editable workspace for the edits that must be refused (each test checks that none was stored)."""
    return client_for(copy_workspace(web_workspace, tmp_path_factory.mktemp("rejects") / "workspace"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"entries":[{"teacher_id":10,"weight":NaN}],"version":0}', "weight nan"),
        ('{"entries":[{"teacher_id":10,"weight":Infinity}],"version":0}', "weight inf"),
        ('{"entries":[{"teacher_id":10,"weight":1e400}],"version":0}', "finite"),
        ('{"entries":[{"teacher_id":10,"weight":-1}],"version":0}', "weight -1"),
        ('{"entries":[{"teacher_id":10,"weight":1000001}],"version":0}', "1e+06"),
        ('{"entries":[{"teacher_id":10,"weight":1},{"teacher_id":10,"weight":2}],"version":0}', "appears twice"),
        ('{"entries":[{"teacher_id":128256,"weight":1}],"version":0}', "teacher id 128256 is outside 0..128255"),
        ('{"entries":[{"teacher_id":-1,"weight":1}],"version":0}', "teacher id -1 is outside"),
        ('{"entries":[],"version":0}', "at least one entry"),
        ('{"entries":[{"teacher_id":10,"weight":0}],"version":0}', "at least one entry"),
        ('{"entries":[{"teacher_id":10,"weight":"heavy"}],"version":0}', "weight"),
        ('{"entries":[{"teacher_id":10,"weight":1}],"version":-1}', "version"),
        ('{"entries":[{"teacher_id":10,"weight":1}]}', "version"),
        ('{"entries":[{"teacher_id":10,"weight":1}],"version":0,"note":' + json.dumps("n" * 2001) + "}", "note"),
        (json.dumps({"entries": [{"teacher_id": i, "weight": 1} for i in range(65)], "version": 0}), "entries"),
        ("{not json", "json"),
    ],
)
def test_invalid_edits_are_422_and_change_nothing(rejecting_client, body: str, message: str) -> None:
    client = rejecting_client
    sid = pid(vocab("llama2"), "▁Hello")
    before = detail(client, sid)
    response = client.put(
        f"/api/teachers/{LLAMA3}/rows/{sid}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert message.lower() in json.dumps(response.json()["detail"]).lower()
    assert detail(client, sid) == before
    assert client.get(f"/api/teachers/{LLAMA3}/history").json()["count"] == 0


def test_edits_never_leave_zero_weight_entries(fresh_client, tmp_path: Path) -> None:
    underflow = fresh_client.put(
        f"/api/teachers/{LLAMA3}/rows/1001",
        content='{"entries":[{"teacher_id":1,"weight":1e6},{"teacher_id":2,"weight":5e-324}],"version":0}',
        headers={"content-type": "application/json"},
    )
    tiny = put_row(fresh_client, 1000, [(1, 1.0), (2, 1e-50)], 0)
    for response in (underflow, tiny):
        if response.status_code == 200:
            assert all(e["weight"] > 0 for e in response.json()["row"]), response.text
    with zipfile.ZipFile(io.BytesIO(download(fresh_client, "safetensors").content)) as archive:
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-llama3.safetensors")
    assert (projection.matrix.data > 0).all()


@pytest.mark.parametrize("sid", [32000, -1, 10**20])
def test_edit_of_an_unknown_student_id_is_422(fresh_client, sid: int) -> None:
    response = put_row(fresh_client, sid, [(10, 1)], version=0)
    assert response.status_code == 422 and f"student id {sid} is outside 0..31999" in response.json()["detail"]


def test_edit_of_an_unknown_teacher_is_404(fresh_client) -> None:
    assert put_row(fresh_client, 5, [(10, 1)], version=0, teacher="gpt2").status_code == 404


def test_special_token_may_have_an_empty_row(fresh_client) -> None:
    response = put_row(fresh_client, 0, [], version=0, note="unk maps nowhere")  # <unk> never appears in text
    assert response.status_code == 200 and response.json()["row"] == []
    assert detail(fresh_client, 0)["row"] == []
    if detail(fresh_client, 0)["version"] == 0:  # the base row was empty already: a no-op, not journalled
        assert response.json()["changed"] is False


def test_stale_version_is_409_with_the_current_row(fresh_client) -> None:
    sid = pid(vocab("llama2"), "▁the")
    first = put_row(fresh_client, sid, [(10, 1)], version=0).json()
    stale = put_row(fresh_client, sid, [(11, 1)], version=0)
    assert stale.status_code == 409
    body = stale.json()
    assert "version 1" in body["detail"] and body["row"] == first
    assert put_row(fresh_client, sid, [(11, 1)], version=5).status_code == 409
    assert detail(fresh_client, sid)["row"] == first["row"]
    assert put_row(fresh_client, sid, [(11, 1)], version=1).json()["version"] == 2


def test_undo_redo_and_history(fresh_client, web_workspace) -> None:
    student = vocab("llama2")
    a, b = pid(student, "▁Hello"), pid(student, "▁world")
    base_a = detail(fresh_client, a)["row"]
    put_row(fresh_client, a, [(10, 1)], 0, "a1")
    put_row(fresh_client, a, [(11, 3), (12, 1)], 1, "a2")
    put_row(fresh_client, b, [(13, 1)], 0, "b1")

    history = fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()
    assert history["count"] == 3
    assert [(h["student_id"], h["note"], h["state"]) for h in history["data"]] == [
        (b, "b1", "done"), (a, "a2", "done"), (a, "a1", "done"),
    ]  # fmt: skip
    assert history["data"][2]["before"] == base_a
    assert [e["teacher_id"] for e in history["data"][1]["before"]] == [10]
    assert [(e["teacher_id"], e["weight"]) for e in history["data"][1]["after"]] == [(11, 0.75), (12, 0.25)]

    undone = fresh_client.post(f"/api/teachers/{LLAMA3}/undo").json()
    assert (undone["student_id"], undone["version"]) == (b, 2)
    assert detail(fresh_client, b)["row"] == detail(client_for(web_workspace), b)["row"]  # back to the base row
    undone = fresh_client.post(f"/api/teachers/{LLAMA3}/undo").json()
    assert (undone["student_id"], undone["version"], [e["teacher_id"] for e in undone["row"]]) == (a, 3, [10])
    assert detail(fresh_client, a)["version"] == 3

    redone = fresh_client.post(f"/api/teachers/{LLAMA3}/redo").json()
    assert (redone["student_id"], [e["teacher_id"] for e in redone["row"]]) == (a, [11, 12])
    undone = fresh_client.post(f"/api/teachers/{LLAMA3}/rows/{a}/undo", json={"version": 4}).json()
    assert undone["version"] == 5  # a2 undone again, for row a alone
    put_row(fresh_client, a, [(14, 1)], 5, "a3")  # drops a's own redo entry (a2), not b's (b1)
    redone = fresh_client.post(f"/api/teachers/{LLAMA3}/redo").json()
    assert (redone["student_id"], [e["teacher_id"] for e in redone["row"]]) == (b, [13])  # b1 is still redo-able
    nothing = fresh_client.post(f"/api/teachers/{LLAMA3}/redo")
    assert nothing.status_code == 409 and "redo" in nothing.json()["detail"]
    states = {h["note"]: h["state"] for h in fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()["data"]}
    assert states == {"a3": "done", "b1": "done", "a2": "dropped", "a1": "done"}
    limited = fresh_client.get(f"/api/teachers/{LLAMA3}/history", params={"limit": 2}).json()
    assert [h["note"] for h in limited["data"]] == ["a3", "b1"]
    assert fresh_client.get(f"/api/teachers/{LLAMA3}/history", params={"limit": 501}).status_code == 422


def test_teachers_have_separate_rows_and_histories(fresh_client, web_workspace) -> None:
    sid = pid(vocab("llama2"), "▁Hello")
    on_mistral = detail(fresh_client, sid, MISTRAL)
    put_row(fresh_client, sid, [(10, 1)], 0)
    assert detail(fresh_client, sid, MISTRAL) == on_mistral
    assert fresh_client.post(f"/api/teachers/{MISTRAL}/undo").status_code == 409
    assert fresh_client.get(f"/api/teachers/{MISTRAL}/history").json() == {"data": [], "count": 0}
    assert put_row(fresh_client, sid, [(20, 1)], 0, teacher=MISTRAL).json()["version"] == 1


def test_edits_show_in_search_detail_columns_and_pair_view(fresh_client) -> None:
    student, teacher = vocab("llama2"), vocab("llama3")
    sid, tid = pid(student, "▁Hello"), pid(teacher, "Hello")
    column_before = fresh_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3}).json()["column"]
    assert sid not in {e["student_id"] for e in column_before}
    degree_before = page(fresh_client, "teacher", q="Hello", limit=500)["data"]
    degree_before = next(t["degree"] for t in degree_before if t["id"] == tid)

    put_row(fresh_client, sid, [(tid, 3), (pid(teacher, "ĠHello"), 1)], 0, "capitalised")
    edited = page(fresh_client, rule="edit")
    assert [t["id"] for t in edited["data"]] == [sid] and edited["count"] == 1
    assert edited["data"][0]["degree"] == 2 and edited["data"][0]["matched"] is False
    assert page(fresh_client, rule="edit", teacher=MISTRAL)["count"] == 0
    assert sid in [t["id"] for t in every_page(fresh_client, degree=2)]

    column = fresh_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3}).json()["column"]
    assert next(e for e in column if e["student_id"] == sid)["weight"] == 0.75
    after = next(t for t in page(fresh_client, "teacher", q="Hello", limit=500)["data"] if t["id"] == tid)
    assert after["degree"] == degree_before + 1

    view = fresh_client.post("/api/pair", json={"text": "Hello", "teacher": LLAMA3}).json()
    (token,) = [t for t in view["student"] if t["id"] == sid]
    assert [(e["teacher_id"], e["weight"]) for e in token["row"]] == [(tid, 0.75), (pid(teacher, "ĠHello"), 0.25)]


@pytest.mark.slow
def test_teacher_column_while_rows_are_edited(fresh_workspace) -> None:
    workspace = fresh_workspace()
    workspace.store.close()
    with sqlite3.connect(workspace.store.path) as db:  # 1,000 edited rows pointing at teacher token 10
        row = json.dumps([[10, 0.5, "edit", 1.0], [11, 0.5, "edit", 1.0]])
        db.executemany("INSERT INTO rows VALUES (?, ?, 1, ?)", [(LLAMA3, sid, row) for sid in range(3000, 4000)])
    workspace = open_workspace(workspace.folder)
    state = workspace.teacher(LLAMA3)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_column() -> None:  # what the route does on every GET of teacher token 10
        while not stop.is_set():
            try:
                assert len(state.column(10)) >= 1000
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

    reader = threading.Thread(target=read_column)
    reader.start()
    try:
        for sid in range(5000, 5300):  # what PUT /api/teachers/llama3/rows/{sid} does
            workspace.edit(LLAMA3, sid, 0, [(10, 1.0)], "")
            if errors:
                break
    finally:
        stop.set()
        reader.join()
    assert errors == []


def test_only_the_changed_entry_is_marked_edit(fresh_client, web_workspace) -> None:
    sid = pid(vocab("llama2"), "▁nederbörd")
    base = web_workspace.teacher(LLAMA3).base.row(sid)
    entries = [(c, 0.5 if i == 0 else w) for i, (c, w, _, _) in enumerate(base)]  # the others exactly as stored
    row = put_row(fresh_client, sid, entries, version=0).json()["row"]
    rules = {e["teacher_id"]: (e["rule"], e["score"]) for e in row}
    assert rules[base[0].teacher][0] == "edit"
    assert [rules[c] for c, _, _, _ in base[1:]] == [(r, s) for _, _, r, s in base[1:]]
    assert sum(e["weight"] for e in row) == pytest.approx(1.0)


def test_a_save_that_changes_nothing_is_not_journalled(fresh_client) -> None:
    sid = pid(vocab("llama2"), "▁Hello")
    shown = detail(fresh_client, sid)
    same = put_row(fresh_client, sid, [(e["teacher_id"], e["weight"]) for e in shown["row"]], version=0)
    assert same.status_code == 200 and same.json()["version"] == 0 and same.json()["changed"] is False
    assert same.json()["row"] == shown["row"]
    assert fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()["count"] == 0
    edited = put_row(fresh_client, sid, [(10, 1)], version=0).json()
    again = put_row(fresh_client, sid, [(10, 3)], version=1).json()  # normalises to the same row
    assert (edited["changed"], again["changed"], again["version"]) == (True, False, 1)
    assert fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()["count"] == 1
    assert put_row(fresh_client, sid, [(10, 1)], version=0).status_code == 409  # a stale no-op is still stale


def row_step(client, sid: int, action: str, version: int):
    return client.post(f"/api/teachers/{LLAMA3}/rows/{sid}/{action}", json={"version": version})


def test_row_undo_and_redo_touch_only_that_row(fresh_client, web_workspace) -> None:
    student = vocab("llama2")
    a, b = pid(student, "▁Hello"), pid(student, "▁world")
    base_a = detail(fresh_client, a)["row"]
    put_row(fresh_client, a, [(10, 1)], 0, "a1")
    put_row(fresh_client, b, [(13, 1)], 0, "b1")  # the teacher's latest edit is b's
    undone = row_step(fresh_client, a, "undo", 1)
    assert undone.status_code == 200, undone.text
    assert (undone.json()["student_id"], undone.json()["version"], undone.json()["row"]) == (a, 2, base_a)
    assert [e["teacher_id"] for e in detail(fresh_client, b)["row"]] == [13]  # b's edit is intact
    states = {h["note"]: h["state"] for h in fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()["data"]}
    assert states == {"a1": "undone", "b1": "done"}
    nothing = row_step(fresh_client, a, "undo", 2)
    assert nothing.status_code == 409 and "nothing to undo" in nothing.json()["detail"]
    stale = row_step(fresh_client, a, "redo", 1)
    assert stale.status_code == 409 and stale.json()["row"]["version"] == 2
    redone = row_step(fresh_client, a, "redo", 2).json()
    assert (redone["version"], [e["teacher_id"] for e in redone["row"]]) == (3, [10])
    assert row_step(fresh_client, a, "redo", 3).status_code == 409
    assert row_step(fresh_client, 32000, "undo", 0).status_code == 422
    assert row_step(fresh_client, a, "undo", -1).status_code == 422
    assert fresh_client.post(f"/api/teachers/gpt2/rows/{a}/undo", json={"version": 0}).status_code == 404
