"""Curation beyond one row: bulk edits on a vocabulary selection and rebuilds of W from a rule config.

Both preview before they write: a dry run answers what would change (and, for a rebuild, the score
of W before and after on the workspace corpus) with the teacher's revision, which the write names
so that it is refused (409) if anything changed since. A bulk edit is one journalled operation,
undone and redone whole; a rebuild makes a new base W and carries hand edits over where the rules
did not change under them (`edits.replay_edits`), listing the others.
"""

from __future__ import annotations

import time

import numpy as np

from webapp.schemas import BulkRequest, BulkResult, BulkRow, DroppedEdit, RebuildRequest, RebuildResult
from webapp.search import Query
from webapp.teacher_state import TeacherState
from webapp.views import entries
from webapp.workspace import Workspace
from xtoken_align.bulk import CopyAction, describe, plan_bulk
from xtoken_align.config import BuildConfig
from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.edits import Row, apply_rows, replay_edits
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection, build_projection
from xtoken_align.score import ScoreReport, score_projection

SAMPLE_ROWS = 20  # changed rows a preview shows


def bulk(workspace: Workspace, key: str, request: BulkRequest) -> BulkResult:
    """Preview (`dry_run`) or apply a bulk action on the rows the selection finds."""
    source = _source(workspace, key, request.action)
    note = request.note or describe(request.action)
    selected: list[int] = []
    before: dict[int, Row] = {}

    def plan(state: TeacherState) -> dict[int, Row]:
        selected[:] = _select(workspace, state, request)
        rows = plan_bulk(request.action, selected, lambda sid: state.row(sid)[1], state.base, state.context, source)
        before.update({sid: state.row(sid)[1] for sid in list(rows)[:SAMPLE_ROWS]})
        return rows

    if request.dry_run:
        revision = workspace.store.revision(key)
        changed = [(sid, row) for sid, row in plan(workspace.teacher(key)).items()]
        operation = None
    else:
        changes = workspace.write_rows(key, plan, note, request.revision)
        changed = [(c.student_id, c.entries) for c in changes]
        revision, operation = workspace.store.revision(key), (changes[0].history_id if changes else None)
    state = workspace.teacher(key)
    sample = [_bulk_row(workspace, state, sid, before[sid], row) for sid, row in changed if sid in before]
    return BulkResult(
        dry_run=request.dry_run,
        action=note,
        selected=len(selected),
        changed=len(changed),
        sample=sample,
        revision=revision,
        operation=operation,
    )


def rebuild(workspace: Workspace, key: str, request: RebuildRequest) -> RebuildResult:
    """Preview (`dry_run`) or make a rebuild of the teacher's W from `request.config`."""
    state = workspace.teacher(key)
    config = BuildConfig.from_dict(request.config, origin="rebuild")
    _check_corpus_rule(config, state.base.config)
    revision = workspace.store.revision(key)
    started = time.perf_counter()
    new_base = build_projection(workspace.student, state.vocab, config, context=state.context, progress=False)
    build_seconds = time.perf_counter() - started
    edited = {sid: row for sid, (_, row) in dict(state.edited).items()}
    kept, dropped = replay_edits(state.base, new_base, edited)
    current, after = workspace.export(key), apply_rows(new_base, kept)
    texts = read_corpus(default_corpus(), limit=request.corpus_texts) if request.corpus_texts else None
    corpus = f"GSM8K test, first {request.corpus_texts}" if texts else ""

    def score(projection: Projection) -> ScoreReport:
        return score_projection(projection, workspace.student, state.vocab, texts, corpus, state.context)

    score_before = workspace.derived(f"score:{key}", request.corpus_texts, lambda: score(current))
    score_after = score(after)
    generation = None
    if not request.dry_run:
        expected = request.revision if request.revision is not None else revision
        base, _ = workspace.rebase(key, new_base, expected)
        generation, revision = base.generation, workspace.store.revision(key)
    return RebuildResult(
        dry_run=request.dry_run,
        config=config,
        rows_changed=rows_changed(current, after),
        edits_kept=len(kept),
        edits_dropped=[_dropped(workspace, state, sid, edited[sid], new_base) for sid in dropped],
        before=score_before,
        after=score_after,
        build_seconds=round(build_seconds, 3),
        revision=revision,
        generation=generation,
    )


def rows_changed(a: Projection, b: Projection, tolerance: float = 1e-6) -> int:
    """Student rows whose weights differ between two Ws of the same pair."""
    difference = abs(a.matrix - b.matrix).tocoo()
    return len(np.unique(difference.row[difference.data > tolerance]))


def _select(workspace: Workspace, state: TeacherState, request: BulkRequest) -> list[int]:
    s = request.selection
    query = Query(s.q, s.regex, s.category, s.matched, s.rule, s.degree, offset=0, limit=workspace.student.size)
    ids, _ = workspace.student_index.search(query, state.rules, state.degrees, state.student_matched)
    return ids


def _source(workspace: Workspace, key: str, action) -> Projection | None:
    return workspace.compare(action.source, key).projection if isinstance(action, CopyAction) else None


def _bulk_row(workspace: Workspace, state: TeacherState, sid: int, before: Row, after: Row) -> BulkRow:
    student, teacher = workspace.student, state.vocab
    return BulkRow(
        student_id=sid,
        piece=student.pieces[sid],
        display=student.display(sid),
        category=student.categories[sid],
        before=entries(teacher, before),
        after=entries(teacher, after),
    )


def _dropped(workspace: Workspace, state: TeacherState, sid: int, edit: Row, new_base: Projection) -> DroppedEdit:
    student, teacher = workspace.student, state.vocab
    return DroppedEdit(
        student_id=sid,
        piece=student.pieces[sid],
        display=student.display(sid),
        edit=entries(teacher, edit),
        was=entries(teacher, state.base.row(sid)),
        now=entries(teacher, new_base.row(sid)),
    )


def _check_corpus_rule(config: BuildConfig, current: BuildConfig | None) -> None:
    """The browser never names files: a corpus rule may only keep the files the command line gave."""
    wanted, given = config.rule("corpus"), current.rule("corpus") if current else None
    if wanted is not None and (given is None or tuple(wanted.corpus) != tuple(given.corpus)):
        raise XTokenError(
            "the corpus rule's files are set on the command line (xtoken-align build); "
            "a rebuild from the browser may change its parameters, not its files"
        )
