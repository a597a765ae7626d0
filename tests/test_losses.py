"""Distillation losses and the torch W against naive dense references (float64, explicit loops).

The references below walk chunks and positions in Python and use a dense W; the modules under test
are vectorised and sparse. Values and gradients wrt the student logits must agree to 1e-5.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xtoken_align.distill.losses import (
    LOSSES,
    GoldLoss,
    HKLLoss,
    KDLoss,
    PKLLoss,
    ULDLoss,
    combine,
    cross_entropy,
    kd_scale,
    make_loss,
)
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.formats import load_projection, save_projection
from xtoken_align.projection import Projection, TokenizerInfo, assemble_entries
from xtoken_align.score import common_set

V_S, V_T = 40, 50
TOPK, TAIL = 12, 6
F64 = torch.float64

# Two samples; -1 = no chunk. Chunk 3 and chunk 9 exist on one side only (not valid), chunks span
# several positions on either side, and sample 2's ids are offset as the collate function does.
STUDENT_CHUNK = [[0, 1, 1, 2, -1, 3, 4, -1], [5, 5, 6, 7, 7, 7, 8, -1]]
TEACHER_CHUNK = [[0, 0, 1, 2, 2, -1, 4, -1, -1], [5, 6, 6, 6, 7, 8, 8, 9, -1]]
# Every student position its own chunk, none ignored (the copy-free fast path), teacher merging 2-3.
SINGLE_STUDENT_CHUNK = [list(range(8)), list(range(8, 16))]
SINGLE_TEACHER_CHUNK = [[0, 1, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 12, 13, 14, 15]]


def random_w(seed: int = 0, reachable: bool = True):
    """CSR W (V_S x V_T) with 1-4 entries per row, a third of the rows dominated by one teacher id
    (so that the H-KL common set is not empty, with collisions), every teacher column reachable."""
    rng = np.random.default_rng(seed)
    rows, cols, scores = [], [], []
    for s in range(V_S):
        k = rng.integers(1, 5)
        picked = rng.choice(V_T, size=k, replace=False)
        weights = rng.random(k) + 0.05
        if s % 3 == 0:
            picked[0] = s % 17  # repeated dominant ids: collisions in the common set
            weights[0] = 8.0 if s % 2 else 4.0
        rows += [s] * k
        cols += picked.tolist()
        scores += weights.tolist()
    if reachable:
        rows += [V_S - 1] * V_T
        cols += list(range(V_T))
        scores += [1e-3] * V_T
    rows, cols, scores = (np.asarray(x) for x in (rows, cols, scores))
    return assemble_entries(rows, cols, scores, np.zeros(len(rows), np.uint8), (V_S, V_T), top_k=V_T)


def as_projection(matrix, codes, scores) -> Projection:
    info = [TokenizerInfo(n, "", size, "fp") for n, size in (("s", V_S), ("t", V_T))]
    return Projection(matrix, codes, scores, *info, None)


@pytest.fixture(scope="module")
def projection() -> Projection:
    return as_projection(*random_w())


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    student = (2 * torch.randn(2, 8, V_S, generator=g, dtype=F64)).requires_grad_()
    teacher = 2 * torch.randn(2, 9, V_T, generator=g, dtype=F64)
    labels = torch.randint(0, V_S, (2, 8), generator=g)
    labels[0, 4] = labels[1, 7] = -100
    teacher_labels = torch.randint(0, V_T, (2, 9), generator=g)
    return student, teacher, torch.tensor(STUDENT_CHUNK), torch.tensor(TEACHER_CHUNK), labels, teacher_labels


# ---- naive references -----------------------------------------------------------------------------


def positions_by_chunk(chunk_ids: torch.Tensor) -> dict[int, list[int]]:
    chunks: dict[int, list[int]] = {}
    for position, c in enumerate(chunk_ids.reshape(-1).tolist()):
        if c >= 0:
            chunks.setdefault(c, []).append(position)
    return chunks


def chunk_dist(logits, positions, aggregation, tau, labels):
    """A chunk's distribution over the whole vocabulary, position by position."""
    if aggregation == "mean":
        total = 0
        for i in positions:
            total = total + torch.softmax(logits[i] / tau, -1)
        return total / len(positions)
    d = torch.softmax(logits[positions[0]] / tau, -1)
    if aggregation == "chain":
        for i in positions[1:]:
            d = d * torch.softmax(logits[i] / tau, -1)[labels[i]]
    return d


