"""Typed request and response models of the JSON API (the OpenAPI schema at /docs comes from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xtoken_align.bulk import BulkAction
from xtoken_align.categories import CATEGORY_ORDER
from xtoken_align.config import BuildConfig
from xtoken_align.diagnose.report import DiagnoseReport
from xtoken_align.rules import RULE_CODES
from xtoken_align.score import ScoreReport

Side = Literal["student", "teacher"]
RuleName = Literal[RULE_CODES]  # type: ignore[valid-type]
Category = Literal[CATEGORY_ORDER]  # type: ignore[valid-type]


class TokenizerView(BaseModel):
    name: str
    source: str
    size: int
    fingerprint: str


class TeacherView(TokenizerView):
    key: str


class CompareView(BaseModel):
    """A W given with `serve --compare NAME=PATH`, for the diff view."""

    name: str
    teacher: str  # teacher key
    path: str


class Meta(BaseModel):
    student: TokenizerView
    teachers: list[TeacherView]
    compare: list[CompareView] = []
    workspace: str
    rules: list[str]
    categories: list[str]
    max_text_chars: int
    max_page_size: int


class Entry(BaseModel):
    """One W entry, with the teacher token shown for people."""

    teacher_id: int
    piece: str
    display: str
    weight: float
    rule: str
    score: float


class TokenSummary(BaseModel):
    id: int
    piece: str
    display: str
    hex: str = ""  # canonical bytes, hex
    category: str
    degree: int  # student side: entries in its row; teacher side: student rows pointing at it
    rule: str  # student side: rule of its heaviest entry ("" if none)
    matched: bool  # one-hot exact/special match
    top: list[Entry] = []  # student side: the row (heaviest first)
    # Student side of the vocabulary search (`xtoken_align.impact`, on the settings' corpus):
    frequency: int | None = None  # times the student tokenizer emits the token
    risk: float | None = None  # in [0, 1]: mean of unmatched, uncommon and 1 - agreement@1
    impact: float | None = None  # frequency × risk


class Page(BaseModel):
    data: list[TokenSummary]
    count: int


class Piece(BaseModel):
    id: int
    piece: str
    display: str


class ColumnEntry(BaseModel):
    student_id: int
    piece: str
    display: str
    weight: float
    rule: str


class TokenDetail(BaseModel):
    side: Side
    id: int
    piece: str
    display: str
    hex: str
    category: str
    roles: list[str]
    role_evidence: list[str] = []  # per role, where it came from (config, chat template, family table)
    other_side: list[Piece]  # how the other tokenizer segments this token's text
    row: list[Entry] | None = None  # student side
    version: int | None = None  # student side: edit version of the row
    column: list[ColumnEntry] | None = None  # teacher side, heaviest first: one page of it
    column_count: int | None = None  # teacher side: all student tokens mapping onto it


class RowEdit(BaseModel):
    entries: list[EditEntry] = Field(max_length=64)
    note: str = Field(default="", max_length=2000)
    version: int = Field(ge=0)


class EditEntry(BaseModel):
    teacher_id: int
    weight: float


class RowView(BaseModel):
    student_id: int
    version: int
    row: list[Entry]
    changed: bool = True  # false: the save changed nothing, so nothing was journalled
    rows: int = 1  # rows an undo or redo changed (a bulk operation: all of its rows; `row` is the first)


class RowStep(BaseModel):
    """Undo or redo one row's latest edit, if the row is still at `version`."""

    version: int = Field(ge=0)


class PairRequest(BaseModel):
    text: str
    teacher: str


class PairToken(BaseModel):
    id: int
    piece: str
    display: str
    start: int  # byte offsets in the text
    end: int
    chunk: int  # -1: in no chunk (a zero-width special token, or where the two sides' bytes differ)
    row: list[Entry] = []  # student tokens only


class Chunk(BaseModel):
    start: int
    end: int
    student: list[int]  # positions in the student token list
    teacher: list[int]
    one_to_one: bool


class RoundTrips(BaseModel):
    """Whether each tokenizer's tokens spell the text exactly (decode(encode(text)) == text)."""

    student: bool
    teacher: bool


class PairView(BaseModel):
    student: list[PairToken]
    teacher: list[PairToken]
    chunks: list[Chunk]
    disagreeing_boundaries: list[int]  # byte offsets where only one side has a token boundary
    round_trips: RoundTrips


class HistoryItem(BaseModel):
    id: int
    op: int  # entries written together (a bulk edit) share it: undo and redo step through it whole
    student_id: int
    piece: str = ""  # the student token's raw piece and display text
    display: str = ""
    at: str
    note: str
    state: str
    before: list[Entry]
    after: list[Entry]


