"""Same-tokenizer KD (losses/same_tokenizer.py) against a per-position reference."""

from __future__ import annotations

import pytest
import torch
from loss_fixtures import (
    F64,
    V_S,
    kd_reference,
)

from xtoken_align.distill.losses import (
    KDLoss,
)


def test_kd_matches_reference(batch):
    student, _, s_chunk, _, labels, _ = batch
    teacher = torch.randn(2, 8, V_S, dtype=F64)
    for tau in (1.0, 2.0):
        got = KDLoss(tau=tau)(student, teacher, s_chunk, None, labels)
        want = kd_reference(student, teacher, labels, tau)
        torch.testing.assert_close(got, want)
        grads = [torch.autograd.grad(x, student)[0] for x in (got, want)]
        torch.testing.assert_close(*grads, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="same positions"):
        KDLoss()(student, torch.randn(2, 8, V_S + 1), s_chunk, None, labels)