def reference(kind, student, teacher, s_chunk, t_chunk, labels, t_labels, aggregation="mean", tau=1.0, **kw):
    s, t = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])
    labels, t_labels = labels.reshape(-1), t_labels.reshape(-1)
    s_pos, t_pos = positions_by_chunk(s_chunk), positions_by_chunk(t_chunk)
    valid = sorted(set(s_pos) & set(t_pos))
    if kind == "p_kl":  # the teacher ids W reaches, the top-k of them by teacher logit
        dense = torch.tensor(kw["w"].toarray(), dtype=F64)
        reached = [v for v in range(V_T) if dense[:, v].sum() > 0]
        importance = {v: max(float(t[i, v]) for c in valid for i in t_pos[c]) for v in reached}
        top = sorted(sorted(reached, key=lambda v: -importance[v])[: kw["topk"]])
    total = 0.0
    for c in valid:
        q_s = chunk_dist(s, s_pos[c], aggregation, tau, labels)
        if kind == "p_kl":
            if aggregation == "mean":
                p_t = sum(torch.softmax(t[i, top] / tau, -1) for i in t_pos[c]) / len(t_pos[c])
            else:  # chain renormalised within the top ids is first
                p_t = torch.softmax(t[t_pos[c][0], top] / tau, -1)
                for i in t_pos[c][1:] if aggregation == "chain" else []:
                    p_t = p_t * torch.softmax(t[i] / tau, -1)[t_labels[i]]
                p_t = p_t / p_t.sum()
            q = (q_s @ dense)[top]
            if kw.get("student_mass", "renormalise") == "renormalise":
                q = q / q.sum()
            total = total + sum(p_t[j] * (torch.log(p_t[j]) - torch.log(q[j])) for j in range(len(top)))
            continue
        q_t = chunk_dist(t, t_pos[c], aggregation, tau, t_labels)
        pairs = kw.get("pairs", {})
        loss = sum(q_t[b] * (torch.log(q_t[b]) - torch.log(q_s[a])) for a, b in pairs.items())
        a = torch.sort(q_s[[i for i in range(V_S) if i not in pairs]], descending=True).values
        b = torch.sort(q_t[[j for j in range(V_T) if j not in pairs.values()]], descending=True).values
        length = min(kw["tail"], len(a), len(b))
        total = total + loss + sum(abs(a[i] - b[i]) for i in range(length))
    return total * tau**2 / len(valid)


def kd_reference(student, teacher, labels, tau):
    s, t, labels = student.reshape(-1, V_S), teacher.reshape(-1, V_S), labels.reshape(-1)
    kept = [i for i in range(len(labels)) if labels[i] != -100]
    total = 0.0
    for i in kept:
        p_t = torch.softmax(t[i] / tau, -1)
        total = total + (p_t * (torch.log(p_t) - torch.log_softmax(s[i] / tau, -1))).sum()
    return total * tau**2 / len(kept)


FAKE_STUDENT = SimpleNamespace(pieces=[f"p{i % 30}" if i != 3 else "" for i in range(V_S)])  # p0..p9 twice
FAKE_TEACHER = SimpleNamespace(pieces=[f"p{(i * 7) % 60}" if i % 5 else "" for i in range(V_T)])


def make(kind, projection, aggregation, tau, tail):
    w = ProjectionW.from_projection(projection).double()
    if kind.startswith("p_kl"):  # p_kl renormalises the projected student within the columns, p_kl_drop not
        student = "drop" if kind == "p_kl_drop" else "renormalise"
        loss = PKLLoss(w, topk=TOPK, aggregation=aggregation, tau=tau, student=student)
        return loss, {"w": projection.matrix, "topk": TOPK, "student_mass": student}
    if kind == "h_kl":
        loss = HKLLoss(w, tail=tail, aggregation=aggregation, tau=tau)
        return loss, {"pairs": common_set(projection), "tail": tail}
    if kind == "gold":
        loss = GoldLoss(FAKE_STUDENT, FAKE_TEACHER, tail=tail, aggregation=aggregation, tau=tau)
        pairs = {}
        for a, piece in enumerate(FAKE_STUDENT.pieces):
            match = [b for b, other in enumerate(FAKE_TEACHER.pieces) if piece and other == piece]
            if match and match[0] not in pairs.values():
                pairs[a] = match[0]
        return loss, {"pairs": pairs, "tail": tail}
    return ULDLoss(tail=tail, aggregation=aggregation, tau=tau), {"tail": tail}


# ---- losses against the references ----------------------------------------------------------------


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


