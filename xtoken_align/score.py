"""How good a W is, before any GPU is spent: coverage, off-piece mass, and corpus agreement.

- Coverage per student category: rows that are filled, exact one-hot, and in the H-KL common set
  (method.md §4: top weight ≥ 0.6; collisions on a teacher id keep the highest weight, ties the
  lowest student id).
- Off-piece mass: weight on teacher tokens that are neither the token's exact match nor among the
  teacher's own pieces of its text. Zero for W built with the default rules; the reference builder's
  "scale trick" puts about 29% of every non-exact row there.
- Corpus agreement: tokenise a corpus with both tokenizers, align by byte offsets, and count how
  often W's top teacher token for a student token is the teacher token that starts at the same byte
  (agreement@1), and the W mass on it.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from xtoken_align.categories import category_rank
from xtoken_align.errors import XTokenError
from xtoken_align.projection import Projection
from xtoken_align.rules import RULE_CODES, RuleContext
from xtoken_align.vocab import Vocab

HKL_THRESHOLD = 0.6
LEAK_TOLERANCE = 1e-3


def default_corpus() -> Path:
    """GSM8K test problems, shipped with the package (MIT licence beside the file)."""
    return Path(str(resources.files("xtoken_align") / "data" / "gsm8k" / "test.jsonl"))


def read_corpus(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of a JSONL file (`text`, or GSM8K's `question` + `answer`) or of a plain-text file
    (one text per paragraph). Refuses empty and binary files."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise XTokenError(f"corpus limit {limit}: give a positive number of texts")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise XTokenError(f"no such corpus file: {path}") from None
    except IsADirectoryError:
        raise XTokenError(f"corpus {path} is a folder, not a file") from None
    if b"\x00" in raw[:65536]:
        raise XTokenError(f"corpus {path} looks binary (NUL bytes); give a text or JSONL file")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XTokenError(f"corpus {path} is not UTF-8 text ({exc})") from None
    texts: list[str] = []
    if path.suffix in (".jsonl", ".json"):
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise XTokenError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if isinstance(row, dict) and isinstance(row.get("text"), str):
                texts.append(row["text"])
            elif isinstance(row, dict) and isinstance(row.get("question"), str):
                texts.append(f"{row['question']}\n{row.get('answer', '')}")
            else:
                raise XTokenError(f"{path}:{number}: expected an object with 'text' or 'question'")
    else:
        texts = [p for p in content.split("\n\n") if p.strip()]
    if not texts:
        raise XTokenError(f"corpus {path} holds no text")
    return texts[:limit] if limit else texts


def common_set(projection: Projection, threshold: float = HKL_THRESHOLD) -> dict[int, int]:
    """H-KL common set, student id -> teacher id (method.md §4)."""
    m = projection.matrix
    best: dict[int, tuple[float, int]] = {}  # teacher id -> (weight, student id)
    for row in range(m.shape[0]):
        start, end = m.indptr[row], m.indptr[row + 1]
        if start == end:
            continue
        k = start + int(np.argmax(m.data[start:end]))  # columns are sorted: ties go to the lower id
        weight, col = float(m.data[k]), int(m.indices[k])
        if weight < threshold:
            continue
        held = best.get(col)
        if held is None or weight > held[0]:  # equal weight: the earlier, lower student id stays
            best[col] = (weight, row)
    return {row: col for col, (_, row) in best.items()}


def coverage(projection: Projection, student: Vocab, threshold: float = HKL_THRESHOLD) -> dict[str, dict[str, int]]:
    filled = np.diff(projection.matrix.indptr) > 0
    exact_code = RULE_CODES.index("exact")
    entry_rows = np.repeat(np.arange(student.size), np.diff(projection.matrix.indptr))
    exact_rows = set(entry_rows[projection.rules == exact_code].tolist())
    common = common_set(projection, threshold)
    counts: dict[str, Counter] = {}
    for row in range(student.size):
        category = "special" if row in student.special else student.categories[row]
        if category == "unused":
            continue
        c = counts.setdefault(category, Counter())
        c["total"] += 1
        c["covered"] += bool(filled[row])
        c["exact"] += row in exact_rows
        c["common"] += row in common
    ordered = sorted(counts.items(), key=lambda kv: (category_rank(kv[0]), kv[0]))
    return {k: {f: int(c[f]) for f in ("total", "covered", "exact", "common")} for k, c in ordered}


def off_piece_mass(projection: Projection, student: Vocab, teacher: Vocab) -> dict:
    """Weight on teacher tokens outside each regular row's own candidates (exact match or pieces)."""
    ctx = RuleContext(student, teacher)
    m = projection.matrix
    regular = [r for r in range(student.size) if student.is_regular(r) and m.indptr[r + 1] > m.indptr[r]]
    allowed: dict[int, set[int]] = {}
    needs_pieces = []
    for row in regular:
        exact = teacher.id_of_bytes(student.token_bytes[row])
        if exact is not None:
            allowed[row] = {exact}
        else:
            needs_pieces.append(row)
    spelled = ctx.retokenize(needs_pieces)
    for row in needs_pieces:
        pieces = spelled.get(row) or ctx.segment_bytes(student.token_bytes[row]) or []
        allowed[row] = set(pieces)
    leaks, leaked_to = np.zeros(len(regular)), Counter()
    for i, row in enumerate(regular):
        for k in range(m.indptr[row], m.indptr[row + 1]):
            col = int(m.indices[k])
            if col not in allowed[row]:
                leaks[i] += float(m.data[k])
                leaked_to[col] += 1
    non_exact = np.isin(np.asarray(regular, dtype=np.int64), np.asarray(needs_pieces, dtype=np.int64))
    leaky = leaks > LEAK_TOLERANCE
    return {
        "rows_checked": len(regular),
        "rows_with_off_piece_mass": int(leaky.sum()),
        "total_off_piece_mass": round(float(leaks.sum()), 4),
        "mean_of_affected_rows": round(float(leaks[leaky].mean()), 4) if leaky.any() else 0.0,
        "mean_of_non_exact_rows": round(float(leaks[non_exact].mean()), 4) if non_exact.any() else 0.0,
        "top_receivers": [
            {"teacher_id": col, "piece": teacher.pieces[col], "rows": count} for col, count in leaked_to.most_common(5)
        ],
    }


