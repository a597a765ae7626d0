"""Losses from hidden states in position chunks (losses/chunked.py) against the same losses on full
logits, in float64: values and gradients wrt the student's hidden states, output weight and bias (and
a learned W) agree to 1e-5, for chunk sizes that split the batch unevenly, padded output layers,
teachers given as hidden states or as logits, and several teachers at once."""

from __future__ import annotations

import pytest
import torch
from loss_fixtures import F64, STUDENT_CHUNK, TEACHER_CHUNK, TOPK, V_S, V_T, loss_kwargs

from xtoken_align.distill.aggregate import ChunkLayout
from xtoken_align.distill.losses import OutputHead, PKLLoss, cross_entropy, loss_names, make_loss
from xtoken_align.distill.losses.chunked import chunk_groups
from xtoken_align.distill.sparse_w import ProjectionW

HIDDEN, PAD_S, PAD_T = 12, 5, 3
N_S, N_T = 16, 18  # the fixture layout's positions per side
CHUNK_SIZES = [1, 3, N_S, 100]


def heads(seed: int = 0, bias: bool = True, same_vocab: bool = False):
    """Student (hidden, weight, bias) leaves and teacher (hidden, weight), padded output layers."""
    g = torch.Generator().manual_seed(seed)
    v_t = V_S if same_vocab else V_T
    n_t = N_S if same_vocab else N_T
    h_s = torch.randn(2, N_S // 2, HIDDEN, generator=g, dtype=F64).requires_grad_()
    w_s = (0.7 * torch.randn(V_S + PAD_S, HIDDEN, generator=g, dtype=F64)).requires_grad_()
    b_s = (0.3 * torch.randn(V_S + PAD_S, generator=g, dtype=F64)).requires_grad_() if bias else None
    h_t = torch.randn(2, n_t // 2, HIDDEN, generator=g, dtype=F64)
    w_t = 0.7 * torch.randn(v_t + (PAD_S if same_vocab else PAD_T), HIDDEN, generator=g, dtype=F64)
    return (h_s, w_s, b_s), (h_t, w_t)


def logits(h, w, b=None):
    return torch.nn.functional.linear(h, w, b)


def padded_module(kind: str, projection, aggregation: str = "mean", learn_w: bool = False):
    kwargs = loss_kwargs(kind, projection)
    if kind == "p_kl" and learn_w:
        kwargs["w"] = ProjectionW.from_projection(projection, learnable=True).double()
    if kind == "uld":
        kwargs |= {"student_size": V_S, "teacher_size": V_T}
    if kind == "kd":
        return make_loss(kind, size=V_S)
    return make_loss(kind, aggregation=aggregation, **kwargs)


def chunk_args(kind: str, g: torch.Generator):
    labels = torch.randint(0, V_S, (2, N_S // 2), generator=g)
    labels[0, 4] = labels[1, 7] = -100
    if kind == "kd":
        return torch.tensor(STUDENT_CHUNK), torch.tensor(STUDENT_CHUNK), labels, labels
    t_labels = torch.randint(0, V_T, (2, N_T // 2), generator=g)
    return torch.tensor(STUDENT_CHUNK), torch.tensor(TEACHER_CHUNK), labels, t_labels


def assert_same(got, want, inputs):
    got_grads = torch.autograd.grad(got, inputs)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert got_grads[0].abs().sum() > 0


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("kind", loss_names())
def test_hidden_state_chunks_equal_the_logit_loss(kind, chunk, projection):
    (h_s, w_s, b_s), (h_t, w_t) = heads(same_vocab=kind == "kd")
    s_chunk, t_chunk, labels, t_labels = chunk_args(kind, torch.Generator().manual_seed(1))
    module = padded_module(kind, projection)
    want = module(logits(h_s, w_s, b_s), logits(h_t, w_t), s_chunk, t_chunk, labels, t_labels)
    want_stats = dict(module.stats)
    got = module(
        OutputHead(h_s, w_s, b_s, chunk), OutputHead(h_t, w_t, None, chunk), s_chunk, t_chunk, labels, t_labels
    )
    assert got.dtype == F64
    assert_same(got, want, (h_s, w_s, b_s))
    assert module.stats.keys() == want_stats.keys()
    for key, value in want_stats.items():
        torch.testing.assert_close(module.stats[key], value)


@pytest.mark.parametrize("aggregation", ["first", "chain"])
@pytest.mark.parametrize("kind", ["p_kl", "h_kl", "gold", "uld"])
def test_every_aggregation_in_chunks(kind, aggregation, projection):
    (h_s, w_s, b_s), (h_t, w_t) = heads(seed=2, bias=False)
    s_chunk, t_chunk, labels, t_labels = chunk_args(kind, torch.Generator().manual_seed(3))
    module = padded_module(kind, projection, aggregation)
    for chunk in (1, 4):
        want = module(logits(h_s, w_s), logits(h_t, w_t), s_chunk, t_chunk, labels, t_labels)
        got = module(OutputHead(h_s, w_s, None, chunk), OutputHead(h_t, w_t), s_chunk, t_chunk, labels, t_labels)
        assert_same(got, want, (h_s, w_s))


@pytest.mark.parametrize("reachable", [True, False])
def test_p_kl_on_every_reachable_column(reachable):
    """top-k above W's reachable ids: every column (no teacher pass) or the reachable ones (a pass for
    the unreachable-mass stat, the loss pass on the reachable columns only)."""
    from loss_fixtures import as_projection, random_w

    (h_s, w_s, b_s), (h_t, w_t) = heads(seed=10)
    s_chunk, t_chunk, labels, t_labels = chunk_args("p_kl", torch.Generator().manual_seed(11))
    module = PKLLoss(ProjectionW.from_projection(as_projection(*random_w(3, reachable))).double(), topk=1000)
    want = module(logits(h_s, w_s, b_s)[..., :V_S], logits(h_t, w_t)[..., :V_T], s_chunk, t_chunk, labels)
    want_stats = dict(module.stats)
    got = module(OutputHead(h_s, w_s[:V_S], b_s[:V_S], 3), OutputHead(h_t, w_t[:V_T]), s_chunk, t_chunk, labels)
    assert_same(got, want, (h_s, w_s, b_s))
    torch.testing.assert_close(module.stats["unreachable"], want_stats["unreachable"])
    assert (float(want_stats["unreachable"]) > 0) == (not reachable)


def test_learned_w_teacher_logits_and_several_teachers(projection):
    """A learned W gets the same gradient; a teacher given as logits (a cache) works on the hidden path;
    the sum of two teachers' chunked terms and CE has the logit path's gradient."""
    (h_s, w_s, b_s), (h_t, w_t) = heads(seed=4)
    s_chunk, t_chunk, labels, t_labels = chunk_args("p_kl", torch.Generator().manual_seed(5))
    pkl = padded_module("p_kl", projection, learn_w=True)
    hkl = padded_module("h_kl", projection)
    z_t = logits(h_t, w_t)
    inputs = (h_s, w_s, b_s, pkl.w.theta)

    def total(student, teacher):
        kd = 0.8 * pkl(student, teacher, s_chunk, t_chunk, labels, t_labels)
        kd = kd + 0.2 * hkl(student, teacher, s_chunk, t_chunk, labels, t_labels)
        ce = cross_entropy(student, labels)
        return kd * (ce / kd).detach() + ce  # Eq. 7's dynamic scale: |ce| / |kd| is a constant

    for teacher in (z_t, OutputHead(h_t, w_t, None, 3)):
        got = total(OutputHead(h_s, w_s, b_s, 5), teacher)
        assert_same(got, total(logits(h_s, w_s, b_s), z_t), inputs)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_cross_entropy_in_chunks(chunk):
    (h_s, w_s, b_s), _ = heads(seed=6)
    labels = torch.randint(0, V_S, (2, N_S // 2), generator=torch.Generator().manual_seed(7))
    labels[0, :3] = -100
    want = cross_entropy(logits(h_s, w_s, b_s), labels)
    got = cross_entropy(OutputHead(h_s, w_s, b_s, chunk), labels)
    assert_same(got, want, (h_s, w_s, b_s))
    nothing = cross_entropy(OutputHead(h_s, w_s, b_s, chunk), torch.full_like(labels, -100))
    assert float(nothing.detach()) == 0.0
    assert torch.count_nonzero(torch.autograd.grad(nothing, w_s)[0]) == 0


def test_cross_entropy_in_chunks_of_labels_too_unlikely_for_a_float32_log():
    """The chunked CE's closed form reads −log p from the softmax; a label whose p underflows float32
    (logit 200 below the row's best) must give the logit path's value and gradient, not inf."""
    g = torch.Generator().manual_seed(11)
    h_s = torch.randn(6, HIDDEN, generator=g).requires_grad_()
    w_s = torch.randn(V_S, HIDDEN, generator=g).requires_grad_()
    b_s = torch.zeros(V_S)
    b_s[0] = -200.0  # e^-200 underflows float32: id 0's p is 0
    b_s.requires_grad_()
    labels = torch.tensor([0, 1, 0, 2, 0, 3])
    want = cross_entropy(logits(h_s, w_s, b_s), labels)
    got = cross_entropy(OutputHead(h_s, w_s, b_s, 4), labels)
    assert torch.isfinite(got) and float(got.detach()) > 90.0  # the three far-below labels dominate
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    inputs = (h_s, w_s, b_s)
    for a, b in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(want, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_nothing_valid_gives_zero_with_a_graph(projection):
    (h_s, w_s, b_s), (h_t, w_t) = heads()
    module = PKLLoss(ProjectionW.from_projection(projection).double(), topk=TOPK)
    none = torch.full((2, N_S // 2), -1)
    value = module(OutputHead(h_s, w_s, b_s, 4), OutputHead(h_t, w_t), none, torch.full((2, N_T // 2), -1))
    assert float(value.detach()) == 0.0
    assert torch.count_nonzero(torch.autograd.grad(value, h_s)[0]) == 0


def test_groups_keep_whole_chunks_within_the_limit():
    layout = ChunkLayout.build(torch.tensor(STUDENT_CHUNK).reshape(-1), torch.tensor(TEACHER_CHUNK).reshape(-1))
    for limit in (1, 2, 3, 5, 100):
        groups = chunk_groups(layout, limit)
        assert sum(g.layout.n_chunks for g in groups) == layout.n_chunks
        for g in groups:  # a group over the limit is a single chunk
            assert max(len(g.student), len(g.teacher)) <= limit or g.layout.n_chunks == 1
        rows = torch.cat([g.student for g in groups]).sort().values
        assert torch.equal(rows, torch.nonzero(layout.student.valid).squeeze(1))
    assert len(chunk_groups(layout, 100)) == 1


@pytest.mark.parametrize("kind", ["ce", "p_kl", "h_kl"])
def test_bf16_autocast_matches_the_logit_path(kind, projection):
    """Under bf16 autocast both paths run the output layer in bf16 and the loss in float32."""
    (h_s, w_s, b_s), (h_t, w_t) = heads(seed=8)
    h_s, w_s, b_s = (x.detach().float().requires_grad_() for x in (h_s, w_s, b_s))
    h_t, w_t = h_t.float(), w_t.float()
    s_chunk, t_chunk, labels, t_labels = chunk_args(kind, torch.Generator().manual_seed(9))
    module = None if kind == "ce" else padded_module(kind, projection).float()

    def value(student, teacher):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if not isinstance(student, OutputHead):  # the output layers run under autocast too
                student, teacher = student(h_s, w_s, b_s), teacher(h_t, w_t)
            if module is None:
                return cross_entropy(student, labels)
            return module(student, teacher, s_chunk, t_chunk, labels, t_labels)

    want = value(torch.nn.functional.linear, torch.nn.functional.linear)
    got = value(OutputHead(h_s, w_s, b_s, 3), OutputHead(h_t, w_t))
    assert got.dtype == torch.float32
    for a, b in zip(torch.autograd.grad(got, (h_s, w_s, b_s)), torch.autograd.grad(want, (h_s, w_s, b_s)), strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-3, rtol=2e-2)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
