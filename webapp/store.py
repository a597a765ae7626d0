"""Edits of W rows, durable in SQLite: current rows, versions, and a linear undo/redo history.

One database per workspace (stdlib sqlite3, WAL, synchronous=FULL): when a write returns, it is on
disk and survives a SIGKILL. Each edited row has a version; a write that names a stale version is
refused with the current row (optimistic concurrency, so two browser tabs cannot silently overwrite
each other). Every write also bumps the teacher's revision, which bulk edits and rebuilds name to
be refused when anything changed since their preview.

History entries are `done`, `undone` (redo-able) or `dropped` (an undone edit of a row superseded
by a newer edit of that row, or an edit a rebuild could not carry over; other rows keep their undone
edits redo-able, so one row's undo survives editing another). Entries written together
(a bulk edit) share an operation id: the teacher's undo and redo step through whole operations; a
row's undo and redo (given a student id and its version) through that one row's entries. A write
that changes nothing is not journalled. Rows are JSON lists of [teacher id, weight, rule, score].

A rebuild records the teacher's new base W file (`bases`); rows edited on the old base that the
rebuild could not carry over take the rebuilt rows, their history dropped, in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
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
CREATE TABLE IF NOT EXISTS revisions (
    teacher TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bases (
    teacher TEXT NOT NULL,
    generation INTEGER NOT NULL,
    file TEXT NOT NULL,
    config TEXT NOT NULL,
    at TEXT NOT NULL,
    kept INTEGER NOT NULL,
    dropped TEXT NOT NULL,
    PRIMARY KEY (teacher, generation)
);
"""
# Added after the first release: databases made before get the column on open.
MIGRATIONS = {"history": {"op": "ALTER TABLE history ADD COLUMN op INTEGER"}}


class StaleVersion(Exception):
    """The row changed since the client read it."""

    def __init__(self, version: int) -> None:
        super().__init__(f"row is at version {version}")
        self.version = version


