"""`TeacherState`: one teacher's current W as the web routes read it, kept in step with the edit store.

The base W, the edited rows over it (student id -> (version, row)), and per-token summaries for the
vocabulary search (rule of the heaviest entry, degree, one-hot matched) on both sides, plus the
base W's columns for the teacher-token view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from webapp.search import VocabIndex
from webapp.store import Change
from xtoken_align.edits import Row, apply_rows
from xtoken_align.projection import Projection
from xtoken_align.rules import ONE_HOT_RULES, RULE_CODES, RuleContext
from xtoken_align.vocab import Vocab


@dataclass
class TeacherState:
    key: str
    vocab: Vocab
    base: Projection
    index: VocabIndex
    context: RuleContext
    edited: dict[int, tuple[int, Row]] = field(default_factory=dict)  # student id -> (version, row)

    def __post_init__(self) -> None:
        leading = self.base.leading().rule
        self.rules = np.asarray([*RULE_CODES, ""], dtype=object)[leading]  # -1 (empty row) picks ""
        self.degrees = self.base.entries_per_row()
        self.student_matched = np.isin(self.rules, ONE_HOT_RULES)
        self.teacher_rules = np.full(self.vocab.size, "", dtype=object)  # teacher tokens have no rule of their own
        self.columns = self.base.matrix.tocsc()
        self._refresh_columns()
        for sid, (_, row) in self.edited.items():
            self._summarise(sid, row)

    @cached_property
    def reverse_context(self) -> RuleContext:
        """Teacher tokens spelled by the student tokenizer."""
        return RuleContext(self.context.teacher, self.context.student)

    def row(self, sid: int) -> tuple[int, Row]:
        return self.edited.get(sid) or (0, self.base.row(sid))

    def column(self, tid: int) -> list[tuple[int, float, str]]:
        """Student tokens mapping onto teacher token `tid`, heaviest first."""
        edited = dict(self.edited)  # a snapshot: edits land from other request threads
        start, end = self.columns.indptr[tid], self.columns.indptr[tid + 1]
        found = {int(s): None for s in self.columns.indices[start:end] if int(s) not in edited}
        out = [(sid, *next((w, r) for c, w, r, _ in self.base.row(sid) if c == tid)) for sid in found]
        out += [(sid, w, r) for sid, (_, row) in edited.items() for c, w, r, _ in row if c == tid]
        return sorted(out, key=lambda e: (-e[1], e[0]))

    def apply(self, changes: list[Change]) -> None:
        for change in changes:
            self.edited[change.student_id] = (change.version, change.entries)
            self._summarise(change.student_id, change.entries)
        self._refresh_columns()

    def merged(self, history: list[dict]) -> Projection:
        return apply_rows(self.base, {sid: row for sid, (_, row) in dict(self.edited).items()}, history)

    def _summarise(self, sid: int, row: Row) -> None:
        self.rules[sid] = row[0][2] if row else ""
        self.degrees[sid] = len(row)
        self.student_matched[sid] = self.rules[sid] in ONE_HOT_RULES

    def _refresh_columns(self) -> None:
        """Per teacher token: how many student rows point at it, and whether one is a one-hot match."""
        size = self.vocab.size
        rows = [(sid, row) for sid, (_, row) in dict(self.edited).items()]
        m = self.base.matrix
        entry_rows = self.base.entry_rows()
        keep = ~np.isin(entry_rows, [sid for sid, _ in rows])
        self.teacher_degrees = np.bincount(m.indices[keep], minlength=size)
        exact = keep & self.base.identity()
        self.teacher_matched = np.bincount(m.indices[exact], minlength=size) > 0
        for _, row in rows:
            for col, _, rule, _ in row:
                self.teacher_degrees[col] += 1
                self.teacher_matched[col] |= rule in ONE_HOT_RULES
