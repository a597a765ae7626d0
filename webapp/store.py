"""Edits of W rows, durable in SQLite: current rows, versions, and a linear undo/redo history.

One database per workspace (stdlib sqlite3, WAL, synchronous=FULL): when `set_row` returns, the
edit is on disk and survives a SIGKILL. Each edited row has a version; a write that names a stale
version is refused with the current row (optimistic concurrency, so two browser tabs cannot
silently overwrite each other). History entries are `done`, `undone` (redo-able) or `dropped`
(an undone edit superseded by a new edit, as in any linear undo). Undo and redo step through the
whole teacher's history or, given a student id and its version, through that one row's. A write
that changes nothing is not journalled. Rows are JSON lists of [teacher id, weight, rule, score].
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from xtoken_align.edits import Row
from xtoken_align.projection import RowEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    teacher TEXT NOT NULL,
    student_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (teacher, student_id)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    teacher TEXT NOT NULL,
    student_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('done', 'undone', 'dropped'))
);
CREATE INDEX IF NOT EXISTS history_by_teacher ON history (teacher, state, id);
"""


class StaleVersion(Exception):
    """The row changed since the client read it."""

    def __init__(self, version: int) -> None:
        super().__init__(f"row is at version {version}")
        self.version = version


@dataclass(frozen=True)
class Change:
    """What an edit, undo or redo did (`history_id` 0: a write that changed nothing, not journalled)."""

    student_id: int
    version: int
    entries: Row
    history_id: int


def _dump(row: Row) -> str:
    return json.dumps([list(entry) for entry in row])


def _load(text: str) -> Row:
    return [RowEntry(int(c), float(w), str(r), float(s)) for c, w, r, s in json.loads(text)]


class EditStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one writer at a time inside this process
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged edit is on disk
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def rows(self, teacher: str) -> dict[int, tuple[int, Row]]:
        """Every edited row of a teacher: student id -> (version, entries)."""
        with self._lock:
            cursor = self._db.execute("SELECT student_id, version, entries FROM rows WHERE teacher = ?", (teacher,))
            return {sid: (version, _load(entries)) for sid, version, entries in cursor}

    def version(self, teacher: str, student_id: int) -> int:
        found = self._db.execute(
            "SELECT version FROM rows WHERE teacher = ? AND student_id = ?", (teacher, student_id)
        ).fetchone()
        return found[0] if found else 0

    def set_row(self, teacher: str, student_id: int, expected: int, before: Row, after: Row, note: str) -> Change:
        """Write a row if it is still at version `expected`; record it in the history."""
        with self._lock, self._transaction() as db:
            current = self.version(teacher, student_id)
            if current != expected:
                raise StaleVersion(current)
            if sorted(map(tuple, before)) == sorted(map(tuple, after)):
                return Change(student_id, current, after, 0)  # a no-op: nothing to journal
            db.execute("UPDATE history SET state = 'dropped' WHERE teacher = ? AND state = 'undone'", (teacher,))
            history_id = db.execute(
                "INSERT INTO history (teacher, student_id, at, note, before, after, state) VALUES (?,?,?,?,?,?,'done')",
                (teacher, student_id, _now(), note, _dump(before), _dump(after)),
            ).lastrowid
            self._write(db, teacher, student_id, current + 1, after)
        return Change(student_id, current + 1, after, history_id)

    def undo(self, teacher: str, row: tuple[int, int] | None = None) -> Change | None:
        """Undo the teacher's latest edit, or with `row=(student id, version)` that row's latest
        (StaleVersion if the row is no longer at that version). None: nothing to undo."""
        return self._step(teacher, "done", "undone", "MAX", "before", row)

    def redo(self, teacher: str, row: tuple[int, int] | None = None) -> Change | None:
        return self._step(teacher, "undone", "done", "MIN", "after", row)

    def history(self, teacher: str, limit: int = 200) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, student_id, at, note, before, after, state FROM history WHERE teacher = ? "
                "ORDER BY id DESC LIMIT ?",
                (teacher, limit),
            ).fetchall()
        return [
            {"id": i, "student_id": s, "at": at, "note": n, "before": _load(b), "after": _load(a), "state": st}
            for i, s, at, n, b, a, st in rows
        ]

    def _step(
        self, teacher: str, source: str, target: str, pick: str, side: str, row: tuple[int, int] | None
    ) -> Change | None:
        with self._lock, self._transaction() as db:
            where, args = "teacher = ? AND state = ?", [teacher, source]
            if row is not None:
                current = self.version(teacher, row[0])
                if current != row[1]:
                    raise StaleVersion(current)
                where, args = where + " AND student_id = ?", [*args, row[0]]
            found = db.execute(
                f"SELECT id, student_id, {side} FROM history WHERE {where} "
                f"AND id = (SELECT {pick}(id) FROM history WHERE {where})",
                (*args, *args),
            ).fetchone()
            if found is None:
                return None
            history_id, student_id, entries = found
            db.execute("UPDATE history SET state = ? WHERE id = ?", (target, history_id))
            version = self.version(teacher, student_id) + 1
            self._write(db, teacher, student_id, version, _load(entries))
        return Change(student_id, version, _load(entries), history_id)

    @staticmethod
    def _write(db: sqlite3.Connection, teacher: str, student_id: int, version: int, row: Row) -> None:
        db.execute(
            "INSERT INTO rows (teacher, student_id, version, entries) VALUES (?,?,?,?) "
            "ON CONFLICT (teacher, student_id) DO UPDATE SET version = excluded.version, entries = excluded.entries",
            (teacher, student_id, version, _dump(row)),
        )

    def _transaction(self):
        return _Transaction(self._db)

    def integrity(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
