"""A workspace: one student, one W per teacher, and the SQLite database of edits, in one folder.

    workspace/
      workspace.json             which tokenizers this workspace is for
      W-<teacher>.safetensors    the base W of each teacher (+ .json sidecar), built or imported once
      W-<teacher>.g<N>.safetensors   the base W after the N-th rebuild (recorded in edits.sqlite)
      edits.sqlite               every edit (see store.py); current rows = base W + edited rows

Opening a workspace with other tokenizers than it was made for is refused. Everything the web
routes need per teacher (current rows, columns, per-token W summaries for search) lives in
`TeacherState` (teacher_state.py), kept in step with the store on every edit. Values derived from the whole current W
(the diagnosis) are kept by `Workspace.derived` until the next edit, undo or redo.

Writes that plan many rows (bulk edits) plan them under the workspace lock from the rows they
replace, so nothing lands in between; a rebuild swaps the teacher's base W and state at once,
after its file is on disk and the store has recorded it.

A workspace does not load tokenizers itself: it is given the vocabularies, or `Workspace.open` loads
them with the loader it is given (`load_vocab` unless told otherwise).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from webapp.compare import CompareW, read_compare
from webapp.search import VocabIndex
from webapp.store import Base, Change, EditStore, StaleRevision
from webapp.teacher_state import TeacherState
from xtoken_align.atomic import write_atomic
from xtoken_align.edits import Row, normalise_row, replay_edits
from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection, save_projection
from xtoken_align.projection import Projection, TokenizerInfo, build_projection
from xtoken_align.rules import RuleContext
from xtoken_align.vocab import Vocab, load_vocab

VocabLoader = Callable[[str], Vocab]  # a tokenizer source -> its canonical vocabulary
T = TypeVar("T")


class UnknownTeacher(XTokenError):
    """A teacher key this workspace does not have (the API answers 404)."""


def _check_projections(projections: Sequence[str] | None, teachers: int) -> None:
    if projections and len(projections) != teachers:
        raise XTokenError(f"{len(projections)} --projection files for {teachers} teachers; give one per teacher")


class Workspace:
    """The vocabularies, W and edits of one workspace folder. The constructor takes the vocabularies
    loaded; `Workspace.open` loads them from their sources with the loader it is given."""

    def __init__(
        self,
        folder: Path,
        student: Vocab,
        teachers: Sequence[Vocab],
        projections: Sequence[str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        _check_projections(projections, len(teachers))
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.revision = 0  # bumped by every edit, undo and redo: the current W changed
        self._derived: dict[str, tuple[int, Hashable, Any]] = {}
        self._derived_lock = threading.Lock()
        self.student = student
        self.student_index = VocabIndex(self.student)
        self.store = EditStore(folder / "edits.sqlite")
        self.teachers: dict[str, TeacherState] = {}
        self.compares: dict[str, CompareW] = {}
        vocabs: dict[str, Vocab] = {}
        for vocab in teachers:
            vocabs[self._key(vocab.name, vocabs)] = vocab
        self._check_manifest(
            {
                "student": TokenizerInfo.of(self.student).as_dict(),
                "teachers": [{"key": key, **TokenizerInfo.of(vocab).as_dict()} for key, vocab in vocabs.items()],
            }
        )
        for position, (key, vocab) in enumerate(vocabs.items()):
            base = self._base_projection(key, vocab, projections[position] if projections else None, log)
            context = RuleContext(self.student, vocab)
            self.teachers[key] = TeacherState(key, vocab, base, VocabIndex(vocab), context, self.store.rows(key))

    @classmethod
    def open(
        cls,
        folder: Path,
        student: str,
        teachers: Sequence[str],
        projections: Sequence[str] | None = None,
        load: VocabLoader = load_vocab,
        log: Callable[[str], None] = print,
    ) -> Workspace:
        """The workspace for these tokenizer sources, each loaded with `load` (`xtoken-align serve` opens it so)."""
        _check_projections(projections, len(teachers))
        log(f"loading student {student}")
        student_vocab = load(student)
        teacher_vocabs = []
        for source in teachers:
            log(f"loading teacher {source}")
            teacher_vocabs.append(load(source))
        return cls(folder, student_vocab, teacher_vocabs, projections, log)

    def teacher(self, key: str) -> TeacherState:
        try:
            return self.teachers[key]
        except KeyError:
            raise UnknownTeacher(f"unknown teacher '{key}'; this workspace has {', '.join(self.teachers)}") from None

    def add_compare(self, name: str, path: str) -> CompareW:
        """Read a W to compare against (`serve --compare NAME=PATH`); see `read_compare`."""
        if name in self.compares:
            raise XTokenError(f"--compare {name} is given twice; give each W its own name")
        teachers = {key: state.vocab for key, state in self.teachers.items()}
        self.compares[name] = read_compare(name, path, self.student, teachers)
        return self.compares[name]

    def compare(self, name: str, key: str) -> CompareW:
        found = self.compares.get(name)
        if found is None or found.teacher != key:
            names = ", ".join(n for n, c in self.compares.items() if c.teacher == key) or "none"
            raise UnknownTeacher(f"no W named '{name}' to compare with teacher '{key}' (given with --compare: {names})")
        return found

    def edit(self, key: str, sid: int, version: int, entries: list[tuple[int, float]], note: str) -> Change:
        state = self.teacher(key)
        self._check_student_id(sid)
        with self.lock:
            current_version, current = state.row(sid)
            allow_empty = not self.student.is_regular(sid)
            row = normalise_row(entries, current, state.vocab.size, allow_empty=allow_empty)
            change = self.store.set_row(key, sid, version, current, row, note)
            if change.history_id:  # 0: a no-op, nothing changed
                state.apply([change])
                self.revision += 1
        return change

    def write_rows(
        self, key: str, plan: Callable[[TeacherState], dict[int, Row]], note: str, expected_revision: int | None
    ) -> list[Change]:
        """Write the rows `plan(state)` gives as one operation (one undo step), planned under the
        lock; StaleRevision if the teacher is no longer at `expected_revision`."""
        state = self.teacher(key)
        with self.lock:
            if expected_revision is not None and self.store.revision(key) != expected_revision:
                raise StaleRevision(self.store.revision(key))
            rows = plan(state)
            changes = [(sid, None, state.row(sid)[1], row) for sid, row in rows.items()]
            done = [c for c in self.store.set_rows(key, changes, note, expected_revision) if c.history_id]
            if done:
                state.apply(done)
                self.revision += 1
        return done

    def step(self, key: str, forward: bool, row: tuple[int, int] | None = None) -> list[Change]:
        """Undo or redo the teacher's latest operation, or one row's edit: `row=(student id, version)`."""
        state = self.teacher(key)
        if row is not None:
            self._check_student_id(row[0])
        with self.lock:
            changes = self.store.redo(key, row) if forward else self.store.undo(key, row)
            if changes:
                state.apply(changes)
                self.revision += 1
        return changes

    def rebase(self, key: str, projection: Projection, expected_revision: int | None) -> tuple[Base, dict[int, Row]]:
        """Make `projection` the teacher's base W, carrying edits over (`edits.replay_edits`): its
        file is written first, then the store records it (a kill in between leaves an unused file).
        Returns the rebuild's record and the dropped edits' rows as they were."""
        state = self.teacher(key)
        with self.lock:
            if expected_revision is not None and self.store.revision(key) != expected_revision:
                raise StaleRevision(self.store.revision(key))
            edited = {sid: row for sid, (_, row) in state.edited.items()}
            kept, dropped = replay_edits(state.base, projection, edited)
            generation = len(self.store.bases(key)) + 1
            file = f"W-{key}.g{generation}.safetensors"
            save_projection(projection, self.folder / file)
            config = projection.config.model_dump_json() if projection.config else "null"
            base = Base(generation, file, config, len(kept), dropped)
            follow = {sid: projection.row(sid) for sid in edited if sid not in kept}  # dropped and undone edits
            self.store.rebase(key, base, follow, expected_revision)
            rows = self.store.rows(key)
            self.teachers[key] = TeacherState(key, state.vocab, projection, state.index, state.context, rows)
            self.revision += 1
        return base, {sid: edited[sid] for sid in dropped}

    def derived(self, name: str, params: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, kept under `name` until W changes (an edit, undo or redo) or `params` differ.

        One value per name; callers asking for the same name wait for one computation. A value may be
        newer than the revision it is kept under (an edit landed while computing), never older.
        """
        with self._derived_lock:
            revision = self.revision
            kept = self._derived.get(name)
            if kept is None or kept[:2] != (revision, params):
                kept = (revision, params, compute())
                self._derived[name] = kept
            return kept[2]

    def export(self, key: str) -> Projection:
        state = self.teacher(key)
        history = [
            {"action": "edit", **{k: v for k, v in h.items() if k != "id"}}
            for h in reversed(self.store.history(key, limit=1_000_000))
            if h["state"] == "done"
        ]
        return state.merged(history)

    def _check_student_id(self, sid: int) -> None:
        if not 0 <= sid < self.student.size:
            raise XTokenError(f"student id {sid} is outside 0..{self.student.size - 1}")

    @staticmethod
    def _key(name: str, taken: dict) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "teacher"
        key, n = base, 2
        while key in taken:
            key, n = f"{base}-{n}", n + 1
        return key

    def _base_projection(self, key: str, vocab: Vocab, given: str | None, log) -> Projection:
        rebuilt = self.store.bases(key)
        if rebuilt:  # the edits in the store are relative to the latest rebuild's W
            last = rebuilt[-1]
            if given:
                raise XTokenError(
                    f"W of teacher {key} was rebuilt in this workspace (rebuild {last.generation}, {last.at}); "
                    f"--projection {given} would replace it under its edits: give another --workspace"
                )
            return load_projection(self.folder / last.file, self.student, vocab)
        path = self.folder / f"W-{key}.safetensors"
        if given:
            log(f"using W {given} for {key}")
            projection = load_projection(given, self.student, vocab)
            save_projection(projection, path)
            return projection
        if path.is_file():
            try:
                return load_projection(path, self.student, vocab)
            except XTokenError as exc:  # e.g. killed between writing W and its sidecar: W is derived, rebuild
                log(f"rebuilding W for {key}: {exc}")
        log(f"building W for {key} (default rules)")
        projection = build_projection(self.student, vocab, progress=False)
        save_projection(projection, path)
        return projection

    def _check_manifest(self, manifest: dict) -> None:
        path = self.folder / "workspace.json"
        if path.is_file():
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise XTokenError(f"{path} is damaged (not valid JSON); give another --workspace") from None
            fingerprints = [existing["student"]["fingerprint"], *(t["fingerprint"] for t in existing["teachers"])]
            wanted = [manifest["student"]["fingerprint"], *(t["fingerprint"] for t in manifest["teachers"])]
            if fingerprints != wanted:
                names = ", ".join([existing["student"]["name"], *(t["name"] for t in existing["teachers"])])
                raise XTokenError(f"workspace {self.folder} was made for {names}; give another --workspace")
        else:
            write_atomic(path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
