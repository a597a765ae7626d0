"""Durability of edits against the real server process: SIGKILL right after (and during) acknowledged edits,
then a restart on the same workspace must show every acknowledged edit, intact versions and history, a
consistent database and no partial W files. Also: two tabs editing one row cannot overwrite each other.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import vocab
from web_fixtures import Server

from xtoken_align.formats import load_projection

pytestmark = pytest.mark.slow

TEACHER = "mistral-v1"
ROWS = f"/api/teachers/{TEACHER}/rows"


@pytest.fixture
def serve(servers) -> Callable[[Path], Server]:
    """Start `serve` (llama2 student, mistral-v1 teacher) on a workspace; wait until /api/meta answers."""
    return lambda workspace: servers(workspace, "--student", "demo:llama2", "--teacher", "demo:mistral-v1")


def put(client: httpx.Client, sid: int, entries: list[tuple[int, float]], version: int, note: str) -> httpx.Response:
    body = {"entries": [{"teacher_id": t, "weight": w} for t, w in entries], "version": version, "note": note}
    return client.put(f"{ROWS}/{sid}", json=body)


def pairs(row: list[dict]) -> list[tuple[int, float]]:
    return [(e["teacher_id"], round(e["weight"], 6)) for e in row]


def detail(client: httpx.Client, sid: int) -> dict:
    response = client.get(f"/api/tokens/student/{sid}", params={"teacher": TEACHER})
    assert response.status_code == 200, response.text
    return response.json()


def run_threads(target: Callable[[int], None], firsts: tuple[int, ...]) -> None:
    """Run `target(first)` in one thread per value; re-raise the first error any of them hit."""
    errors: list[BaseException] = []

    def guarded(first: int) -> None:
        try:
            target(first)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(first,)) for first in firsts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def check_workspace_files(folder: Path) -> None:
    """Nothing half-written: no temporary files, every W file whole and matching its sidecar."""
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    assert {"workspace.json", f"W-{TEACHER}.safetensors", f"W-{TEACHER}.json", "edits.sqlite"} <= set(names)
    assert set(names) <= {"workspace.json", f"W-{TEACHER}.safetensors", f"W-{TEACHER}.json", "edits.sqlite",
                          "edits.sqlite-wal", "edits.sqlite-shm"}  # fmt: skip
    assert load_projection(folder / f"W-{TEACHER}.safetensors").shape == (32000, 32000)


def check_database(folder: Path, history_rows: int, edited_rows: int) -> None:
    with sqlite3.connect(folder / "edits.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM history WHERE teacher = ?", (TEACHER,)).fetchone()[0] == history_rows
        assert db.execute("SELECT count(*) FROM rows WHERE teacher = ?", (TEACHER,)).fetchone()[0] == edited_rows
    db.close()


def test_acknowledged_edits_survive_sigkill(serve, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    server = serve(workspace)
    acked: dict[int, tuple[int, list[tuple[int, float]]]] = {}  # student id -> (version, row) as acknowledged
    notes: list[str] = []
    lock = threading.Lock()

    def record(response: httpx.Response, note: str) -> None:
        assert response.status_code == 200, response.text
        body = response.json()
        with lock:
            acked[body["student_id"]] = (body["version"], pairs(body["row"]))
            notes.append(note)

    with httpx.Client(base_url=server.url, timeout=30) as client:
        for sid in range(1000, 1010):  # sequential: every row twice (the first edit differs from the base row)
            record(put(client, sid, [(sid + 1, 1.0)], 0, f"s{sid}a"), f"s{sid}a")
            record(put(client, sid, [(sid, 3.0), (sid + 1, 1.0)], 1, f"s{sid}b"), f"s{sid}b")
        record(put(client, 0, [], 0, "unk has no row"), "unk has no row")
        undone = client.post(f"/api/teachers/{TEACHER}/undo")
        assert undone.status_code == 200 and undone.json()["student_id"] == 0
        redone = client.post(f"/api/teachers/{TEACHER}/redo")
        assert redone.status_code == 200 and redone.json()["version"] == 3
        acked[0] = (3, [])
        row_undo = client.post(f"/api/teachers/{TEACHER}/rows/1005/undo", json={"version": 2})
        assert row_undo.status_code == 200 and row_undo.json()["version"] == 3, row_undo.text
        acked[1005] = (3, pairs(row_undo.json()["row"]))  # back to its first edit: one row undone, durably
        assert pairs(row_undo.json()["row"]) == [(1006, 1.0)]
        stale = client.post(f"/api/teachers/{TEACHER}/rows/1005/redo", json={"version": 2})
        assert stale.status_code == 409

    def tight_loop(first_row: int) -> None:  # 40 edits over this thread's own 4 rows, as fast as the server acks
        with httpx.Client(base_url=server.url, timeout=30) as client:
            versions = dict.fromkeys(range(first_row, first_row + 4), 0)
            for n in range(40):
                sid = first_row + n % 4
                note = f"t{sid}/{n}"
                response = put(client, sid, [(n + 100, 1.0), (sid, float(n + 1))], versions[sid], note)
                record(response, note)
                versions[sid] = response.json()["version"]

    run_threads(tight_loop, (2000, 3000))
    assert len(notes) == 21 + 80

    with httpx.Client(base_url=server.url, timeout=30) as client:
        last = put(client, 4000, [(7, 1.0)], 0, "the last one")
        server.kill()  # immediately after the 200
    record(last, "the last one")

    check_workspace_files(workspace)
    check_database(workspace, history_rows=len(notes), edited_rows=len(acked))

    server = serve(workspace)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for sid, (version, row) in acked.items():
            shown = detail(client, sid)
            assert (shown["version"], pairs(shown["row"])) == (version, row), sid
        history = client.get(f"/api/teachers/{TEACHER}/history", params={"limit": 500}).json()
        assert history["count"] == len(notes)
        assert sorted(h["note"] for h in history["data"]) == sorted(notes)
        assert {h["note"] for h in history["data"] if h["state"] != "done"} == {"s1005b"}
        ids = [h["id"] for h in history["data"]]
        assert ids == list(range(len(notes), 0, -1))  # no gap, newest first
        for sid in (2000, 3003):  # per row, the history is the chain of acknowledged edits
            chain = [h for h in reversed(history["data"]) if h["student_id"] == sid]
            assert len(chain) == 10
            assert all(a["after"] == b["before"] for a, b in zip(chain, chain[1:], strict=False))
            assert pairs(chain[-1]["after"]) == acked[sid][1]
        # the restarted server keeps editing from the recovered versions
        assert put(client, 4000, [(8, 1.0)], 1, "after restart").json()["version"] == 2
        assert put(client, 4000, [(9, 1.0)], 1, "stale after restart").status_code == 409
    server.kill()
    check_database(workspace, history_rows=len(notes) + 1, edited_rows=len(acked))


def test_sigkill_during_concurrent_edits_loses_nothing_acknowledged(serve, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    server = serve(workspace)
    acked: dict[int, tuple[int, list[tuple[int, float]]]] = {}
    in_flight: dict[int, list[tuple[int, float]]] = {}  # the last request of a row that may have no answer
    lock = threading.Lock()

    def edit_until_killed(first_row: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            versions = dict.fromkeys(range(first_row, first_row + 3), 0)
            for n in range(100_000):
                sid = first_row + n % 3
                entries = [(n % 30_000, 1.0)]
                with lock:
                    in_flight[sid] = [(n % 30_000, 1.0)]
                try:
                    response = put(client, sid, entries, versions[sid], f"{sid}/{n}")
                except httpx.HTTPError:
                    return  # the server is gone
                assert response.status_code == 200, response.text
                versions[sid] = response.json()["version"]
                with lock:
                    acked[sid] = (versions[sid], pairs(response.json()["row"]))

    def kill_when_busy() -> None:  # SIGKILL once the threads have made some progress (or after 60 s)
        deadline = time.monotonic() + 60
        while (len(acked) < 6 or sum(v for v, _ in acked.values()) < 60) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        run_threads(edit_until_killed, (500, 600))
    finally:
        killer.join()
    assert len(acked) == 6 and sum(v for v, _ in acked.values()) >= 60

    check_workspace_files(workspace)
    server = serve(workspace)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        total = 0
        for sid, (version, row) in acked.items():
            shown = detail(client, sid)
            if shown["version"] == version:
                assert pairs(shown["row"]) == row
            else:  # the request in flight at the kill was committed, just not acknowledged
                assert shown["version"] == version + 1 and pairs(shown["row"]) == in_flight[sid]
            total += shown["version"]
        history = client.get(f"/api/teachers/{TEACHER}/history", params={"limit": 500}).json()
        assert history["count"] == min(total, 500)
    server.kill()
    check_database(workspace, history_rows=total, edited_rows=len(acked))


def test_two_tabs_cannot_overwrite_each_other(serve, tmp_path: Path) -> None:
    server = serve(tmp_path / "workspace")
    sid = 1234
    with httpx.Client(base_url=server.url, timeout=30) as tab_a, httpx.Client(base_url=server.url, timeout=30) as tab_b:
        seen_a, seen_b = detail(tab_a, sid), detail(tab_b, sid)
        assert seen_a["version"] == seen_b["version"] == 0
        first = put(tab_a, sid, [(11, 1.0)], seen_a["version"], "tab A")
        assert first.status_code == 200 and first.json()["version"] == 1

        second = put(tab_b, sid, [(22, 1.0)], seen_b["version"], "tab B, from a stale view")
        assert second.status_code == 409
        assert second.json()["row"] == first.json()  # tab B is shown what tab A wrote
        assert pairs(detail(tab_b, sid)["row"]) == [(11, 1.0)]
        notes = [h["note"] for h in tab_b.get(f"/api/teachers/{TEACHER}/history").json()["data"]]
        assert notes == ["tab A"]

        retry = put(tab_b, sid, [(22, 1.0)], second.json()["row"]["version"], "tab B, after reloading")
        assert retry.status_code == 200 and retry.json()["version"] == 2
        assert put(tab_a, sid, [(33, 1.0)], 1, "tab A again, stale").status_code == 409
        assert pairs(detail(tab_a, sid)["row"]) == [(22, 1.0)]
    server.kill()


def test_bulk_edits_undo_and_rebuilds_survive_sigkill(servers, tmp_path: Path) -> None:
    """SIGKILL right after each acknowledged bulk edit, undo of it, and rebuild: the restart shows each.
    Llama-2 student, Llama-3 teacher: thousands of multi-piece rows to act on."""
    workspace = tmp_path / "workspace"
    teacher = "llama3"
    word = vocab("llama2").pieces.index("▁the")  # an exact row: a multitoken rebuild leaves it alone

    def serve(folder: Path) -> Server:
        return servers(folder, "--student", "demo:llama2", "--teacher", "demo:llama3")

    def row(client: httpx.Client, sid: int) -> dict:
        return client.get(f"/api/tokens/student/{sid}", params={"teacher": teacher}).json()

    selection = {"matched": False, "rule": "multitoken"}
    first_piece = {"kind": "leading", "beta": 1.0, "gamma": 0.0}
    server = serve(workspace)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = {"selection": selection, "action": first_piece, "dry_run": False}
        applied = client.post(f"/api/teachers/{teacher}/bulk", json=body)
        assert applied.status_code == 200, applied.text
    server.kill()  # immediately after the 200
    applied = applied.json()
    assert applied["changed"] > 100
    sample = {r["student_id"]: (pairs(r["before"]), pairs(r["after"])) for r in applied["sample"]}

    server = serve(workspace)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert all(pairs(row(client, sid)["row"]) == after for sid, (_, after) in sample.items())
        history = client.get(f"/api/teachers/{teacher}/history", params={"limit": 500}).json()["data"]
        assert {h["op"] for h in history} == {applied["operation"]}
        undone = client.post(f"/api/teachers/{teacher}/undo")
        assert undone.status_code == 200 and undone.json()["rows"] == applied["changed"]
    server.kill()

    server = serve(workspace)
    config = {"rules": [{"name": "special"}, {"name": "exact"}, {"name": "digits"}, {"name": "bytes"},
                        {"name": "multitoken", "beta": 1.0, "gamma": 0.0}]}  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=120) as client:
        assert all(pairs(row(client, sid)["row"]) == before for sid, (before, _) in sample.items())
        body = {"entries": [{"teacher_id": 1001, "weight": 1.0}], "version": 0, "note": "kept over the rebuild"}
        kept = client.put(f"/api/teachers/{teacher}/rows/{word}", json=body)
        assert kept.status_code == 200, kept.text
        rebuilt = client.post(f"/api/teachers/{teacher}/rebuild", json={"config": config, "dry_run": False})
        assert rebuilt.status_code == 200, rebuilt.text
    server.kill()
    assert rebuilt.json()["generation"] == 1

    server = serve(workspace)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        rules = client.get(f"/api/teachers/{teacher}/rules").json()
        assert len(rules["rebuilds"]) == 1 and rules["config"]["rules"][-1] == {"name": "multitoken", "beta": 1.0,
                                                                               "gamma": 0.0}  # fmt: skip
        assert all(pairs(row(client, sid)["row"]) == after for sid, (_, after) in sample.items())  # new rules
        assert pairs(row(client, word)["row"]) == [(1001, 1.0)]  # the hand edit carried over
    server.kill()
    names = sorted(p.name for p in workspace.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    assert load_projection(workspace / f"W-{teacher}.g1.safetensors").config.rule("multitoken").gamma == 0.0
    with sqlite3.connect(workspace / "edits.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
