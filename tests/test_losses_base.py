"""What every loss shares (losses/base.py), checked on each registered loss against the naive
references: values and gradients wrt the student logits agree to 1e-5, τ² scaling, 0 with a graph when
nothing is valid, sum reduction, padded output layers left out."""

from __future__ import annotations

import pytest
import torch
from loss_fixtures import (
    F64,
    FAKE_STUDENT,
    FAKE_TEACHER,
    SINGLE_STUDENT_CHUNK,
    SINGLE_TEACHER_CHUNK,
    TAIL,
    V_S,
    V_T,
    loss_kwargs,
    make,
    padded,
    positions_by_chunk,
    reference,
)

from xtoken_align.distill.losses import (
    GoldLoss,
    HKLLoss,
    KDLoss,
    PKLLoss,
    ULDLoss,
    loss_names,
    make_loss,
)
from xtoken_align.distill.sparse_w import ProjectionW


@pytest.mark.parametrize("layout", ["mixed", "single"])
@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("aggregation", ["mean", "first", "chain"])
@pytest.mark.parametrize("kind", ["p_kl", "p_kl_drop", "h_kl", "gold", "uld"])
def test_loss_matches_naive_reference(kind, aggregation, tau, layout, projection, batch):
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    if layout == "single":
        s_chunk, t_chunk = torch.tensor(SINGLE_STUDENT_CHUNK), torch.tensor(SINGLE_TEACHER_CHUNK)
    for tail in (TAIL, 10_000):
        module, kw = make(kind, projection, aggregation, tau, tail)
        got = module(student, teacher, s_chunk, t_chunk, labels, t_labels)
        (got_grad,) = torch.autograd.grad(got, student)
        want = reference(kind[:4], student, teacher, s_chunk, t_chunk, labels, t_labels, aggregation, tau, **kw)
        (want_grad,) = torch.autograd.grad(want, student)
        assert got.dtype == F64
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_grad, want_grad, atol=1e-5, rtol=1e-5)
        assert got_grad.abs().sum() > 0
        if kind.startswith("p_kl"):
            break


@pytest.mark.parametrize("kind", loss_names())
def test_tau_scales_by_tau_squared(kind, projection, batch):
    """loss at τ = τ² · (the same loss at τ = 1 on logits / τ)."""
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    if kind == "kd":
        teacher, t_chunk, t_labels = torch.randn_like(student), s_chunk, labels
    hot, cold = (make_loss(kind, tau=tau, **loss_kwargs(kind, projection)) for tau in (3.0, 1.0))
    got = hot(student, teacher, s_chunk, t_chunk, labels, teacher_labels=t_labels)
    want = 9.0 * cold(student / 3.0, teacher / 3.0, s_chunk, t_chunk, labels, teacher_labels=t_labels)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kind", loss_names())
def test_nothing_valid_gives_zero_with_a_graph(kind, projection, batch):
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    module = make_loss(kind, **loss_kwargs(kind, projection))
    if kind == "kd":
        value = module(student, student.detach(), s_chunk, s_chunk, torch.full_like(labels, -100))
    else:  # disjoint ids on the two sides, then no ids at all
        value = module(student, teacher, s_chunk, torch.where(t_chunk >= 0, t_chunk + 100, -1), labels, t_labels)
        empty = module(student, teacher, torch.full_like(s_chunk, -1), torch.full_like(t_chunk, -1), labels)
        assert float(empty.detach()) == 0.0
    assert float(value.detach()) == 0.0
    (grad,) = torch.autograd.grad(value, student)
    assert torch.count_nonzero(grad) == 0


def test_sum_reduction_and_chain_needs_teacher_labels(projection, batch):
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    mean = ULDLoss()(student, teacher, s_chunk, t_chunk, labels)
    total = ULDLoss(reduction="sum")(student, teacher, s_chunk, t_chunk, labels)
    n_valid = len(set(positions_by_chunk(s_chunk)) & set(positions_by_chunk(t_chunk)))
    torch.testing.assert_close(total, mean * n_valid)
    with pytest.raises(ValueError, match="chain"):
        ULDLoss(aggregation="chain")(student, teacher, s_chunk, t_chunk, labels)
    with pytest.raises(ValueError, match="aggregation"):
        ULDLoss(aggregation="last")


@pytest.mark.parametrize("kind", ["p_kl", "p_kl_drop", "h_kl", "gold", "uld", "kd"])
def test_padded_output_layers_change_nothing(kind, projection, batch):
    """Real checkpoints pad lm_head (Qwen3: 151,936 rows for 151,669 tokens); only the tokenizer's
    columns count, on both sides: same value, same gradient on them, zero gradient on the padding."""
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    if kind == "kd":
        module, teacher, t_chunk, t_labels = KDLoss(size=V_S), 2 * torch.randn_like(student.detach()), s_chunk, labels
    elif kind == "uld":
        module = ULDLoss(tail=TAIL, student_size=V_S, teacher_size=V_T)
    else:
        module, _ = make(kind, projection, "mean", 1.0, TAIL)
    wide_s, wide_t = padded(student, 5, seed=1), padded(teacher, 3, seed=2).detach()
    want = module(student, teacher, s_chunk, t_chunk, labels, t_labels)
    got = module(wide_s, wide_t, s_chunk, t_chunk, labels, t_labels)
    (want_grad,) = torch.autograd.grad(want, student)
    (got_grad,) = torch.autograd.grad(got, wide_s)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad[..., :V_S], want_grad)
    assert torch.count_nonzero(got_grad[..., V_S:]) == 0
    with pytest.raises(ValueError, match="fewer than"):
        module(student[..., :-1], teacher, s_chunk, t_chunk, labels, t_labels)


def test_runner_losses_know_the_tokenizer_sizes(projection):
    """make_loss as the runner calls it: every loss carries the true sizes it cuts the logits to."""
    w = ProjectionW.from_projection(projection)
    for module in (
        PKLLoss(w), HKLLoss(w), GoldLoss(FAKE_STUDENT, FAKE_TEACHER), ULDLoss(student_size=V_S, teacher_size=V_T)
    ):  # fmt: skip
        assert (module.student_size, module.teacher_size) == (V_S, V_T)
    assert KDLoss(size=V_S).size == V_S
