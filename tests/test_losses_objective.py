"""Cross-entropy and the Eq. 7 combination (losses/objective.py)."""

from __future__ import annotations

import pytest
import torch
from loss_fixtures import (
    V_S,
)

from xtoken_align.distill.losses import (
    combine,
    cross_entropy,
    kd_scale,
)


def test_cross_entropy_ignores_minus_100(batch):
    """Value and gradient (closed form: softmax − one-hot, 0 on unlabelled rows) equal torch's."""
    student, _, _, _, labels, _ = batch
    student = student.detach().double().requires_grad_()
    kept = labels.reshape(-1) != -100
    assert 0 < int(kept.sum()) < kept.numel()
    want = torch.nn.functional.cross_entropy(student.reshape(-1, V_S)[kept], labels.reshape(-1)[kept])
    got = cross_entropy(student, labels)
    torch.testing.assert_close(got, want)
    (want_grad,) = torch.autograd.grad(want, student)
    (got_grad,) = torch.autograd.grad(got, student)
    torch.testing.assert_close(got_grad, want_grad)
    assert torch.count_nonzero(got_grad.reshape(-1, V_S)[~kept]) == 0
    nothing = cross_entropy(student, torch.full_like(labels, -100))
    assert float(nothing.detach()) == 0.0
    nothing.backward()


def test_combine_dynamic_and_fixed():
    ce = torch.tensor(2.0, requires_grad=True)
    kd = torch.tensor(0.5, requires_grad=True)
    total = combine(ce, kd)
    total.backward()
    assert float(total.detach()) == pytest.approx(4.0)  # sg(ce/kd)·kd + ce = 2·ce
    assert float(kd.grad) == pytest.approx(4.0) and float(ce.grad) == pytest.approx(1.0)
    assert float(combine(ce, kd, "fixed", kd_weight=1.0, ce_weight=0.1).detach()) == pytest.approx(0.7)
    assert float(combine(ce, torch.tensor(0.0), "dynamic").detach()) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="dynamic"):
        combine(ce, kd, "other")


def test_dynamic_scale_is_a_bounded_magnitude():
    ce = torch.tensor(2.0)
    assert float(kd_scale(ce, torch.tensor(-0.5))) == pytest.approx(4.0)  # |ce| / |kd|, never negative
    assert float(kd_scale(ce, torch.tensor(1e-6))) == pytest.approx(100.0)  # default bounds [0.01, 100]
    assert float(kd_scale(ce, torch.tensor(1e6))) == pytest.approx(0.01)
    assert float(kd_scale(ce, torch.tensor(1e-6), bounds=(0.5, 8.0))) == pytest.approx(8.0)
    assert float(kd_scale(ce, torch.tensor(0.0))) == 0.0
    assert float(kd_scale(ce, torch.tensor(3.0), "fixed", kd_weight=0.3)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="bounds"):
        kd_scale(ce, torch.tensor(1.0), bounds=(2.0, 1.0))
