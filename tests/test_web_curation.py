"""Bulk edits and rebuilds (webapp/curation.py, routes/curation.py) on fresh copies of the demo
workspace (Llama-3 student, Qwen3 teacher): preview, apply, undo and redo as one operation, stale
previews refused, hand edits carried over a rebuild or listed, and all of it after reopening."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import vocab
from web_fixtures import client_for, open_workspace, pid, put_row

from xtoken_align.config import BuildConfig, DigitsRule, FuzzyRule, default_rules
from xtoken_align.projection import build_projection

QWEN3 = "qwen3"
DIGITS3 = {"category": "digits:3", "matched": False}
FIRST_DIGIT = {"kind": "rule", "rule": {"name": "digits", "beta": 1.0, "gamma": 0.0}}


def bulk(client, action, selection=DIGITS3, **body):
    return client.post(f"/api/teachers/{QWEN3}/bulk", json={"selection": selection, "action": action, **body})


def rebuild(client, config, **body):
    return client.post(f"/api/teachers/{QWEN3}/rebuild", json={"config": config, **body})


def teacher_ids(row) -> list[int]:
    return [e["teacher_id"] for e in row]


def row_of(client, sid: int) -> dict:
    return client.get(f"/api/tokens/student/{sid}", params={"teacher": QWEN3}).json()


@pytest.fixture
def demo(fresh_demo):
    workspace = fresh_demo()
    return workspace, client_for(workspace)


def test_preview_on_three_digit_numerals_changes_nothing(demo) -> None:
    workspace, client = demo
    llama3, qwen3 = vocab("llama3"), vocab("qwen3")
    preview = bulk(client, FIRST_DIGIT).json()
    numerals = [llama3.token_bytes[i].decode() for i in range(llama3.size) if llama3.categories[i] == "digits:3"]
    repeated = sum(len(set(n)) == 1 for n in numerals)  # `777`: the pieces sum into one entry already
    assert preview["dry_run"] and preview["selected"] == 1000 and preview["changed"] == 1000 - repeated == 990
    assert len(preview["sample"]) == 20
    for item in preview["sample"]:
        digits = llama3.token_bytes[item["student_id"]].decode()
        assert item["category"] == "digits:3" and len(item["before"]) == len(set(digits)) > 1
        assert teacher_ids(item["after"]) == [qwen3.id_of_bytes(digits[0].encode())]  # the first digit alone
        assert item["after"][0]["weight"] == pytest.approx(1.0)
    assert workspace.store.history(QWEN3) == [] and workspace.store.revision(QWEN3) == preview["revision"] == 0


def test_apply_then_undo_and_redo_the_whole_operation(demo) -> None:
    workspace, client = demo
    preview = bulk(client, FIRST_DIGIT).json()
    applied = bulk(client, FIRST_DIGIT, dry_run=False, revision=preview["revision"]).json()
    assert not applied["dry_run"] and applied["changed"] == 990 and applied["revision"] == 1
    history = workspace.store.history(QWEN3, limit=5000)
    assert len(history) == 990 and {h["op"] for h in history} == {applied["operation"]}
    sid = applied["sample"][0]["student_id"]
    assert len(row_of(client, sid)["row"]) == 1
    listed = client.get("/api/vocab/student", params={"teacher": QWEN3, "category": "digits:3", "degree": 1}).json()
    assert listed["count"] == 1000  # search sees the bulk edit at once

    undone = client.post(f"/api/teachers/{QWEN3}/undo").json()
    assert undone["rows"] == 990
    base = workspace.teacher(QWEN3).base
    assert all(workspace.teacher(QWEN3).row(s)[1] == base.row(s) for s in (sid, applied["sample"][-1]["student_id"]))
    assert {h["state"] for h in workspace.store.history(QWEN3, limit=5000)} == {"undone"}
    redone = client.post(f"/api/teachers/{QWEN3}/redo").json()
    assert redone["rows"] == 990 and len(row_of(client, sid)["row"]) == 1


def test_a_stale_preview_is_refused_and_writes_nothing(demo) -> None:
    workspace, client = demo
    preview = bulk(client, FIRST_DIGIT).json()
    other = pid(vocab("llama3"), "Hello")
    assert put_row(
        client, other, [(vocab("qwen3").id_of_bytes(b"Hello"), 1.0), (100, 1.0)], 0, teacher=QWEN3
    ).is_success
    refused = bulk(client, FIRST_DIGIT, dry_run=False, revision=preview["revision"])
    assert refused.status_code == 409 and refused.json()["revision"] == 1
    assert "preview again" in refused.json()["detail"]
    assert len(workspace.store.history(QWEN3)) == 1  # only the single edit


def test_a_row_undo_inside_a_bulk_operation_leaves_the_other_rows(demo) -> None:
    workspace, client = demo
    applied = bulk(client, FIRST_DIGIT, dry_run=False).json()
    first, second = (item["student_id"] for item in applied["sample"][:2])
    version = row_of(client, first)["version"]
    response = client.post(f"/api/teachers/{QWEN3}/rows/{first}/undo", json={"version": version})
    assert response.status_code == 200, response.text
    assert len(row_of(client, first)["row"]) > 1 and len(row_of(client, second)["row"]) == 1
    # the teacher's undo then takes back the rest of the operation
    assert client.post(f"/api/teachers/{QWEN3}/undo").json()["rows"] == 989


def test_an_adding_rule_equals_building_with_it(demo) -> None:
    """Fuzzy at weight 0.3 on a selection gives those rows what a build with fuzzy gives them."""
    workspace, client = demo
    selection = {"q": "^▁?[A-Z][a-z]+$", "regex": True, "matched": False}
    action = {"kind": "rule", "rule": {"name": "fuzzy", "weight": 0.3}}
    applied = bulk(client, action, selection, dry_run=False).json()
    assert applied["changed"] > 0
    config = BuildConfig(rules=(*default_rules(), FuzzyRule(weight=0.3)))
    built = build_projection(workspace.student, workspace.teacher(QWEN3).vocab, config, progress=False)
    state = workspace.teacher(QWEN3)
    rules = set()
    for item in applied["sample"]:
        got = state.row(item["student_id"])[1]
        want = built.row(item["student_id"])
        assert [e.teacher for e in got] == [e.teacher for e in want]
        assert [e.weight for e in got] == pytest.approx([e.weight for e in want], abs=1e-6)
        rules |= {e.rule for e in got}
    assert "fuzzy" in rules  # (where fuzzy proposes a piece the row has, the sum keeps the larger rule)


def test_reset_clear_and_refusals(demo) -> None:
    workspace, client = demo
    llama3 = vocab("llama3")
    sid = pid(llama3, "Hello")
    put_row(client, sid, [(5, 1.0)], 0, teacher=QWEN3)
    reset = bulk(client, {"kind": "reset"}, {"q": "Hello", "category": llama3.categories[sid]}, dry_run=False).json()
    assert reset["changed"] >= 1 and workspace.teacher(QWEN3).row(sid)[1] == workspace.teacher(QWEN3).base.row(sid)

    cleared = bulk(client, {"kind": "clear"}, {"category": "digits:1"})
    assert cleared.status_code == 422 and "can appear in text" in cleared.json()["detail"]
    corpus = bulk(client, {"kind": "rule", "rule": {"name": "corpus", "corpus": ["/etc/passwd"]}})
    assert corpus.status_code == 422 and "command line" in corpus.json()["detail"]
    unknown = bulk(client, {"kind": "copy", "source": "nothing"})
    assert unknown.status_code == 404
    bad = bulk(client, {"kind": "rule", "rule": {"name": "digits", "gamma": 2}})
    assert bad.status_code == 422
    assert (
        client.post(
            f"/api/teachers/{QWEN3}/bulk", json={"selection": {"regex": True, "q": "("}, "action": {"kind": "reset"}}
        ).status_code
        == 422
    )


def test_rules_and_rebuild_preview(demo) -> None:
    workspace, client = demo
    rules = client.get(f"/api/teachers/{QWEN3}/rules").json()
    assert [r["name"] for r in rules["config"]["rules"]] == [r.name for r in default_rules()]
    assert rules["defaults"]["fuzzy"]["weight"] == FuzzyRule().weight and rules["rebuilds"] == []
    config = rules["config"] | {"rules": [r if r["name"] != "digits" else r | {"beta": 1.0, "gamma": 0.0}
                                          for r in rules["config"]["rules"]]}  # fmt: skip
    preview = rebuild(client, config).json()
    llama3 = vocab("llama3")
    numerals = np.flatnonzero(np.isin(np.asarray(llama3.categories), ["digits:2", "digits:3"]))
    mixed = sum(len(set(llama3.token_bytes[i])) > 1 for i in numerals)  # `77` is one-hot already
    assert preview["dry_run"] and preview["rows_changed"] == mixed == 1080
    before, after = preview["before"], preview["after"]
    assert before["corpus"]["agreement@1"] > 0 and after["corpus"]["categories"]["digits:3"]["mass"] == pytest.approx(
        1.0
    )
    assert before["corpus"]["categories"]["digits:3"]["mass"] < 0.95
    assert workspace.store.bases(QWEN3) == [] and workspace.store.revision(QWEN3) == 0
    refused = rebuild(client, {"rules": [{"name": "digits", "beta": 3}]})
    assert refused.status_code == 422 and "beta" in str(refused.json()["detail"])


def test_rebuild_keeps_a_hand_edit_lists_another_and_survives_reopening(demo) -> None:
    workspace, client = demo
    llama3, qwen3 = vocab("llama3"), vocab("qwen3")
    word, numeral = pid(llama3, "Hello"), pid(llama3, "201")
    put_row(client, word, [(qwen3.id_of_bytes(b"Hello"), 3.0), (100, 1.0)], 0, teacher=QWEN3)
    put_row(client, numeral, [(qwen3.id_of_bytes(b"2"), 1.0), (qwen3.id_of_bytes(b"1"), 1.0)], 0, teacher=QWEN3)
    config = BuildConfig(
        rules=tuple(DigitsRule(beta=1.0, gamma=0.0) if r.name == "digits" else r for r in default_rules())
    )
    preview = rebuild(client, config.model_dump()).json()
    assert preview["edits_kept"] == 1 and [d["student_id"] for d in preview["edits_dropped"]] == [numeral]
    dropped = preview["edits_dropped"][0]
    assert teacher_ids(dropped["now"]) == [qwen3.id_of_bytes(b"2")] and len(dropped["was"]) == 3
    applied = rebuild(client, config.model_dump(), dry_run=False, revision=preview["revision"]).json()
    assert applied["generation"] == 1 and applied["revision"] == 3
    state = workspace.teacher(QWEN3)
    assert [e.weight for e in state.row(word)[1]] == pytest.approx([0.75, 0.25])
    assert teacher_ids(row_of(client, numeral)["row"]) == [qwen3.id_of_bytes(b"2")]
    assert rebuild(client, config.model_dump(), dry_run=False, revision=0).status_code == 409

    workspace.store.close()
    again = open_workspace(workspace.folder, "demo:llama3", ["demo:qwen3"])
    reopened = again.teacher(QWEN3)
    assert reopened.base.config == config and reopened.row(word)[1] == state.row(word)[1]
    assert [e.teacher for e in reopened.row(numeral)[1]] == [qwen3.id_of_bytes(b"2")]
    assert client_for(again).get(f"/api/teachers/{QWEN3}/rules").json()["rebuilds"][0]["dropped"] == 1


def test_undone_edits_follow_the_new_rules(demo) -> None:
    """Rows edited and then undone are back at the old rules' rows: a rebuild neither keeps nor lists them."""
    workspace, client = demo
    applied = bulk(client, FIRST_DIGIT, dry_run=False).json()
    client.post(f"/api/teachers/{QWEN3}/undo")
    config = BuildConfig(
        rules=tuple(DigitsRule(beta=0.5, gamma=0.5) if r.name == "digits" else r for r in default_rules())
    )
    done = rebuild(client, config.model_dump(), dry_run=False).json()
    assert done["edits_kept"] == 0 and done["edits_dropped"] == []
    sid = applied["sample"][0]["student_id"]
    new_base = workspace.teacher(QWEN3).base
    assert workspace.teacher(QWEN3).row(sid)[1] == new_base.row(sid) and new_base.row(sid)[0].weight < 0.6
    assert client.post(f"/api/teachers/{QWEN3}/redo").status_code == 409  # the undone edit went with the rebuild
