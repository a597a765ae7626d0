"""H-KL, GOLD, ULD (losses/hybrid.py): non-trivial common sets, and a negative H-KL under the dynamic
scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_fixtures import (
    F64,
    FAKE_STUDENT,
    FAKE_TEACHER,
    V_S,
)

from xtoken_align.distill.losses import (
    HKLLoss,
    combine,
    cross_entropy,
    kd_scale,
)
from xtoken_align.distill.sparse_w import ProjectionW


def test_common_sets_are_nontrivial(projection):
    """The reference comparisons above exercise collisions and both tail truncations."""
    pairs = projection.common_set()
    assert 5 <= len(pairs) < V_S
    dominant = {int(projection.matrix.indices[projection.matrix.indptr[s]]) for s in range(0, V_S, 3)}
    assert len(dominant) < len(range(0, V_S, 3))  # several rows compete for one teacher id
    gold_student, _ = ProjectionW.string_common_set(FAKE_STUDENT, FAKE_TEACHER)
    assert 0 < len(gold_student) < V_S


def test_negative_h_kl_keeps_its_gradient_direction_under_the_dynamic_scale():
    """H-KL < 0 (student mass on the common set above the teacher's, tail cut to one value): the old
    sg(ce / kd) was negative and turned the KD step into ascent; |ce| / |kd| keeps it descent."""
    rows = [[(0, 1.0)], [(1, 0.5), (2, 0.5)], [(2, 0.5), (3, 0.5)], [(3, 0.5), (1, 0.5)]]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices, data = [t for r in rows for t, _ in r], [x for r in rows for _, x in r]
    w = ProjectionW(indptr, indices, data, (4, 4)).double()
    module = HKLLoss(w, tail=1)
    assert module.common_student.tolist() == [0] and module.common_teacher.tolist() == [0]
    z = torch.log(torch.tensor([[[0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]]], dtype=F64)).requires_grad_()
    teacher = torch.zeros(1, 1, 4, dtype=F64)  # uniform: 0.25 on the common id
    ids, labels = torch.zeros(1, 1, dtype=torch.long), torch.tensor([[3]])  # an uncommon id is the truth
    kd = module(z, teacher, ids, ids, labels)
    want = 0.25 * np.log(0.25 / 0.9) + abs(0.1 / 3 - 0.25)
    assert float(kd.detach()) == pytest.approx(want) and float(kd.detach()) < 0
    ce = cross_entropy(z, labels)
    (d_kd,) = torch.autograd.grad(kd, z, retain_graph=True)
    cosine = torch.nn.functional.cosine_similarity
    (d_total,) = torch.autograd.grad(combine(ce, kd), z, retain_graph=True)
    assert float(kd_scale(ce, kd)) > 0
    assert float(cosine(d_total.reshape(1, -1), d_kd.reshape(1, -1))) > 0
    (d_signed,) = torch.autograd.grad((ce / kd).detach() * kd + ce, z)  # the signed ratio, before issue 12
    assert float(cosine(d_signed.reshape(1, -1), d_kd.reshape(1, -1))) < 0