def token_spans(vocab: Vocab, ids, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of each token in the text it was encoded from; SentencePiece's
    dropped first space is taken off the first token.

    `lengths` (canonical byte length per id) can be passed in to save recomputing it per text.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if lengths is None:
        lengths = np.fromiter((len(b) for b in vocab.token_bytes), dtype=np.int64, count=vocab.size)
    ends = np.cumsum(lengths[ids])
    if vocab.strips_leading_space and len(ids) and vocab.token_bytes[ids[0]].startswith(b" "):
        ends = ends - 1
    starts = np.maximum(ends - lengths[ids], 0)
    return starts, ends


def corpus_agreement(projection: Projection, student: Vocab, teacher: Vocab, texts: list[str]) -> dict:
    """agreement@1 and mass on the teacher's actual token, over student tokens whose start the
    teacher shares; per student category."""
    m = projection.matrix
    top_col = np.full(student.size, -1, dtype=np.int64)
    filled = np.flatnonzero(np.diff(m.indptr) > 0)
    for row in filled:
        start, end = m.indptr[row], m.indptr[row + 1]
        top_col[row] = m.indices[start + int(np.argmax(m.data[start:end]))]
    s_len = np.fromiter((len(b) for b in student.token_bytes), dtype=np.int64, count=student.size)
    t_len = np.fromiter((len(b) for b in teacher.token_bytes), dtype=np.int64, count=teacher.size)
    s_ids_all, t_ids_all = [], []
    for s_enc, t_enc in zip(
        student.tokenizer.encode_batch(texts, add_special_tokens=False),
        teacher.tokenizer.encode_batch(texts, add_special_tokens=False),
        strict=True,
    ):
        s_ids, t_ids = np.asarray(s_enc.ids, dtype=np.int64), np.asarray(t_enc.ids, dtype=np.int64)
        if not len(s_ids) or not len(t_ids):
            continue
        s_start, t_start = token_spans(student, s_ids, s_len)[0], token_spans(teacher, t_ids, t_len)[0]
        where = np.searchsorted(t_start, s_start)
        where = np.minimum(where, len(t_start) - 1)
        aligned = t_start[where] == s_start
        s_ids_all.append(s_ids[aligned])
        t_ids_all.append(t_ids[where[aligned]])
        s_ids_all.append(np.full((~aligned).sum(), -1))  # unaligned student tokens
        t_ids_all.append(np.full((~aligned).sum(), -1))
    s_ids = np.concatenate(s_ids_all) if s_ids_all else np.zeros(0, np.int64)
    t_ids = np.concatenate(t_ids_all) if t_ids_all else np.zeros(0, np.int64)
    aligned = s_ids >= 0
    total_tokens = len(s_ids)
    s_al, t_al = s_ids[aligned], t_ids[aligned]
    hits = top_col[s_al] == t_al
    mass = np.asarray(m[s_al, t_al]).ravel() if len(s_al) else np.zeros(0)
    categories: dict[str, dict] = {}
    cats = np.asarray(["special" if s in student.special else student.categories[s] for s in s_al.tolist()])
    for category in sorted(set(cats.tolist()), key=lambda c: (category_rank(c), c)):
        pick = cats == category
        categories[category] = {
            "tokens": int(pick.sum()),
            "agreement@1": round(float(hits[pick].mean()), 4),
            "mass": round(float(mass[pick].mean()), 4),
        }
    return {
        "texts": len(texts),
        "student_tokens": int(total_tokens),
        "aligned_tokens": int(aligned.sum()),
        "aligned_share": round(float(aligned.mean()), 4) if total_tokens else 0.0,
        "agreement@1": round(float(hits.mean()), 4) if len(hits) else 0.0,
        "mass": round(float(mass.mean()), 4) if len(mass) else 0.0,
        "categories": categories,
    }


def score_projection(
    projection: Projection, student: Vocab, teacher: Vocab, texts: list[str] | None, corpus_name: str = ""
) -> dict:
    """The whole `xtoken-align score` report as one JSON-ready dict."""
    m = projection.matrix
    regular = np.asarray([i for i in range(student.size) if student.is_regular(i)])
    filled = np.diff(m.indptr) > 0
    sums = projection.row_sums()
    rule_counts = Counter(RULE_CODES[c] for c in projection.rules.tolist())
    report = {
        "student": vars(projection.student),
        "teacher": vars(projection.teacher),
        "shape": list(projection.shape),
        "nnz": int(m.nnz),
        "config": projection.config.model_dump() if projection.config else None,
        "entries_per_rule": dict(rule_counts.most_common()),
        "rows": {
            "regular": int(len(regular)),
            "regular_filled": int(filled[regular].sum()),
            "regular_summing_to_1": int((np.abs(sums[regular] - 1) <= 1e-6).sum()),
            "special_unmatched": [
                {"id": i, "piece": student.pieces[i], "roles": student.special[i]}
                for i in sorted(student.special)
                if not filled[i] and student.special[i] != ["reserved"]
            ],
            "special_reserved_unmatched": sum(
                1 for i in student.special if not filled[i] and student.special[i] == ["reserved"]
            ),
        },
        "coverage": coverage(projection, student),
        "off_piece_mass": off_piece_mass(projection, student, teacher),
    }
    if texts is not None:
        report["corpus"] = {"name": corpus_name, **corpus_agreement(projection, student, teacher, texts)}
    return report
