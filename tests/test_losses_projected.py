"""P-KL (losses/projected.py): float32 math, the top-k columns, teacher mass W cannot reach, the two
treatments of the projected student's mass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_fixtures import (
    TAIL,
    TOPK,
    V_T,
    as_projection,
    make,
    random_w,
    reference,
    unreachable_reference,
)

from xtoken_align.distill.losses import (
    HKLLoss,
    PKLLoss,
)
from xtoken_align.distill.sparse_w import ProjectionW


def test_float32_inputs_compute_in_float32(projection, batch):
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    _, kw = make("p_kl", projection, "mean", 1.0, TAIL)
    module = PKLLoss(ProjectionW.from_projection(projection), topk=TOPK)
    got = module(student.float(), teacher.float(), s_chunk, t_chunk, labels)
    assert got.dtype == torch.float32
    want = reference("p_kl", student, teacher, s_chunk, t_chunk, labels, t_labels, **kw)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)
    assert module(student.bfloat16(), teacher.bfloat16(), s_chunk, t_chunk, labels).dtype == torch.float32
    _, kw = make("h_kl", projection, "mean", 1.0, TAIL)
    module = HKLLoss(ProjectionW.from_projection(projection), tail=TAIL)
    got = module(student.float(), teacher.float(), s_chunk, t_chunk)
    want = reference("h_kl", student, teacher, s_chunk, t_chunk, labels, t_labels, **kw)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def test_topk_restriction_changes_p_kl(projection, batch):
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    w = ProjectionW.from_projection(projection).double()
    full, cut = (PKLLoss(w, topk=k)(student, teacher, s_chunk, t_chunk, labels) for k in (V_T, TOPK))
    assert not torch.isclose(full, cut)
    torch.testing.assert_close(PKLLoss(w, topk=10 * V_T)(student, teacher, s_chunk, t_chunk, labels), full)


def test_p_kl_stays_finite_on_unreachable_teacher_ids(batch):
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    projection = as_projection(*random_w(reachable=False))
    assert (np.bincount(projection.matrix.indices, minlength=V_T) == 0).any()
    value = PKLLoss(ProjectionW.from_projection(projection).double(), topk=V_T)(
        student, teacher, s_chunk, t_chunk, labels
    )
    (grad,) = torch.autograd.grad(value, student)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("student_mass", ["renormalise", "drop"])
def test_p_kl_value_does_not_depend_on_dtype(student_mass, batch):
    """With teacher mass on ids W cannot reach, float32, float64 and bf16 give the same P-KL (that mass
    is left out and reported, not priced at a dtype's smallest normal number: 87.3 vs 708.4 per unit)."""
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    projection = as_projection(*random_w(reachable=False))
    dense = projection.matrix.toarray()
    assert (dense.sum(0) == 0).sum() >= 3
    w = ProjectionW.from_projection(projection)
    values, grads = {}, {}
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        module = PKLLoss(w.double() if dtype == torch.float64 else w, topk=V_T, student=student_mass)
        z = student.detach().to(dtype).requires_grad_()
        value = module(z, teacher.to(dtype), s_chunk, t_chunk, labels)
        (grad,) = torch.autograd.grad(value, z)
        values[dtype], grads[dtype] = float(value.detach()), grad.double()
        assert 0.02 < float(module.stats["unreachable"]) < 1
    assert values[torch.float32] == pytest.approx(values[torch.float64], rel=1e-5)
    assert values[torch.bfloat16] == pytest.approx(values[torch.float64], rel=1e-2)
    torch.testing.assert_close(grads[torch.float32], grads[torch.float64], atol=1e-6, rtol=1e-4)
    want = reference("p_kl", student, teacher, s_chunk, t_chunk, labels, t_labels, w=projection.matrix,
                     topk=V_T, student_mass=student_mass)  # fmt: skip
    assert values[torch.float64] == pytest.approx(float(want.detach()), rel=1e-9)
    assert float(module.stats["unreachable"]) == pytest.approx(unreachable_reference(teacher, t_chunk, dense), rel=1e-2)
    full = PKLLoss(ProjectionW.from_projection(as_projection(*random_w())).double(), topk=V_T)
    full(student, teacher, s_chunk, t_chunk, labels)
    assert float(full.stats["unreachable"]) == 0.0  # every column reachable: nothing to report


def test_p_kl_top_k_picks_only_reachable_columns(batch):
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    projection = as_projection(*random_w(reachable=False))
    module = PKLLoss(ProjectionW.from_projection(projection).double(), topk=TOPK)
    teacher = teacher.clone()
    empty = torch.tensor(projection.matrix.toarray().sum(0) == 0)
    teacher[..., empty] += 30.0  # the teacher's favourites are ids W cannot reach
    columns = module.batch_context(lambda: teacher.reshape(-1, V_T).amax(0))  # the micro-batch top-k
    assert len(columns) == TOPK and not bool(empty[columns].any())
    value = module(student, teacher, s_chunk, t_chunk, labels)
    want = reference("p_kl", student, teacher, s_chunk, t_chunk, labels, t_labels, w=projection.matrix, topk=TOPK)
    torch.testing.assert_close(value, want)
    assert float(module.stats["unreachable"]) > 0.9


def test_p_kl_treatments_agree_on_every_column(projection, batch):
    """On all of W's columns the projected student sums to 1: renormalising changes nothing."""
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    w = ProjectionW.from_projection(projection).double()
    full = [
        PKLLoss(w, topk=V_T, student=m)(student, teacher, s_chunk, t_chunk, labels) for m in ("renormalise", "drop")
    ]
    torch.testing.assert_close(*full)
    cut = [
        PKLLoss(w, topk=TOPK, student=m)(student, teacher, s_chunk, t_chunk, labels) for m in ("renormalise", "drop")
    ]
    assert float(cut[0].detach()) < float(cut[1].detach())  # within fewer columns the projected mass is below 1
    with pytest.raises(ValueError, match="renormalise, drop"):
        PKLLoss(w, student="scale")
