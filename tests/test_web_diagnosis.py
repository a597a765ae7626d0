"""GET /api/diagnosis (webapp/routes/diagnosis.py): the uncommon-token audit of the current W, edits included,
and how long the workspace keeps it (`Workspace.derived`: until an edit, undo or redo changes W).

Runs on fresh copies of the cheap workspace (llama2 student; llama3 and mistral-v1 teachers) without the
corpus (`corpus_texts=0`) except where the corpus is the point.
"""

from __future__ import annotations

import json

import pytest
from conftest import vocab
from web_fixtures import LLAMA3, MISTRAL, TEACHER_KEYS, client_for, pid, put_row

from xtoken_align.diagnose import diagnose


def diagnosis(client, **params) -> dict:
    response = client.get("/api/diagnosis", params={"corpus_texts": 0, **params})
    assert response.status_code == 200, response.text
    return response.json()


def common(report: dict, key: str, category: str) -> int:
    """Student tokens of `category` that W maps onto their identical teacher token (teacher `key`)."""
    (entry,) = [t for t in report["teachers"] if t["teacher"]["name"] == key]
    return entry["categories"][category]["common"]


def test_diagnosis_of_every_teacher_is_the_library_report(web_client, web_workspace) -> None:
    shown = diagnosis(web_client)
    assert set(shown) == {"report", "figures"} and shown["figures"]
    report = shown["report"]
    assert report["student"]["name"] == "llama2"
    assert [t["teacher"]["name"] for t in report["teachers"]] == list(TEACHER_KEYS)
    assert all(t["corpus"] is None for t in report["teachers"])
    teachers = [(vocab(key), web_workspace.teacher(key).base) for key in TEACHER_KEYS]
    assert report == json.loads(diagnose(vocab("llama2"), teachers, None).model_dump_json())


def test_diagnosis_follows_edits_undo_and_redo(fresh_workspace) -> None:
    client = client_for(fresh_workspace())
    sid = pid(vocab("llama2"), "▁Hello")  # maps one-hot onto llama3's 'ĠHello': common
    first = diagnosis(client)["report"]
    latin = common(first, LLAMA3, "letters:latin")
    assert put_row(client, sid, [(10, 1)], 0, "no longer common").status_code == 200
    edited = diagnosis(client)["report"]
    assert common(edited, LLAMA3, "letters:latin") == latin - 1
    assert edited["teachers"][1] == first["teachers"][1]  # mistral-v1's W has no edit
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert diagnosis(client)["report"] == first
    assert client.post(f"/api/teachers/{LLAMA3}/redo").status_code == 200
    assert diagnosis(client)["report"] == edited


def test_diagnosis_is_kept_until_w_changes(fresh_workspace) -> None:
    workspace = fresh_workspace()
    client = client_for(workspace)
    computed: list[int] = []

    def compute() -> int:
        computed.append(workspace.revision)
        return len(computed)

    assert [workspace.derived("diagnosis", 0, compute) for _ in range(3)] == [1, 1, 1]
    assert workspace.derived("diagnosis", 500, compute) == 2  # other parameters: computed again
    assert workspace.derived("other", 500, compute) == 3  # one value per name, each kept on its own
    assert workspace.derived("diagnosis", 500, compute) == 2
    assert put_row(client, 5, [(10, 1)], 1, "stale").status_code == 409  # refused edits change nothing
    assert put_row(client, 5, [(10, -1)], 0, "invalid").status_code == 422
    assert client.post(f"/api/teachers/{LLAMA3}/redo").status_code == 409
    assert workspace.derived("diagnosis", 500, compute) == 2
    for change in (
        lambda: put_row(client, 5, [(10, 1)], 0, "edit"),
        lambda: client.post(f"/api/teachers/{LLAMA3}/undo"),
        lambda: client.post(f"/api/teachers/{LLAMA3}/redo"),
        lambda: put_row(client, 5, [(11, 1)], 0, "edit on another teacher", teacher=MISTRAL),
    ):
        so_far = len(computed)
        assert change().status_code == 200
        assert workspace.derived("diagnosis", 500, compute) == so_far + 1 == len(computed)
        assert workspace.derived("diagnosis", 500, compute) == so_far + 1
    assert computed == [0, 0, 0, 1, 2, 3, 4]  # the revision each value was computed at


def test_route_answers_from_the_workspace(web_client, web_workspace) -> None:
    first = diagnosis(web_client)
    kept = web_workspace.derived("diagnosis", 0, lambda: pytest.fail("computed again"))
    assert json.loads(kept.model_dump_json()) == first and diagnosis(web_client) == first


def test_corpus_measurements(web_client) -> None:
    report = diagnosis(web_client, corpus_texts=3)["report"]
    assert all(t["corpus"]["texts"] == 3 for t in report["teachers"])
    assert all(t["corpus"]["name"] == "GSM8K test, first 3" for t in report["teachers"])
    assert web_client.get("/api/diagnosis", params={"corpus_texts": -1}).status_code == 422
    assert web_client.get("/api/diagnosis", params={"corpus_texts": 10_001}).status_code == 422
