"""EditStore (webapp/store.py): versions, optimistic concurrency, undo/redo, history, reopening, isolation."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

from webapp.store import EditStore, StaleVersion

T1, T2 = "qwen3", "phi4"
BASE_5 = [(18, 1.0, "exact", 1.0)]
ROW_A = [(18, 0.75, "digits", 0.9), (19, 0.25, "edit", 1.0)]
ROW_B = [(7, 1.0, "edit", 2.0)]
ROW_C = [(3, 0.1, "edit", 0.1), (4, 0.2, "edit", 0.2), (5, 0.7, "edit", 0.7)]  # floats that must round-trip exactly


@pytest.fixture
def store(tmp_path: Path):
    opened = EditStore(tmp_path / "edits.sqlite")
    yield opened
    opened.close()


def test_set_row_increments_versions_per_row(store: EditStore) -> None:
    first = store.set_row(T1, 5, 0, BASE_5, ROW_A, "first")
    second = store.set_row(T1, 5, 1, ROW_A, ROW_B, "second")
    other = store.set_row(T1, 9, 0, [], ROW_C, "")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert (first.student_id, second.student_id, other.student_id) == (5, 5, 9)
    assert first.history_id < second.history_id < other.history_id
    assert second.entries == ROW_B
    assert store.version(T1, 5) == 2 and store.version(T1, 9) == 1 and store.version(T1, 10) == 0
    assert store.rows(T1) == {5: (2, ROW_B), 9: (1, ROW_C)}


@pytest.mark.parametrize("expected", [0, 2, 17])
def test_stale_version_is_refused_with_the_current_version(store: EditStore, expected: int) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "")
    with pytest.raises(StaleVersion) as raised:
        store.set_row(T1, 5, expected, BASE_5, ROW_B, "stale")
    assert raised.value.version == 1
    assert "version 1" in str(raised.value)
    assert store.rows(T1) == {5: (1, ROW_A)}
    assert [h["note"] for h in store.history(T1)] == [""]  # the refused write left no history


def test_a_row_never_edited_is_at_version_zero(store: EditStore) -> None:
    with pytest.raises(StaleVersion) as raised:
        store.set_row(T1, 5, 1, BASE_5, ROW_A, "")
    assert raised.value.version == 0
    assert store.rows(T1) == {}


def test_undo_restores_before_and_redo_reapplies(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "a")
    store.set_row(T1, 5, 1, ROW_A, ROW_B, "b")
    store.set_row(T1, 9, 0, [], ROW_C, "c")

    (undone,) = store.undo(T1)  # the newest edit first
    assert (undone.student_id, undone.version, undone.entries) == (9, 2, [])
    (undone,) = store.undo(T1)
    assert (undone.student_id, undone.version, undone.entries) == (5, 3, ROW_A)
    assert store.rows(T1) == {5: (3, ROW_A), 9: (2, [])}
    assert [h["state"] for h in store.history(T1)] == ["undone", "undone", "done"]

    (redone,) = store.redo(T1)  # the oldest undone edit first
    assert (redone.student_id, redone.version, redone.entries) == (5, 4, ROW_B)
    (redone,) = store.redo(T1)
    assert (redone.student_id, redone.version, redone.entries) == (9, 3, ROW_C)
    assert store.redo(T1) == []
    assert store.rows(T1) == {5: (4, ROW_B), 9: (3, ROW_C)}
    assert [h["state"] for h in store.history(T1)] == ["done", "done", "done"]


def test_undo_back_to_the_start_then_nothing(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "")
    assert store.undo(T1)[0].entries == BASE_5
    assert store.undo(T1) == []
    assert store.rows(T1) == {5: (2, BASE_5)}


def test_a_new_edit_after_undo_drops_the_redo_entries(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "a")
    store.set_row(T1, 5, 1, ROW_A, ROW_B, "b")
    store.undo(T1)
    store.undo(T1)
    assert store.rows(T1) == {5: (4, BASE_5)}
    with pytest.raises(StaleVersion):  # the undo moved the row's version on
        store.set_row(T1, 5, 2, BASE_5, ROW_C, "c")
    change = store.set_row(T1, 5, 4, BASE_5, ROW_C, "c")
    assert change.version == 5
    assert store.redo(T1) == []
    history = store.history(T1)
    assert [(h["note"], h["state"]) for h in history] == [("c", "done"), ("b", "dropped"), ("a", "dropped")]
    assert store.undo(T1)[0].entries == BASE_5  # undo now steps over the dropped entries
    assert store.undo(T1) == []


def test_history_order_and_content(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "first note")
    store.set_row(T1, 9, 0, [], ROW_C, "")
    store.set_row(T1, 5, 1, ROW_A, ROW_B, "third: ünïcødé <b>")
    history = store.history(T1)
    assert [h["student_id"] for h in history] == [5, 9, 5]  # newest first
    assert [h["id"] for h in history] == sorted((h["id"] for h in history), reverse=True)
    newest, middle, oldest = history
    assert (oldest["before"], oldest["after"], oldest["note"]) == (BASE_5, ROW_A, "first note")
    assert (middle["before"], middle["after"]) == ([], ROW_C)
    assert (newest["before"], newest["after"], newest["note"]) == (ROW_A, ROW_B, "third: ünïcødé <b>")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h["at"]) for h in history)
    assert all(h["state"] == "done" for h in history)
    assert [h["student_id"] for h in store.history(T1, limit=2)] == [5, 9]


def test_a_reopened_store_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "edits.sqlite"
    first = EditStore(path)
    first.set_row(T1, 5, 0, BASE_5, ROW_A, "a")
    first.set_row(T1, 5, 1, ROW_A, ROW_B, "b")
    first.set_row(T1, 9, 0, [], ROW_C, "c")
    first.undo(T1)
    first.set_row(T2, 5, 0, BASE_5, ROW_C, "other teacher")
    rows, history = {t: first.rows(t) for t in (T1, T2)}, {t: first.history(t) for t in (T1, T2)}
    first.close()

    again = EditStore(path)
    assert {t: again.rows(t) for t in (T1, T2)} == rows
    assert {t: again.history(t) for t in (T1, T2)} == history
    assert again.integrity() == "ok"
    assert again.redo(T1)[0].entries == ROW_C  # the undone edit is still redo-able after reopening
    assert again.set_row(T1, 5, 2, ROW_B, ROW_A, "d").version == 3
    again.close()


def test_two_connections_see_each_others_versions(tmp_path: Path) -> None:
    """Two stores on one file (two server processes by mistake): a stale write is still refused."""
    path = tmp_path / "edits.sqlite"
    tab_a, tab_b = EditStore(path), EditStore(path)
    tab_a.set_row(T1, 5, 0, BASE_5, ROW_A, "a")
    with pytest.raises(StaleVersion) as raised:
        tab_b.set_row(T1, 5, 0, BASE_5, ROW_B, "b")
    assert raised.value.version == 1
    assert tab_b.rows(T1) == {5: (1, ROW_A)}
    tab_a.close()
    tab_b.close()


def test_store_uses_wal_and_full_sync(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "")
    assert store.integrity() == "ok"
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_teachers_are_isolated(store: EditStore) -> None:
    store.set_row(T1, 5, 0, BASE_5, ROW_A, "t1")
    store.set_row(T2, 5, 0, BASE_5, ROW_B, "t2")  # same student id, its own version
    assert store.rows(T1) == {5: (1, ROW_A)} and store.rows(T2) == {5: (1, ROW_B)}
    assert [h["note"] for h in store.history(T1)] == ["t1"]
    assert [h["note"] for h in store.history(T2)] == ["t2"]

    store.undo(T1)
    assert store.rows(T2) == {5: (1, ROW_B)}
    store.set_row(T2, 6, 0, [], ROW_C, "")  # a new edit of T2 does not drop T1's redo entry
    assert store.redo(T1)[0].entries == ROW_A
    assert store.undo("nobody") == [] and store.rows("nobody") == {} and store.history("nobody") == []


def test_concurrent_writers_on_different_rows(store: EditStore) -> None:
    errors: list[BaseException] = []

    def edit_many(student_id: int) -> None:
        try:
            for version in range(25):
                store.set_row(T1, student_id, version, [], [(version, 1.0, "edit", 1.0)], f"{student_id}/{version}")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=edit_many, args=(sid,)) for sid in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.rows(T1) == {sid: (25, [(24, 1.0, "edit", 1.0)]) for sid in (1, 2, 3)}
    history = store.history(T1, limit=1000)
    assert len(history) == 75
    for sid in (1, 2, 3):
        notes = [h["note"] for h in reversed(history) if h["student_id"] == sid]
        assert notes == [f"{sid}/{v}" for v in range(25)]
    assert store.integrity() == "ok"


def test_a_database_from_before_operations_opens_and_steps(tmp_path) -> None:
    """Databases written before bulk edits (no `op` column) gain it on open; old entries are their own operation."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE rows (teacher TEXT NOT NULL, student_id INTEGER NOT NULL, version INTEGER NOT NULL, "
        "entries TEXT NOT NULL, PRIMARY KEY (teacher, student_id));"
        "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, teacher TEXT NOT NULL, "
        "student_id INTEGER NOT NULL, at TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', before TEXT NOT NULL, "
        "after TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('done', 'undone', 'dropped')));"
        """INSERT INTO rows VALUES ('t1', 5, 1, '[[1, 1.0, "edit", 1.0]]');"""
        """INSERT INTO history (teacher, student_id, at, before, after, state)
           VALUES ('t1', 5, '2026-01-01T00:00:00Z', '[]', '[[1, 1.0, "edit", 1.0]]', 'done');"""
    )
    old.commit()
    old.close()
    store = EditStore(path)
    assert store.history("t1")[0]["op"] == 1
    store.set_rows("t1", [(6, 0, [], ROW_A), (7, 0, [], ROW_B)], "two at once")
    (undone_a, undone_b) = store.undo("t1")  # the two-row operation, whole
    assert {undone_a.student_id, undone_b.student_id} == {6, 7}
    assert [c.student_id for c in store.undo("t1")] == [5]
