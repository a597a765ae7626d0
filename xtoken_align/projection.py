"""W: the sparse projection from student tokens to teacher tokens, built from declared rules.

`build_projection(student, teacher, config)` runs the rules of `BuildConfig` in order (see
`xtoken_align.config`), sums duplicate entries, keeps the top K per row by raw score, and
normalises each row to 1; a `corpus` rule then blends corpus counts into the rows
(`rules/corpus.py`). Every entry remembers the rule that made it and its raw score.
`Projection.check` states what a valid W is (shape, finite, non-negative, rows summing to 1); its
row views (`entry_rows`, `filled`, `leading`) and `common_set` are what scoring, diagnosis, the
web layer and training read, vectorised over all rows. Left out: files (`xtoken_align.formats`)
and scoring (`xtoken_align.score`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from xtoken_align import __version__
from xtoken_align.assemble import assemble_parts
from xtoken_align.config import ADDING, BLENDING, BuildConfig
from xtoken_align.errors import XTokenError
from xtoken_align.rules import ONE_HOT_CODES, ONE_HOT_RULES, RULE_CODES, RULES, Entries, RuleContext
from xtoken_align.rules.corpus import blend_counts, checked_corpus, corpus_entries, corpus_texts, count_openers
from xtoken_align.vocab import Vocab

ROW_SUM_TOLERANCE = 1e-6
HKL_THRESHOLD = 0.6  # method.md §4: a row's top weight must reach it to join H-KL's common set


class RowEntry(NamedTuple):
    """One entry of a W row."""

    teacher: int
    weight: float
    rule: str
    score: float  # raw score before top-K and normalisation


class Leading(NamedTuple):
    """Per student row, its heaviest entry (ties: the lower teacher id); -1 / 0 for empty rows."""

    teacher: np.ndarray  # int64 (V_S,)
    weight: np.ndarray  # float32 (V_S,)
    rule: np.ndarray  # int16 (V_S,) index into RULE_CODES, -1 for empty rows
    entry: np.ndarray  # int64 (V_S,) position in the CSR arrays, -1 for empty rows


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

    def as_dict(self) -> dict[str, str | int]:
        return dataclasses.asdict(self)


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

    def row(self, index: int) -> list[RowEntry]:
        """The entries of one row, heaviest first (ties: the lower teacher id)."""
        return csr_row(self.matrix, self.rules, self.scores, index)

    def entries_per_row(self) -> np.ndarray:
        """(V_S,) int64: how many entries each row holds."""
        return np.diff(self.matrix.indptr).astype(np.int64)

    def filled(self) -> np.ndarray:
        """(V_S,) bool: rows with at least one entry."""
        return self.entries_per_row() > 0

    def empty_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.filled())

    def entry_rows(self) -> np.ndarray:
        """(nnz,) int64: the student row of every entry, aligned with `matrix.data`."""
        return np.repeat(np.arange(self.shape[0], dtype=np.int64), self.entries_per_row())

    def identity(self) -> np.ndarray:
        """(nnz,) bool: entries where the student token *is* the teacher token (`ONE_HOT_RULES`)."""
        return np.isin(self.rules, ONE_HOT_CODES)

    def leading(self) -> Leading:
        """The heaviest entry of every row at once (what `row(i)[0]` is for one row)."""
        return leading_entries(self.matrix, self.rules)

    def common_set(self, threshold: float = HKL_THRESHOLD) -> dict[int, int]:
        """H-KL common set, student id -> teacher id (method.md §4; see `common_pairs`)."""
        return common_pairs(self.leading(), self.identity(), threshold)

    def row_sums(self) -> np.ndarray:
        """Row sums accumulated in float64 (float32 accumulation alone drifts past 1e-6)."""
        return np.bincount(self.entry_rows(), weights=self.matrix.data.astype(np.float64), minlength=self.shape[0])

    def check_tokenizers(self, student: Vocab | None, teacher: Vocab | None) -> None:
        """Refuse a W built for other tokenizers, naming the side that differs (None: not checked)."""
        for side, expected, vocab in (("student", self.student, student), ("teacher", self.teacher, teacher)):
            if vocab is None:
                continue
            if vocab.size != expected.size:
                raise XTokenError(
                    f"{side} tokenizer {vocab.name} has {vocab.size:,} tokens but W was built for "
                    f"{expected.name} with {expected.size:,}"
                )
            if vocab.fingerprint != expected.fingerprint:
                raise XTokenError(
                    f"{side} tokenizer {vocab.name} is not the one W was built for ({expected.name}): "
                    "canonical vocabulary fingerprints differ"
                )

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


def csr_row(matrix: sp.csr_array, rules: np.ndarray, scores: np.ndarray, index: int) -> list[RowEntry]:
    """Row `index` of W's CSR arrays with provenance, heaviest first (ties: the lower teacher id)."""
    start, end = matrix.indptr[index], matrix.indptr[index + 1]
    entries = [
        RowEntry(int(matrix.indices[k]), float(matrix.data[k]), RULE_CODES[rules[k]], float(scores[k]))
        for k in range(start, end)
    ]
    return sorted(entries, key=lambda e: (-e.weight, e.teacher))