def test_common_sets_are_nontrivial(projection):
    """The reference comparisons above exercise collisions and both tail truncations."""
    pairs = common_set(projection)
    assert 5 <= len(pairs) < V_S
    dominant = {int(projection.matrix.indices[projection.matrix.indptr[s]]) for s in range(0, V_S, 3)}
    assert len(dominant) < len(range(0, V_S, 3))  # several rows compete for one teacher id
    gold_student, _ = ProjectionW.string_common_set(FAKE_STUDENT, FAKE_TEACHER)
    assert 0 < len(gold_student) < V_S


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


def loss_kwargs(kind: str, projection: Projection) -> dict:
    w = ProjectionW.from_projection(projection).double()
    by_kind = {"p_kl": {"w": w, "topk": TOPK}, "h_kl": {"w": w, "tail": TAIL}, "uld": {"tail": TAIL}}
    by_kind["gold"] = {"student_vocab": FAKE_STUDENT, "teacher_vocab": FAKE_TEACHER, "tail": TAIL}
    return by_kind.get(kind, {})


@pytest.mark.parametrize("kind", LOSSES)
def test_tau_scales_by_tau_squared(kind, projection, batch):
    """loss at τ = τ² · (the same loss at τ = 1 on logits / τ)."""
    student, teacher, s_chunk, t_chunk, labels, t_labels = batch
    if kind == "kd":
        teacher, t_chunk, t_labels = torch.randn_like(student), s_chunk, labels
    hot, cold = (make_loss(kind, tau=tau, **loss_kwargs(kind, projection)) for tau in (3.0, 1.0))
    got = hot(student, teacher, s_chunk, t_chunk, labels, teacher_labels=t_labels)
    want = 9.0 * cold(student / 3.0, teacher / 3.0, s_chunk, t_chunk, labels, teacher_labels=t_labels)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kind", LOSSES)
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


def test_p_kl_stays_finite_on_unreachable_teacher_ids(batch):
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    projection = as_projection(*random_w(reachable=False))
    assert (np.bincount(projection.matrix.indices, minlength=V_T) == 0).any()
    value = PKLLoss(ProjectionW.from_projection(projection).double(), topk=V_T)(
        student, teacher, s_chunk, t_chunk, labels
    )
    (grad,) = torch.autograd.grad(value, student)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


# ---- real model shapes: padded output layers, dtypes, unreachable teacher mass (issue 12) --------


def padded(logits: torch.Tensor, extra: int, seed: int) -> torch.Tensor:
    """logits with `extra` padding columns of large finite logits (40 ± 1: they would dominate a softmax)."""
    g = torch.Generator().manual_seed(seed)
    pad = 40.0 + torch.randn(*logits.shape[:-1], extra, generator=g, dtype=logits.dtype)
    return torch.cat([logits.detach(), pad], -1).requires_grad_()


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


def unreachable_reference(teacher, t_chunk, dense) -> float:
    """Mean over valid chunks of the teacher's mean-aggregated mass on the ids no W column reaches."""
    t = teacher.reshape(-1, V_T)
    empty = [v for v in range(V_T) if dense[:, v].sum() == 0]
    chunks = positions_by_chunk(t_chunk)
    valid = sorted(set(chunks) & set(positions_by_chunk(torch.tensor(STUDENT_CHUNK))))
    mass = [sum(float(torch.softmax(t[i], -1)[empty].sum()) for i in chunks[c]) / len(chunks[c]) for c in valid]
    return sum(mass) / len(mass)


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
    columns = module.columns(teacher.reshape(-1, V_T), torch.ones(teacher.shape[:2]).reshape(-1).bool())
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


# ---- cross-entropy, Eq. 7, factory ----------------------------------------------------------------


def test_cross_entropy_ignores_minus_100(batch):
    student, _, _, _, labels, _ = batch
    kept = labels.reshape(-1) != -100
    want = torch.nn.functional.cross_entropy(student.reshape(-1, V_S)[kept], labels.reshape(-1)[kept])
    torch.testing.assert_close(cross_entropy(student, labels), want)
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


def test_make_loss_names(projection):
    w = ProjectionW.from_projection(projection)
    assert isinstance(make_loss("p_kl", w=w, topk=16, aggregation="first"), PKLLoss)
    assert isinstance(make_loss("uld", tail=8), ULDLoss)
    with pytest.raises(ValueError, match="p_kl, h_kl, gold, uld, kd"):
        make_loss("gkd")


# ---- ProjectionW ------------------------------------------------------------------------------------


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
    assert dict(zip(students.tolist(), teachers.tolist(), strict=True)) == common_set(projection, 0.6)
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
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == common_set(projection)
    three = student.id_of_bytes(b"3")
    assert three in rows.tolist() and student.pieces.index("<0x33>") not in rows.tolist()
