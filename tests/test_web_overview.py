"""GET /api/overview (webapp/routes/overview.py): every teacher's current W at a glance, the numbers of the
library's own reports (diagnose's audit, score's corpus agreement) for the same W, recomputed after an edit.

Runs on the cheap workspace (llama2 student; llama3 and mistral-v1 teachers), on a few corpus texts.
"""

from __future__ import annotations

import pytest
from conftest import vocab
from web_fixtures import LLAMA3, MISTRAL, TEACHER_KEYS, client_for, pid, put_row

from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.diagnose import DEFAULT_CRITICAL, diagnose
from xtoken_align.score import corpus_agreement


def overview(client, **params) -> dict:
    response = client.get("/api/overview", params={"corpus_texts": 3, **params})
    assert response.status_code == 200, response.text
    return response.json()


def library_numbers(workspace, key: str, texts: list[str]) -> tuple[dict, float, float, str]:
    """Per category (total, common, covered, severity), agreement@1, mass@1 and recommendation: the library's."""
    projection = workspace.export(key)
    report = diagnose(workspace.student, [(workspace.teacher(key).vocab, projection)], None)
    (entry,) = report.teachers
    categories = {k: (c.total, c.common, c.covered, c.severity) for k, c in entry.categories.items()}
    agreement = corpus_agreement(projection, workspace.student, workspace.teacher(key).vocab, texts)
    return categories, agreement.agreement_at_1, agreement.mass, entry.recommendation


def shown_numbers(teacher: dict) -> tuple[dict, float, float, str]:
    categories = {k: (c["total"], c["common"], c["covered"], c["severity"]) for k, c in teacher["categories"].items()}
    return categories, teacher["agreement_at_1"], teacher["mass_at_1"], teacher["recommendation"]


def test_overview_is_the_library_reports_of_every_teacher(fresh_workspace) -> None:
    workspace = fresh_workspace()
    client = client_for(workspace)
    shown = overview(client)
    assert shown["student"] == "llama2" and shown["corpus"] == "GSM8K test, first 3" and shown["corpus_texts"] == 3
    assert shown["critical"] == [c for c in DEFAULT_CRITICAL if c in shown["categories"]] != []
    assert [t["key"] for t in shown["teachers"]] == list(TEACHER_KEYS)
    texts = read_corpus(default_corpus(), limit=3)
    for teacher in shown["teachers"]:
        assert shown_numbers(teacher) == library_numbers(workspace, teacher["key"], texts)
        assert list(teacher["categories"]) == shown["categories"]
        assert list(teacher["critical"]) == [c for c in shown["categories"] if c in shown["critical"]]
        assert teacher["covered"] == sum(c["covered"] for c in teacher["categories"].values())
        assert teacher["edits"] == teacher["rows_edited"] == 0
        for c in teacher["categories"].values():
            assert c["common_share"] == pytest.approx(c["common"] / c["total"], abs=1e-4)


def test_overview_follows_edits_and_undo(fresh_workspace) -> None:
    workspace = fresh_workspace()
    client = client_for(workspace)
    sid = pid(vocab("llama2"), "▁Hello")  # maps one-hot onto llama3's 'ĠHello': common
    first = overview(client)
    assert put_row(client, sid, [(10, 1)], 0, "no longer common").status_code == 200
    assert put_row(client, sid, [(11, 1)], 1, "again").status_code == 200
    edited = overview(client)
    llama3, mistral = edited["teachers"]
    assert (llama3["edits"], llama3["rows_edited"]) == (2, 1)
    latin = first["teachers"][0]["categories"]["letters:latin"]["common"]
    assert llama3["categories"]["letters:latin"]["common"] == latin - 1
    texts = read_corpus(default_corpus(), limit=3)
    assert shown_numbers(llama3) == library_numbers(workspace, LLAMA3, texts)
    assert mistral == first["teachers"][1] and mistral["key"] == MISTRAL
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert overview(client) == first


def test_overview_is_kept_until_w_changes(fresh_workspace) -> None:
    workspace = fresh_workspace()
    client = client_for(workspace)
    first = overview(client, corpus_texts=0)
    assert all(t["agreement_at_1"] is None and t["mass_at_1"] is None for t in first["teachers"])
    assert first["corpus"] == "" and first["corpus_texts"] == 0
    kept = workspace.derived("overview", 0, lambda: pytest.fail("computed again"))
    assert kept.model_dump() == first


@pytest.mark.parametrize("value", [-1, 2_001, "many"])
def test_bad_corpus_size_is_a_client_error(web_client, value) -> None:
    response = web_client.get("/api/overview", params={"corpus_texts": value})
    assert response.status_code == 422 and "corpus_texts" in response.text
