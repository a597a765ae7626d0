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
from xtoken_align.spans import align_chunks, encode_spans, round_trips
from xtoken_align.textfile import read_text
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
    content = read_text(path, "corpus", "a text or JSONL file")
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
    """H-KL common set of a W, student id -> teacher id (method.md §4; see `common_pairs`)."""
    return common_pairs(projection.matrix, projection.identity(), threshold)


def common_pairs(matrix, identity: np.ndarray, threshold: float = HKL_THRESHOLD) -> dict[int, int]:
    """H-KL common set of a CSR matrix, student id -> teacher id; `identity` (nnz,) flags the entries
    where the student token *is* the teacher token (`exact` or `special` rule).

    Each student row offers its top teacher token when that weight reaches `threshold`. Where rows
    collide on a teacher token, the row that is it wins (the student's real `3`, not its `<0x33>`
    byte piece or a rule-made numeral row), then the higher weight, then the lower student id.
    """
    m = matrix
    best: dict[int, tuple[bool, float, int]] = {}  # teacher id -> (is it, weight, student id)
    for row in range(m.shape[0]):
        start, end = m.indptr[row], m.indptr[row + 1]
        if start == end:
            continue
        k = start + int(np.argmax(m.data[start:end]))  # columns are sorted: ties go to the lower id
        weight, col = float(m.data[k]), int(m.indices[k])
        if weight < threshold:
            continue
        claim = (bool(identity[k]), weight, row)
        held = best.get(col)
        if held is None or claim[:2] > held[:2]:  # equal claims: the earlier, lower student id stays
            best[col] = claim
    return {row: col for col, (_, _, row) in best.items()}


def coverage(projection: Projection, student: Vocab, threshold: float = HKL_THRESHOLD) -> dict[str, dict[str, int]]:
    filled = np.diff(projection.matrix.indptr) > 0
    exact_code = RULE_CODES.index("exact")
    entry_rows = np.repeat(np.arange(student.size), np.diff(projection.matrix.indptr))
    exact_rows = set(entry_rows[projection.rules == exact_code].tolist())
    common = common_set(projection, threshold)
    counts: dict[str, Counter] = {}
    for row in range(student.size):
        category = student.categories[row]
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


def corpus_agreement(projection: Projection, student: Vocab, teacher: Vocab, texts: list[str]) -> dict:
    """agreement@1 and mass on the teacher's actual token, over student tokens that open a chunk
    (`spans.align_chunks`: the teacher has a token starting at the same byte, `aligned_share`);
    per student category. `chunked_share`: student tokens in a chunk that closes on both sides, as
    training sees them. Texts that a tokenizer does not round-trip are counted and named apart."""
    m = projection.matrix
    top_col = np.full(student.size, -1, dtype=np.int64)
    filled = np.flatnonzero(np.diff(m.indptr) > 0)
    for row in filled:
        start, end = m.indptr[row], m.indptr[row + 1]
        top_col[row] = m.indices[start + int(np.argmax(m.data[start:end]))]
    s, t = encode_spans(student, texts), encode_spans(teacher, texts)
    chunks = align_chunks(s, t)
    s_opens, t_opens = _chunk_openers(chunks.student, chunks.total), _chunk_openers(chunks.teacher, chunks.total)
    position = np.arange(len(s.ids))
    aligned = (chunks.student >= 0) & (s_opens[chunks.student] == position)
    s_al, t_al = s.ids[aligned], t.ids[t_opens[chunks.student[aligned]]]
    hits = top_col[s_al] == t_al
    mass = np.asarray(m[s_al, t_al]).ravel() if len(s_al) else np.zeros(0)
    categories: dict[str, dict] = {}
    names = np.asarray(student.categories)
    every, cats = names[s.ids], names[s_al]
    for category in sorted(set(cats.tolist()), key=lambda c: (category_rank(c), c)):
        pick = cats == category
        categories[category] = {
            "tokens": int(pick.sum()),
            "aligned_share": round(int(pick.sum()) / int((every == category).sum()), 4),  # of the category's tokens
            "agreement@1": round(float(hits[pick].mean()), 4),
            "mass": round(float(mass[pick].mean()), 4),
        }
    s_ok, t_ok = round_trips(s, texts), round_trips(t, texts)
    clean = np.repeat(s_ok & t_ok, s.count)
    return {
        "texts": len(texts),
        "student_tokens": len(s.ids),
        "aligned_tokens": int(aligned.sum()),
        "aligned_share": _share(aligned),
        "aligned_share_round_trip": _share(aligned[clean]),
        "chunked_share": _share(chunks.student[~s.special] >= 0),
        "not_round_trip": {
            "student": int((~s_ok).sum()),
            "teacher": int((~t_ok).sum()),
            "texts": [
                {"text": k, "side": _sides(s_ok[k], t_ok[k]), "starts": texts[k][:60]}
                for k in np.flatnonzero(~(s_ok & t_ok))[:NAMED_TEXTS].tolist()
            ],
        },
        "agreement@1": _share(hits),
        "mass": round(float(mass.mean()), 4) if len(mass) else 0.0,
        "categories": categories,
    }


NAMED_TEXTS = 20  # texts named in a report's not-round-trip list; the counts cover all


def _chunk_openers(chunk: np.ndarray, total: int) -> np.ndarray:
    """(total + 1,) position of the first token of each chunk (slot `total`, for -1: unused)."""
    opens = np.full(total + 1, -1, dtype=np.int64)
    kept = np.flatnonzero(chunk >= 0)
    opens[chunk[kept[::-1]]] = kept[::-1]  # reversed: the earliest position is written last
    return opens


def _share(flags: np.ndarray) -> float:
    return round(float(flags.mean()), 4) if len(flags) else 0.0


def _sides(student_ok: bool, teacher_ok: bool) -> str:
    return "both" if not (student_ok or teacher_ok) else "student" if not student_ok else "teacher"


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
                if not filled[i] and student.categories[i] != "special:unused"
            ],
            "special_unused_unmatched": sum(
                1 for i in student.special if not filled[i] and student.categories[i] == "special:unused"
            ),
        },
        "coverage": coverage(projection, student),
        "off_piece_mass": off_piece_mass(projection, student, teacher),
    }
    if texts is not None:
        report["corpus"] = {"name": corpus_name, **corpus_agreement(projection, student, teacher, texts)}
    return report
