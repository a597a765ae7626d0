"""The torch W (distill/sparse_w.py) against a dense W: projection, learnable values on the simplex,
export of a learned W, the H-KL and GOLD common sets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from loss_fixtures import (
    F64,
    TOPK,
    V_S,
)

from xtoken_align.distill.losses import (
    PKLLoss,
)
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.formats import load_projection, save_projection


def test_project_matches_dense(projection):
    w = ProjectionW.from_projection(projection).double()
    dense = torch.tensor(projection.matrix.toarray(), dtype=F64)
    p = torch.softmax(torch.randn(5, V_S, dtype=F64), -1).requires_grad_()
    columns = torch.tensor([3, 9, 17, 40])
    for cols, want in ((None, p @ dense), (columns, (p @ dense)[:, columns])):
        got = w.project(p, cols)
        assert got.dtype == F64
        torch.testing.assert_close(got, want)
        g = torch.randn_like(got)
        torch.testing.assert_close(*(torch.autograd.grad(x, p, g)[0] for x in (got, want)))
    z = torch.randn(5, V_S + 3, dtype=F64, requires_grad=True)  # 3 padding logits beyond W
    torch.testing.assert_close(w.project_logits(z, columns), (torch.softmax(z, -1)[:, :V_S] @ dense)[:, columns])
    assert torch.autograd.gradcheck(lambda x: w.project_logits(x, columns), (z,), fast_mode=True)
    assert ProjectionW.from_projection(projection).project(p.float()).dtype == torch.float32


def test_learnable_w_stays_on_the_simplex_and_has_exact_gradients(projection, batch):
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    w = ProjectionW.from_projection(projection, learnable=True).double()
    torch.testing.assert_close(w.values(), torch.tensor(projection.matrix.data, dtype=F64), atol=1e-6, rtol=1e-5)
    loss = PKLLoss(w, topk=TOPK, aggregation="mean")
    theta = w.theta.detach().clone().requires_grad_()

    def of_theta(th):
        return torch.func.functional_call(loss, {"w.theta": th}, (student.detach(), teacher, s_chunk, t_chunk))

    assert torch.autograd.gradcheck(of_theta, (theta,))
    of_theta(theta).backward()
    assert theta.grad.abs().sum() > 0
    with torch.no_grad():
        w.theta.add_(torch.randn_like(w.theta))
    sums = torch.zeros(V_S, dtype=F64).index_add(0, w.row, w.values())
    torch.testing.assert_close(sums, torch.ones(V_S, dtype=F64))
    assert ProjectionW.from_projection(projection).weight.requires_grad is False


def test_learned_w_exports_to_a_w_file(projection, tmp_path):
    w = ProjectionW.from_projection(projection, learnable=True)
    wide = int(np.flatnonzero(np.diff(projection.matrix.indptr) >= 2)[0])
    with torch.no_grad():
        w.theta[projection.matrix.indptr[wide]] += 1.0  # one entry of a row with several
    learned = w.to_projection(projection, note="test run")
    assert learned.history[-1]["action"] == "learned" and learned.history[-1]["note"] == "test run"
    assert learned.history[-1]["rows_changed"] >= 1
    np.testing.assert_array_equal(learned.matrix.indices, projection.matrix.indices)
    learned.check()
    again = load_projection(save_projection(learned, tmp_path / "w.safetensors"))
    np.testing.assert_array_equal(again.matrix.data, learned.matrix.data)
    np.testing.assert_allclose(learned.matrix.data, w.values().detach().numpy(), atol=1e-5)
    assert again.history == learned.history


def test_common_set_follows_score(projection):
    students, teachers = ProjectionW.from_projection(projection).common_set(0.6)
    assert dict(zip(students.tolist(), teachers.tolist(), strict=True)) == projection.common_set(0.6)
    assert students.tolist() == sorted(students.tolist())


def test_string_common_set_is_one_to_one():
    student = SimpleNamespace(pieces=["a", "b", "", "a", "Ġthe", "12"])
    teacher = SimpleNamespace(pieces=["", "b", "a", "Ġthe", "b", "1"])
    s, t = ProjectionW.string_common_set(student, teacher)
    assert list(zip(s.tolist(), t.tolist(), strict=True)) == [(0, 2), (1, 1), (4, 3)]


def test_training_common_set_is_the_one_diagnose_reports() -> None:
    """A byte-fallback student: the teacher's `3` goes to the real `3`, not `<0x33>`, in training too."""
    from conftest import vocab

    from xtoken_align.projection import build_projection

    student, teacher = vocab("llama2"), vocab("qwen3")
    projection = build_projection(student, teacher, progress=False)
    rows, cols = ProjectionW.from_projection(projection).common_set()
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == projection.common_set()
    three = student.id_of_bytes(b"3")
    assert three in rows.tolist() and student.pieces.index("<0x33>") not in rows.tolist()
