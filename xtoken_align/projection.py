"""W: the sparse projection from student tokens to teacher tokens, built from declared rules.

`build_projection(student, teacher, config)` runs the rules of `BuildConfig` in order (see
`xtoken_align.config`), sums duplicate entries, keeps the top K per row by raw score, and
normalises each row to 1. Every entry remembers the rule that made it and its raw score.
`Projection.check` states what a valid W is (shape, finite, non-negative, rows summing to 1).
`summarise_build` says what a build made (`BuildSummary`, what `xtoken-align build` prints).
Left out: files (`xtoken_align.formats`) and scoring (`xtoken_align.score`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel
from tqdm import tqdm

from xtoken_align import __version__
from xtoken_align.config import ADDING, BuildConfig
from xtoken_align.errors import XTokenError
from xtoken_align.rules import RULE_CODES, RULES, Entries, RuleContext
from xtoken_align.vocab import Vocab

ROW_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class TokenizerInfo:
    """Enough to reopen a tokenizer and to check it is the same one."""

    name: str
    source: str
    size: int
    fingerprint: str

    @classmethod
    def of(cls, vocab: Vocab) -> TokenizerInfo:
        return cls(vocab.name, vocab.source, vocab.size, vocab.fingerprint)


@dataclass
class Projection:
    matrix: sp.csr_array  # (V_S, V_T) float32; each non-empty row sums to 1; column-sorted rows
    rules: np.ndarray  # (nnz,) uint8 index into RULE_CODES, aligned with matrix.data
    scores: np.ndarray  # (nnz,) float32 raw score before top-K and normalisation
    student: TokenizerInfo
    teacher: TokenizerInfo
    config: BuildConfig | None  # None for a W imported from another tool
    created: str = field(default_factory=lambda: build_time())
    tool_version: str = __version__
    history: list[dict] = field(default_factory=list)  # edits, oldest first

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def row(self, index: int) -> list[tuple[int, float, str, float]]:
        """(teacher id, weight, rule, raw score) of one row, heaviest first."""
        start, end = self.matrix.indptr[index], self.matrix.indptr[index + 1]
        entries = [
            (int(self.matrix.indices[k]), float(self.matrix.data[k]), RULE_CODES[self.rules[k]], float(self.scores[k]))
            for k in range(start, end)
        ]
        return sorted(entries, key=lambda e: (-e[1], e[0]))

    def identity(self) -> np.ndarray:
        """(nnz,) bool: entries where the student token *is* the teacher token (`exact`, `special`)."""
        return np.isin(self.rules, [RULE_CODES.index("exact"), RULE_CODES.index("special")])

    def row_sums(self) -> np.ndarray:
        """Row sums accumulated in float64 (float32 accumulation alone drifts past 1e-6)."""
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.matrix.indptr))
        return np.bincount(rows, weights=self.matrix.data.astype(np.float64), minlength=self.shape[0])

    def empty_rows(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.matrix.indptr) == 0)

    def check(self, regular_rows: np.ndarray | None = None) -> None:
        """Raise XTokenError naming the first problem: shape, NaN, negative or out-of-range
        weights, non-empty rows not summing to 1, or (given `regular_rows`) an empty regular row."""
        v_s, v_t = self.shape
        if (v_s, v_t) != (self.student.size, self.teacher.size):
            raise XTokenError(
                f"W has shape {v_s}x{v_t} but the tokenizers have {self.student.size} and {self.teacher.size} tokens"
            )
        data = self.matrix.data
        if len(self.rules) != len(data) or len(self.scores) != len(data):
            raise XTokenError("W provenance arrays do not match its entries")
        if not np.all(np.isfinite(data)):
            raise XTokenError(f"W holds {int(np.sum(~np.isfinite(data)))} NaN or infinite weights")
        if np.any(data < 0):
            raise XTokenError(f"W holds {int(np.sum(data < 0))} negative weights")
        if len(data) and (self.matrix.indices.min() < 0 or self.matrix.indices.max() >= v_t):
            raise XTokenError("W has teacher ids outside the teacher vocabulary")
        if np.any(self.rules >= len(RULE_CODES)):
            raise XTokenError("W has unknown rule codes")
        sums = self.row_sums()
        filled = np.diff(self.matrix.indptr) > 0
        bad = np.flatnonzero(filled & (np.abs(sums - 1) > ROW_SUM_TOLERANCE))
        if len(bad):
            raise XTokenError(f"{len(bad)} rows of W do not sum to 1 (first: row {bad[0]} sums to {sums[bad[0]]:.6f})")
        if regular_rows is not None:
            empty = np.asarray(regular_rows)[~filled[np.asarray(regular_rows)]]
            if len(empty):
                raise XTokenError(f"{len(empty)} regular student tokens have an empty row (first: {empty[0]})")


def build_time() -> str:
    """Now in UTC, or SOURCE_DATE_EPOCH when set, so that rebuilding gives byte-identical files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else None))


def build_projection(
    student: Vocab, teacher: Vocab, config: BuildConfig | None = None, *, progress: bool | None = None
) -> Projection:
    """Build W from the rules of `config` (default rules, K = 4). `progress=None`: a bar on a terminal."""
    config = config or BuildConfig()
    ctx = RuleContext(student, teacher)
    candidates = [i for i in range(student.size) if student.categories[i] != "unused"]
    open_rows, protected = list(candidates), set()  # protected: exact and special rows stay one-hot
    parts: list[tuple[int, Entries]] = []
    bar = tqdm(config.rules, desc="build W", unit="rule", disable=None if progress is None else not progress)
    for rule in bar:
        bar.set_postfix_str(rule.name)
        if rule.name in ADDING:
            entries = RULES[rule.name](ctx, [r for r in candidates if r not in protected], rule)
        else:
            entries = RULES[rule.name](ctx, open_rows, rule)
            claimed = set(entries.rows)
            open_rows = [r for r in open_rows if r not in claimed]
            if rule.name in ("exact", "special"):
                protected |= claimed
        parts.append((RULE_CODES.index(rule.name), entries))
    matrix, rules, scores = _assemble(parts, (student.size, teacher.size), config.top_k)
    return Projection(matrix, rules, scores, TokenizerInfo.of(student), TokenizerInfo.of(teacher), config)