def leading_entries(matrix: sp.csr_array, rules: np.ndarray | None = None) -> Leading:
    """Each row's heaviest entry of a CSR W, vectorised; `rules` (nnz,) gives `Leading.rule`."""
    m, size = matrix, matrix.shape[0]
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(size, dtype=np.int64), counts)
    order = np.lexsort((m.indices, -m.data, rows))  # by row, heaviest first, then lower teacher id
    filled = counts > 0
    entry = np.full(size, -1, dtype=np.int64)
    entry[filled] = order[m.indptr[:-1][filled]]  # sorting by row keeps each row's span in place
    pick = entry[filled]
    teacher = np.full(size, -1, dtype=np.int64)
    weight = np.zeros(size, dtype=np.float32)
    rule = np.full(size, -1, dtype=np.int16)
    teacher[filled], weight[filled] = m.indices[pick], m.data[pick]
    if rules is not None:
        rule[filled] = rules[pick]
    return Leading(teacher, weight, rule, entry)


def common_pairs(leading: Leading, identity: np.ndarray, threshold: float = HKL_THRESHOLD) -> dict[int, int]:
    """H-KL common set from each row's leading entry, student id -> teacher id; `identity` (nnz,)
    flags the entries where the student token *is* the teacher token.

    Each student row offers its top teacher token when that weight reaches `threshold`. Where rows
    collide on a teacher token, the row that is it wins (the student's real `3`, not its `<0x33>`
    byte piece or a rule-made numeral row), then the higher weight, then the lower student id.
    """
    rows = np.flatnonzero((leading.entry >= 0) & (leading.weight >= threshold))
    cols, weights = leading.teacher[rows], leading.weight[rows]
    is_it = identity[leading.entry[rows]]
    order = np.lexsort((rows, -weights, ~is_it, cols))  # per teacher id: the winning claim first
    cols, rows = cols[order], rows[order]
    first = np.ones(len(cols), dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    return dict(zip(rows[first].tolist(), cols[first].tolist(), strict=True))


def build_time() -> str:
    """Now in UTC, or SOURCE_DATE_EPOCH when set, so that rebuilding gives byte-identical files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else None))


def build_projection(
    student: Vocab,
    teacher: Vocab,
    config: BuildConfig | None = None,
    *,
    rows: list[int] | None = None,
    context: RuleContext | None = None,
    progress: bool | None = None,
) -> Projection:
    """Build W from the rules of `config` (default rules, K = 4). `progress=None`: a bar on a terminal.
    A `corpus` rule reads and counts its corpus first (a bad file fails before any other work).
    `rows`: fill only these student rows (the others stay empty), as a bulk re-run of rules does;
    `context`: a `RuleContext` of the same pair to reuse (its teacher encoder is cached)."""
    config = config or BuildConfig()
    corpus = config.rule("corpus")
    counts = None
    if corpus:  # the files' checksums go into W's config (sidecar), checked against any already there
        texts = corpus_texts(corpus)
        corpus = checked_corpus(corpus)
        config = config.model_copy(update={"rules": tuple(corpus if r.name == "corpus" else r for r in config.rules)})
        counts = count_openers(student, teacher, texts)
    ctx = context or RuleContext(student, teacher)
    every = range(student.size) if rows is None else sorted(set(rows))
    candidates = [i for i in every if student.categories[i] != "unused"]
    open_rows, protected, special = list(candidates), set(), set()  # protected: exact and special rows
    parts: list[tuple[int, Entries]] = []
    bar = tqdm(config.rules, desc="build W", unit="rule", disable=None if progress is None else not progress)
    for rule in bar:
        bar.set_postfix_str(rule.name)
        if rule.name in BLENDING:
            continue  # blended into the assembled rows below
        if rule.name in ADDING:
            entries = RULES[rule.name](ctx, [r for r in candidates if r not in protected], rule)
        else:
            entries = RULES[rule.name](ctx, open_rows, rule)
            claimed = set(entries.rows)
            open_rows = [r for r in open_rows if r not in claimed]
            if rule.name in ONE_HOT_RULES:
                protected |= claimed
            if rule.name == "special":
                special |= claimed
        parts.append((RULE_CODES.index(rule.name), entries))
    matrix, rules, scores = assemble_parts(parts, (student.size, teacher.size), config.top_k)
    if corpus and counts is not None:
        kept = special if corpus.blend_exact else protected
        seen = corpus_entries(counts, [r for r in candidates if r not in kept], corpus)
        code = RULE_CODES.index("corpus")
        matrix, rules, scores = blend_counts(matrix, rules, scores, seen, corpus.prior, code, config.top_k)
    return Projection(matrix, rules, scores, TokenizerInfo.of(student), TokenizerInfo.of(teacher), config)
