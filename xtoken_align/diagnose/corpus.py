"""Where GOLD's partition bites on real text: two tokenisations of a corpus, chunked by byte offsets.

`corpus_mass` counts, per student category, the next-token targets outside GOLD's strict set: the
mass its common-set KL pushes down. Every student token of every text (no BOS) is a target. Chunks
come from `xtoken_align.spans`, the same the pair view, `score` and training use; a position is
"not 1:1" when its chunk is not one student token facing one teacher token (or it is in no chunk:
a stretch where the two tokenizers' bytes differ). Everything is vectorised over the whole corpus;
10,000 texts cost little more than tokenising them. Left out: the training aligner (`distill/`).
"""

from __future__ import annotations

import numpy as np

from xtoken_align.diagnose.report import CorpusCategory, CorpusMass
from xtoken_align.spans import Spans, align_chunks


def one_to_one(student: Spans, teacher: Spans) -> np.ndarray:
    """(N_S,) bool: the student token's chunk holds exactly one student and one teacher token."""
    chunks = align_chunks(student, teacher)
    none = chunks.total  # the slot that counts the tokens in no chunk
    s_chunk = np.where(chunks.student >= 0, chunks.student, none)
    s_count = np.bincount(s_chunk, minlength=none + 1)
    t_count = np.bincount(np.where(chunks.teacher >= 0, chunks.teacher, none), minlength=none + 1)
    return (s_chunk != none) & (s_count[s_chunk] == 1) & (t_count[s_chunk] == 1)


def corpus_mass(
    student_tokens: Spans,
    teacher_tokens: Spans,
    uncommon: np.ndarray,
    codes: np.ndarray,
    names: list[str],
    critical_codes: list[int],
    name: str = "",
) -> CorpusMass:
    """The corpus section of a diagnose report. `uncommon`: (V_S,) bool, outside the strict set;
    `codes`: (V_S,) index into `names`, the student categories."""
    ids = student_tokens.ids
    single = one_to_one(student_tokens, teacher_tokens)
    cats, off = codes[ids], uncommon[ids]
    tokens = np.bincount(cats, minlength=len(names))
    lost = np.bincount(cats, weights=off, minlength=len(names)).astype(np.int64)
    split = np.bincount(cats, weights=~single, minlength=len(names)).astype(np.int64)
    n = max(len(ids), 1)
    return CorpusMass(
        name=name,
        texts=student_tokens.texts,
        student_tokens=len(ids),
        teacher_tokens=len(teacher_tokens.ids),
        suppressed_tokens=int(off.sum()),
        suppressed_mass=round(float(off.sum()) / n, 6),
        critical_suppressed_mass=round(float(lost[critical_codes].sum()) / n, 6),
        not_one_to_one=round(float((~single).sum()) / n, 6),
        categories={
            names[k]: CorpusCategory(
                tokens=int(tokens[k]),
                uncommon=int(lost[k]),
                suppressed_mass=round(float(lost[k]) / n, 6),
                not_one_to_one=int(split[k]),
            )
            for k in np.flatnonzero(tokens).tolist()
        },
    )
