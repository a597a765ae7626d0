"""xtoken_align/diff.py and `xtoken-align diff`: against a naive per-row reference on a real W
(Llama-3 student, Qwen3 teacher, default rules) and an edited copy of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import vocab

from xtoken_align.diff import CHANGE_TOLERANCE, DiffReport, diff_projections, diff_text
from xtoken_align.edits import apply_rows
from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection, save_projection
from xtoken_align.projection import Projection, RowEntry, build_projection


@pytest.fixture(scope="module")
def pair():
    student, teacher = vocab("llama3"), vocab("qwen3")
    return student, teacher, build_projection(student, teacher, progress=False)


def edited_copy(base: Projection, student) -> tuple[Projection, dict[int, float]]:
    """An edited copy and, per row meant to change, the mass it moves."""
    sid = student.pieces.index("345")
    row = base.row(sid)
    reweighted = [RowEntry(e.teacher, w, "edit", w) for e, w in zip(row, [0.5, 0.3, 0.2], strict=True)]
    moved_345 = 0.5 * sum(abs(e.weight - w) for e, w in zip(row, [0.5, 0.3, 0.2], strict=True))
    word = student.pieces.index("Ġthe")
    disjoint = [RowEntry(0, 0.25, "edit", 1.0), RowEntry(1, 0.75, "edit", 1.0)]  # `!` and `"`: not in the row
    emptied = student.pieces.index("Ġcat")
    tiny = student.pieces.index("Ġdog")  # within tolerance: not a change
    tiny_row = [RowEntry(e.teacher, e.weight, e.rule, e.score) for e in base.row(tiny)]
    relabelled = student.pieces.index("Ġhouse")  # another rule, same weights: not a change
    edits = {
        sid: reweighted,
        word: disjoint,
        emptied: [],
        tiny: tiny_row,
        relabelled: [RowEntry(e.teacher, e.weight, "edit", e.score) for e in base.row(relabelled)],
    }
    edited = apply_rows(base, edits)
    edited.matrix.data[edited.matrix.indptr[tiny]] += 1e-8
    return edited, {sid: moved_345, word: 1.0, emptied: 0.5}


def naive(a: Projection, b: Projection) -> np.ndarray:
    """Per row, ½·Σ|a − b| with dicts; 0 where no entry differs beyond the tolerance."""
    out = np.zeros(a.shape[0])
    for i in range(a.shape[0]):
        rows = []
        for m in (a.matrix, b.matrix):
            span = slice(m.indptr[i], m.indptr[i + 1])
            rows.append(dict(zip(m.indices[span].tolist(), m.data[span].astype(np.float64).tolist(), strict=True)))
        gaps = [abs(rows[0].get(t, 0.0) - rows[1].get(t, 0.0)) for t in rows[0].keys() | rows[1].keys()]
        if gaps and max(gaps) > CHANGE_TOLERANCE:
            out[i] = 0.5 * sum(gaps)
    return out


def test_diff_matches_a_naive_per_row_reference(pair) -> None:
    student, teacher, base = pair
    edited, expected = edited_copy(base, student)
    report = diff_projections(base, edited, student, teacher, top=10)
    reference = naive(base, edited)
    assert set(np.flatnonzero(reference)) == set(expected)
    assert report.rows_changed == len(expected) == 3
    assert report.mass_moved == pytest.approx(reference.sum(), abs=1e-6)
    assert report.mass_moved == pytest.approx(sum(expected.values()), abs=1e-6)
    assert report.mean_mass_moved == pytest.approx(report.mass_moved / 3)
    assert [r.student.id for r in report.top] == sorted(expected, key=lambda i: (-expected[i], i))
    assert [r.mass_moved for r in report.top] == pytest.approx(sorted(expected.values(), reverse=True), abs=1e-6)
    codes = student.category_codes
    for name, c in report.categories.items():
        mask = codes.mask([name])
        assert (c.rows, c.rows_changed) == (int(mask.sum()), int((reference[mask] > 0).sum())), name
        assert c.mass_moved == pytest.approx(reference[mask].sum(), abs=1e-6), name
    assert sum(c.rows for c in report.categories.values()) == report.rows == student.size
    top = {r.student.id: r for r in report.top}
    sid = student.pieces.index("345")
    assert [e.display for e in top[sid].a] == ["3", "4", "5"] and [e.rule for e in top[sid].b] == ["edit"] * 3
    assert [e.weight for e in top[sid].b] == pytest.approx([0.5, 0.3, 0.2])
    assert top[student.pieces.index("Ġcat")].b == []
    text = diff_text(report)
    assert "rows changed 3 of" in text and "(empty)" in text


def test_same_w_and_reversed_diff(pair) -> None:
    student, teacher, base = pair
    same = diff_projections(base, base, student, teacher)
    assert (same.rows_changed, same.mass_moved, same.top) == (0, 0.0, [])
    edited, _ = edited_copy(base, student)
    forward, backward = (diff_projections(x, y, student, teacher) for x, y in ((base, edited), (edited, base)))
    assert (forward.rows_changed, forward.mass_moved) == (backward.rows_changed, pytest.approx(backward.mass_moved))


def test_refuses_ws_of_other_tokenizer_pairs(pair) -> None:
    student, teacher, base = pair
    other = build_projection(vocab("llama2"), vocab("mistral-v1"), progress=False)
    with pytest.raises(XTokenError, match="different student tokenizers"):
        diff_projections(base, other, student, teacher)
    with pytest.raises(XTokenError, match="W was built for llama2"):
        diff_projections(other, other, student, teacher)


def test_cli_json_and_refusal(run_cli, tmp_path: Path) -> None:
    student, teacher = vocab("llama2"), vocab("mistral-v1")
    base = build_projection(student, teacher, progress=False)
    sid = student.pieces.index("▁the")
    edited = apply_rows(base, {sid: [RowEntry(0, 0.5, "edit", 1.0), *base.row(sid)[:1]]})
    edited.matrix.data[edited.matrix.indptr[sid] : edited.matrix.indptr[sid + 1]] = 0.5
    a, b = save_projection(base, tmp_path / "A.safetensors"), save_projection(edited, tmp_path / "B.safetensors")
    result = run_cli("diff", str(a), str(b), "--top", "5", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = DiffReport.model_validate_json(result.stdout)
    assert report == diff_projections(load_projection(a), load_projection(b), student, teacher, 5, (str(a), str(b)))
    assert (report.rows_changed, report.mass_moved, [r.student.id for r in report.top]) == (1, 0.5, [sid])
    text = run_cli("diff", str(a), str(b))
    assert text.returncode == 0 and "rows changed 1 of 32,000" in text.stdout

    other = save_projection(build_projection(student, vocab("llama3"), progress=False), tmp_path / "C.safetensors")
    refused = run_cli("diff", str(a), str(other), "--json")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("xtoken-align: error: the two Ws are for different teacher tokenizers")
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = run_cli("diff", str(a), str(tmp_path / "nope.safetensors"))
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"xtoken-align: error: no such W file: {tmp_path / 'nope.safetensors'}"
    ]