class HistoryPage(BaseModel):
    data: list[HistoryItem]
    count: int


RowEdit.model_rebuild()


class Diagnosis(BaseModel):
    """GET /api/diagnosis: the `diagnose` report of every teacher and its plotly figure specs."""

    report: DiagnoseReport
    figures: list[dict]


class OverviewCategory(BaseModel):
    """One student category for one teacher's current W (counts from the diagnose audit)."""

    total: int
    common: int  # in W's H-KL common set
    covered: int  # W's row is not empty
    common_share: float  # common / total
    severity: Literal["ok", "warn", "critical"]


class OverviewTeacher(BaseModel):
    """One teacher's W at a glance: the diagnose recommendation, coverage and corpus agreement."""

    key: str
    name: str
    size: int
    recommendation: Literal["p_kl", "h_kl", "kd"]
    reason: str
    covered: int  # student tokens with a non-empty row (over the audited categories)
    total: int
    critical: dict[str, OverviewCategory]  # the critical categories only, in report order
    categories: dict[str, OverviewCategory]  # every student category, in report order
    agreement_at_1: float | None  # on the corpus (None without one)
    mass_at_1: float | None  # mean W mass on the teacher's own token
    edits: int  # edits since W was built: journalled and not undone
    rows_edited: int  # distinct student rows those edits touch


class Overview(BaseModel):
    """GET /api/overview: every teacher's current W side by side."""

    student: str
    critical: list[str]  # the critical categories the student has
    corpus: str  # "" without a corpus
    corpus_texts: int
    categories: list[str]  # student categories in report order
    teachers: list[OverviewTeacher]


class Selection(BaseModel):
    """Student tokens chosen as the vocabulary view filters them (GET /api/vocab/student)."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(default="", max_length=200)
    regex: bool = False
    category: Category | None = None
    matched: bool | None = None
    rule: RuleName | None = None
    degree: int | None = Field(default=None, ge=0, le=64)


class BulkRequest(BaseModel):
    """POST /api/teachers/{teacher}/bulk. `revision`: the one a dry run answered; the write is
    refused with 409 if the teacher's W changed since (leave it out to write whatever the state)."""

    model_config = ConfigDict(extra="forbid")
    selection: Selection
    action: BulkAction
    dry_run: bool = True
    revision: int | None = Field(default=None, ge=0)
    note: str = Field(default="", max_length=2000)


class BulkRow(BaseModel):
    student_id: int
    piece: str
    display: str
    category: str
    before: list[Entry]
    after: list[Entry]


class BulkResult(BaseModel):
    dry_run: bool
    action: str  # as the history notes it
    selected: int  # student tokens the selection found
    changed: int  # rows the action changes (dry run) or changed
    sample: list[BulkRow]  # the first changed rows, before and after
    revision: int  # the teacher's revision: name it to apply this preview
    operation: int | None = None  # applied: the history operation (undo steps through it whole)


class RebuildRequest(BaseModel):
    """POST /api/teachers/{teacher}/rebuild: a rule config as `build --config` takes it."""

    model_config = ConfigDict(extra="forbid")
    config: dict
    dry_run: bool = True
    revision: int | None = Field(default=None, ge=0)
    corpus_texts: int = Field(default=200, ge=0, le=2_000)  # GSM8K test problems for the score preview


class DroppedEdit(BaseModel):
    """An edit the rebuild cannot carry over: the rules changed the row it was made against."""

    student_id: int
    piece: str
    display: str
    edit: list[Entry]  # the edited row
    was: list[Entry]  # what the old rules gave
    now: list[Entry]  # what the new rules give (the row after the rebuild)


class RebuildResult(BaseModel):
    dry_run: bool
    config: BuildConfig
    rows_changed: int  # rows of the current W (edits included) that the rebuild changes
    edits_kept: int
    edits_dropped: list[DroppedEdit]
    before: ScoreReport  # the current W
    after: ScoreReport  # the rebuilt W with the kept edits
    build_seconds: float
    revision: int
    generation: int | None = None  # applied: the rebuild's number in this workspace


class Rebuild(BaseModel):
    generation: int
    at: str
    config: dict | None
    kept: int
    dropped: int


class RulesView(BaseModel):
    """GET /api/teachers/{teacher}/rules: the config W was built with and what a rebuild can use."""

    config: BuildConfig
    imported: bool  # W came from another tool: `config` is the default rules
    defaults: dict[str, dict]  # each rule's parameters and their defaults (corpus: only with files)
    claiming: list[str]
    adding: list[str]
    revision: int
    rebuilds: list[Rebuild]