class UnmatchedSpecial(BaseModel):
    """A special student token with no teacher counterpart: its row of W is empty."""

    id: int
    piece: str
    roles: list[str]


class BuildSummary(BaseModel):
    """What a build wrote and what W holds: the document `xtoken-align build --json` prints."""

    path: str
    sidecar: str
    seconds: float
    student: str
    teacher: str
    shape: list[int]  # [V_S, V_T]
    entries: int
    top_k: int | None  # None for a W imported from another tool
    rows_by_rule: dict[str, int]  # filled rows by the rule of their heaviest entry, in rule order
    unmatched_special: list[UnmatchedSpecial]  # placeholder specials (`special:unused`) left out


def summarise_build(projection: Projection, student: Vocab, path: str | Path, seconds: float) -> BuildSummary:
    """Summarise W as built for `student` and saved at `path` (sidecar beside it as .json)."""
    m = projection.matrix
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # per row: heaviest first, then lower teacher id
    leading = order[np.flatnonzero(np.diff(rows[order], prepend=-1))]  # each filled row's first entry
    counts = np.bincount(projection.rules[leading], minlength=len(RULE_CODES))
    empty = set(projection.empty_rows().tolist())
    unmatched = [
        UnmatchedSpecial(id=i, piece=student.pieces[i], roles=list(student.special[i]))
        for i in sorted(student.special)
        if i in empty and student.categories[i] != "special:unused"
    ]
    return BuildSummary(
        path=str(path),
        sidecar=str(Path(path).with_suffix(".json")),
        seconds=seconds,
        student=projection.student.name,
        teacher=projection.teacher.name,
        shape=list(projection.shape),
        entries=int(m.nnz),
        top_k=projection.config.top_k if projection.config else None,
        rows_by_rule={rule: int(n) for rule, n in zip(RULE_CODES, counts, strict=True) if n},
        unmatched_special=unmatched,
    )


def build_text(summary: BuildSummary) -> str:
    """What `xtoken-align build` prints: the files, W's size, rows by leading rule, unmatched specials."""
    from xtoken_align.reports import table

    v_s, v_t = summary.shape
    lines = [
        f"wrote {summary.path} and {Path(summary.sidecar).name} in {summary.seconds:.1f} s",
        f"W {v_s:,} x {v_t:,}, {summary.entries:,} entries, K = {summary.top_k if summary.top_k is not None else '?'}",
        table(["rows led by rule", "rows"], [[rule, n] for rule, n in summary.rows_by_rule.items()]),
    ]
    if summary.unmatched_special:
        names = ", ".join(f"{s.piece} ({'/'.join(s.roles)})" for s in summary.unmatched_special)
        lines.append(f"special tokens with no teacher counterpart (empty rows): {names}")
    return "\n".join(lines)


def _assemble(parts: list[tuple[int, Entries]], shape: tuple[int, int], top_k: int):
    """Sum duplicate (row, col) entries, keep the top K per row, normalise rows; all vectorised."""
    rows = np.concatenate([np.asarray(e.rows, dtype=np.int64) for _, e in parts] or [np.zeros(0, np.int64)])
    cols = np.concatenate([np.asarray(e.cols, dtype=np.int64) for _, e in parts] or [np.zeros(0, np.int64)])
    scores = np.concatenate([np.asarray(e.scores, dtype=np.float64) for _, e in parts] or [np.zeros(0)])
    codes = np.concatenate([np.full(len(e), code, dtype=np.uint8) for code, e in parts] or [np.zeros(0, np.uint8)])
    return assemble_entries(rows, cols, scores, codes, shape, top_k)


def assemble_entries(rows, cols, scores, codes, shape: tuple[int, int], top_k: int, keep_within: float = 0.0):
    """(CSR W, rule codes, raw scores) from raw entries. A duplicate (row, col) sums its scores and
    keeps the rule of its largest contribution; ties in the top K go to the lower teacher id. Rows
    already summing to 1 within `keep_within` keep their values exactly (lossless re-import)."""
    keys = rows * shape[1] + cols
    order = np.lexsort((-scores, keys))  # by key, largest contribution first
    keys, scores, codes = keys[order], scores[order], codes[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    group = np.cumsum(first) - 1
    summed = np.bincount(group, weights=scores) if len(keys) else np.zeros(0)
    keys, codes = keys[first], codes[first]
    rows, cols = keys // shape[1], keys % shape[1]

    order = np.lexsort((cols, -summed, rows))  # per row: heaviest first, then lower teacher id
    rows, cols, summed, codes = rows[order], cols[order], summed[order], codes[order]
    row_start = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - row_start) < top_k
    rows, cols, summed, codes = rows[keep], cols[keep], summed[keep], codes[keep]

    totals = np.bincount(rows, weights=summed, minlength=shape[0])[rows]
    weights = np.where(np.abs(totals - 1) <= keep_within, summed, summed / totals)
    order = np.lexsort((cols, rows))  # CSR order: by row, then column
    rows, cols, weights, summed, codes = rows[order], cols[order], weights[order], summed[order], codes[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))]).astype(np.int64)
    matrix = sp.csr_array((weights.astype(np.float32), cols.astype(np.int32), indptr), shape=shape)
    return matrix, codes.astype(np.uint8), summed.astype(np.float32)