class StaleRevision(Exception):
    """The teacher's W changed since the client's preview."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"W is at revision {revision}")
        self.revision = revision


@dataclass(frozen=True)
class Base:
    """A teacher's base W after a rebuild: its file (in the workspace folder) and generation."""

    generation: int
    file: str
    config: str  # the BuildConfig as JSON
    kept: int  # edits carried over
    dropped: list[int]  # student ids whose edits no longer applied
    at: str = field(default_factory=lambda: _now())


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
        for table, columns in MIGRATIONS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, statement in columns.items():
                if column not in have:
                    self._db.execute(statement)

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

    def revision(self, teacher: str) -> int:
        found = self._db.execute("SELECT revision FROM revisions WHERE teacher = ?", (teacher,)).fetchone()
        return found[0] if found else 0

    def set_row(self, teacher: str, student_id: int, expected: int, before: Row, after: Row, note: str) -> Change:
        """Write a row if it is still at version `expected`; record it in the history."""
        return self.set_rows(teacher, [(student_id, expected, before, after)], note)[0]

    def set_rows(
        self,
        teacher: str,
        changes: list[tuple[int, int | None, Row, Row]],
        note: str,
        expected_revision: int | None = None,
    ) -> list[Change]:
        """Write rows (student id, expected version or None, before, after) as one operation, all or
        none: StaleVersion for a row not at its expected version, StaleRevision if the teacher is
        not at `expected_revision`. Rows whose write changes nothing are not journalled."""
        with self._lock, self._transaction() as db:
            self._check_revision(teacher, expected_revision)
            out, op = [], None
            for student_id, expected, before, after in changes:
                current = self.version(teacher, student_id)
                if expected is not None and current != expected:
                    raise StaleVersion(current)
                if sorted(map(tuple, before)) == sorted(map(tuple, after)):
                    out.append(Change(student_id, current, after, 0))  # a no-op: nothing to journal
                    continue
                # A row's undone edits cannot be redone over a newer edit of it; other rows keep theirs.
                self._drop_undone(db, teacher, student_id)
                history_id = db.execute(
                    "INSERT INTO history (teacher, student_id, at, note, before, after, state, op) "
                    "VALUES (?,?,?,?,?,?,'done',?)",
                    (teacher, student_id, _now(), note, _dump(before), _dump(after), op),
                ).lastrowid
                if op is None:
                    op = history_id  # an operation is named after its first entry
                    db.execute("UPDATE history SET op = ? WHERE id = ?", (op, op))
                self._write(db, teacher, student_id, current + 1, after)
                out.append(Change(student_id, current + 1, after, history_id))
            if op is not None:
                self._bump(db, teacher)
        return out

    def rebase(self, teacher: str, base: Base, rows: dict[int, Row], expected_revision: int | None) -> None:
        """Record a rebuilt base W for the teacher (`base.generation` one past the last). Edited rows
        the rebuild does not carry over take `rows` (the rebuilt W's), versions moving on so a client
        holding the old row is refused; their history and undone entries are dropped: a rebuild
        is a new step of the linear history."""
        with self._lock, self._transaction() as db:
            self._check_revision(teacher, expected_revision)
            db.execute(
                "INSERT INTO bases (teacher, generation, file, config, at, kept, dropped) VALUES (?,?,?,?,?,?,?)",
                (teacher, base.generation, base.file, base.config, base.at, base.kept, json.dumps(base.dropped)),
            )
            self._drop_undone(db, teacher)
            for student_id, row in rows.items():
                self._write(db, teacher, student_id, self.version(teacher, student_id) + 1, row)
                db.execute(
                    "UPDATE history SET state = 'dropped' WHERE teacher = ? AND student_id = ?", (teacher, student_id)
                )
            self._bump(db, teacher)

    def bases(self, teacher: str) -> list[Base]:
        """The teacher's rebuilds, oldest first (empty: W is still the one the workspace began with)."""
        with self._lock:
            found = self._db.execute(
                "SELECT generation, file, config, at, kept, dropped FROM bases WHERE teacher = ? ORDER BY generation",
                (teacher,),
            ).fetchall()
        return [Base(g, f, c, k, json.loads(d), at) for g, f, c, at, k, d in found]

    def undo(self, teacher: str, row: tuple[int, int] | None = None) -> list[Change]:
        """Undo the teacher's latest operation, or with `row=(student id, version)` that row's latest
        edit (StaleVersion if the row is no longer at that version). Empty: nothing to undo."""
        return self._step(teacher, "done", "undone", "MAX", "before", row)

    def redo(self, teacher: str, row: tuple[int, int] | None = None) -> list[Change]:
        return self._step(teacher, "undone", "done", "MIN", "after", row)

    def history(self, teacher: str, limit: int = 200) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, student_id, at, note, before, after, state, COALESCE(op, id) FROM history "
                "WHERE teacher = ? ORDER BY id DESC LIMIT ?",
                (teacher, limit),
            ).fetchall()
        return [
            dict(id=i, student_id=s, at=at, note=n, before=_load(b), after=_load(a), state=st, op=op)
            for i, s, at, n, b, a, st, op in rows
        ]

    def _step(
        self, teacher: str, source: str, target: str, pick: str, side: str, row: tuple[int, int] | None
    ) -> list[Change]:
        with self._lock, self._transaction() as db:
            if row is None:  # the latest (undo) or earliest (redo) operation, whole
                found = db.execute(
                    f"SELECT {pick}(COALESCE(op, id)) FROM history WHERE teacher = ? AND state = ?", (teacher, source)
                ).fetchone()[0]
                where, args = "teacher = ? AND state = ? AND COALESCE(op, id) = ?", (teacher, source, found)
            else:
                current = self.version(teacher, row[0])
                if current != row[1]:
                    raise StaleVersion(current)
                found = db.execute(
                    f"SELECT {pick}(id) FROM history WHERE teacher = ? AND state = ? AND student_id = ?",
                    (teacher, source, row[0]),
                ).fetchone()[0]
                where, args = "id = ?", (found,)
            if found is None:
                return []
            order = "DESC" if source == "done" else "ASC"  # undo newest first, redo oldest first
            entries = db.execute(f"SELECT id, student_id, {side} FROM history WHERE {where} ORDER BY id {order}", args)
            out = []
            for history_id, student_id, text in entries.fetchall():
                db.execute("UPDATE history SET state = ? WHERE id = ?", (target, history_id))
                version = self.version(teacher, student_id) + 1
                self._write(db, teacher, student_id, version, _load(text))
                out.append(Change(student_id, version, _load(text), history_id))
            self._bump(db, teacher)
        return out

    def _check_revision(self, teacher: str, expected: int | None) -> None:
        if expected is not None and self.revision(teacher) != expected:
            raise StaleRevision(self.revision(teacher))

    @staticmethod
    def _drop_undone(db: sqlite3.Connection, teacher: str, student_id: int | None = None) -> None:
        """Undone entries can no longer be redone: the teacher's all, or one row's."""
        where, args = "teacher = ? AND state = 'undone'", (teacher,)
        if student_id is not None:
            where, args = where + " AND student_id = ?", (*args, student_id)
        db.execute(f"UPDATE history SET state = 'dropped' WHERE {where}", args)

    @staticmethod
    def _bump(db: sqlite3.Connection, teacher: str) -> None:
        db.execute(
            "INSERT INTO revisions (teacher, revision) VALUES (?, 1) "
            "ON CONFLICT (teacher) DO UPDATE SET revision = revision + 1",
            (teacher,),
        )

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
