"""`loss.semantics: reference` (losses/reference.py): each of P-KL's four differences from the reference
(NeMo-RL) on its own, against a naive dense float64 implementation of that variant; all four together
on real Llama-3 × Qwen3 inputs, from logits and from hidden states; H-KL and GOLD on log-space chunk
means; and the config field.

The naive versions walk chunks and positions in Python with a dense W (scipy's CSR product for the
real vocabularies) and are written from the formulas in docs/method.md, not from the modules.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from conftest import gsm8k, vocab
from loss_fixtures import (
    F64,
    FAKE_STUDENT,
    FAKE_TEACHER,
    STUDENT_CHUNK,
    TAIL,
    TEACHER_CHUNK,
    TOPK,
    V_S,
    V_T,
    as_projection,
    distill_assets,
    make,
    positions_by_chunk,
    random_w,
)

from xtoken_align.distill.config import DistillConfig, LossSpec, TeacherSpec
from xtoken_align.distill.data import DistillDataset, collate, encode_texts
from xtoken_align.distill.losses import (
    GoldLoss,
    HKLLoss,
    LossSetup,
    OutputHead,
    PKLLoss,
    ReferencePKLLoss,
    build_loss,
    loss_class,
    loss_names,
)
from xtoken_align.distill.losses.reference import DIFFERENCES, EPSILON, ReferenceGoldLoss, ReferenceHKLLoss
from xtoken_align.distill.runner import DistillRunner
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.errors import XTokenError
from xtoken_align.projection import build_projection

TINY = float(torch.finfo(torch.float32).tiny)  # this project's log floor


# ---- naive P-KL, every variant ---------------------------------------------------------------------


def naive_pkl(
    student, teacher, s_chunk, t_chunk, project, v_t, reachable, topk,
    *, log_mean=False, renormalise=False, epsilon=False, columns=False, student_mass="renormalise",
):  # fmt: skip
    """Mean over valid chunks of Σ_{t∈S} p_T[t] (log p_T[t] − log q[t]); `project(p_s)` -> Wᵀp_s (V_T,).
    Ours: p_T = the mean of the positions' softmax within S, S = the top-k ids W reaches by the max
    logit over the rows of valid chunks, logs floored at TINY. Each flag switches one part to the
    reference's: log_mean (p_T = exp of the mean of the positions' log-softmax within S), renormalise
    (student renormalised within S), epsilon (student: q / (Σq + ε), log(q + ε)), columns (S = the
    top-k of every teacher id by the max logit over every teacher row)."""
    s, t = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])[:, :v_t]
    s_pos, t_pos = positions_by_chunk(s_chunk), positions_by_chunk(t_chunk)
    valid = sorted(set(s_pos) & set(t_pos))
    rows = list(range(len(t))) if columns else [i for c in valid for i in t_pos[c]]
    importance = t[rows].max(0).values  # (V_T,) max over every row, or the rows of valid chunks
    candidates = list(range(v_t)) if columns else [v for v in range(v_t) if reachable[v]]
    top = sorted(sorted(candidates, key=lambda v: -float(importance[v]))[:topk])
    log = (lambda x: torch.log(x + EPSILON)) if epsilon else (lambda x: torch.log(x.clamp_min(TINY)))
    total = 0.0
    for c in valid:
        if log_mean:
            log_t = sum(torch.log_softmax(t[i, top], -1) for i in t_pos[c]) / len(t_pos[c])
            p_t = log_t.exp()
        else:
            p_t = sum(torch.softmax(t[i, top], -1) for i in t_pos[c]) / len(t_pos[c])
            log_t = torch.log(p_t.clamp_min(TINY))
        q = sum(project(torch.softmax(s[i], -1))[top] for i in s_pos[c]) / len(s_pos[c])
        if renormalise or student_mass == "renormalise":
            q = q / (q.sum() + EPSILON) if epsilon else q / q.sum()
        kept = p_t > 0
        total = total + (p_t[kept] * (log_t[kept] - log(q)[kept])).sum()
    return total / len(valid)


@pytest.fixture(scope="module")
def setting():
    """Small vocabularies where every difference shows: W leaves teacher ids unreachable, a teacher row
    in no chunk has the top logit of one of them, and one column in the top-k gets a projected student
    mass below ε (the only student row reaching it is made very unlikely)."""
    projection = as_projection(*random_w(seed=0, reachable=False))
    dense = torch.tensor(projection.matrix.toarray(), dtype=F64)
    reachable = (dense > 0).sum(0) > 0
    unreachable = int(torch.nonzero(~reachable)[0])
    lonely = [v for v in range(V_T) if (dense[:, v] > 0).sum() == 1]
    column, row = lonely[0], int(torch.nonzero(dense[:, lonely[0]])[0])
    g = torch.Generator().manual_seed(5)
    student = 2 * torch.randn(2, 8, V_S, generator=g, dtype=F64)
    student[..., row] -= 40.0
    teacher = 2 * torch.randn(2, 9, V_T, generator=g, dtype=F64)
    assert TEACHER_CHUNK[0][5] == -1 and TEACHER_CHUNK[1][1] >= 0
    teacher[0, 5, unreachable] = 30.0  # padding-like row: only the reference's pick sees it
    teacher[1, 1, column] = 8.0  # a confident teacher where the student's mass is below ε
    chunks = torch.tensor(STUDENT_CHUNK), torch.tensor(TEACHER_CHUNK)
    w = ProjectionW.from_projection(projection).double()
    return student, teacher, chunks, dense, reachable, w


def value_and_grad(module, student, teacher, chunks):
    z = student.clone().requires_grad_()
    value = module(z, teacher, *chunks, torch.zeros(z.shape[:2], dtype=torch.long))
    return value, torch.autograd.grad(value, z)[0]


def naive_value_and_grad(student, teacher, chunks, dense, reachable, **flags):
    z = student.clone().requires_grad_()
    value = naive_pkl(z, teacher, *chunks, lambda p: p @ dense, V_T, reachable, TOPK, **flags)
    return value, torch.autograd.grad(value, z)[0]


@pytest.mark.parametrize("difference", DIFFERENCES)
def test_each_difference_alone_equals_its_naive_variant(difference, setting):
    student, teacher, chunks, dense, reachable, w = setting
    base = "drop" if difference == "renormalise" else "renormalise"  # ours renormalises by default
    module = ReferencePKLLoss(w, topk=TOPK, student=base, differences=(difference,))
    got, got_grad = value_and_grad(module, student, teacher, chunks)
    want, want_grad = naive_value_and_grad(student, teacher, chunks, dense, reachable, student_mass=base,
                                           **{difference: True})  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=1e-10)
    ours, _ = naive_value_and_grad(student, teacher, chunks, dense, reachable, student_mass=base)
    assert abs(float(want - ours)) > 1e-3 * abs(float(ours))  # the difference shows on this input


@pytest.mark.parametrize("student_mass", ["renormalise", "drop"])
def test_no_difference_is_this_projects_p_kl(student_mass, setting):
    student, teacher, chunks, dense, reachable, w = setting
    none = ReferencePKLLoss(w, topk=TOPK, student=student_mass, differences=())
    got, got_grad = value_and_grad(none, student, teacher, chunks)
    want, want_grad = value_and_grad(PKLLoss(w, topk=TOPK, student=student_mass), student, teacher, chunks)
    naive, _ = naive_value_and_grad(student, teacher, chunks, dense, reachable, student_mass=student_mass)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(got, naive, atol=1e-10, rtol=1e-10)


def test_all_four_differences_and_first_aggregation(setting):
    student, teacher, chunks, dense, reachable, w = setting
    got, got_grad = value_and_grad(ReferencePKLLoss(w, topk=TOPK), student, teacher, chunks)
    flags = dict.fromkeys(DIFFERENCES, True)
    want, want_grad = naive_value_and_grad(student, teacher, chunks, dense, reachable, **flags)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=1e-10)
    # one position per chunk: a log-space mean is the position itself
    first = [ReferencePKLLoss(w, topk=TOPK, aggregation="first", differences=d) for d in (("log_mean",), ())]
    torch.testing.assert_close(*(value_and_grad(m, student, teacher, chunks)[0] for m in first))
    with pytest.raises(ValueError, match="unknown reference differences"):
        ReferencePKLLoss(w, differences=("log_space",))


def test_a_cached_teacher_with_minus_inf_columns_stays_finite(setting, projection):
    """log p̂ of a cached teacher: −inf off its few stored ids, a row with none stored: no NaN."""
    student, teacher, chunks, _, _, w = setting
    sparse = teacher.clone()
    sparse[sparse < 2.0] = -torch.inf
    sparse[1, 2] = -torch.inf
    modules = [ReferencePKLLoss(w, topk=TOPK), ReferenceHKLLoss(ProjectionW.from_projection(projection).double()),
               ReferenceGoldLoss(FAKE_STUDENT, FAKE_TEACHER)]  # fmt: skip
    for module in modules:
        value, grad = value_and_grad(module, student, sparse, chunks)
        assert torch.isfinite(value) and torch.isfinite(grad).all() and grad.abs().sum() > 0


# ---- H-KL and GOLD: log-space chunk means on both sides ---------------------------------------------


def naive_hybrid(student, teacher, s_chunk, t_chunk, pairs, tail):
    """Σ_{(s,t)∈C} q_T[t](log q_T[t] − log q_S[s]) + sorted-L1 tails, q = exp(mean log softmax) per chunk."""
    s, t = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])
    s_pos, t_pos = positions_by_chunk(s_chunk), positions_by_chunk(t_chunk)
    valid = sorted(set(s_pos) & set(t_pos))
    total = 0.0
    for c in valid:
        log_s = sum(torch.log_softmax(s[i], -1) for i in s_pos[c]) / len(s_pos[c])
        log_t = sum(torch.log_softmax(t[i], -1) for i in t_pos[c]) / len(t_pos[c])
        loss = sum(log_t[b].exp() * (log_t[b] - log_s[a]) for a, b in pairs.items())
        a = torch.sort(log_s[[i for i in range(V_S) if i not in pairs]].exp(), descending=True).values
        b = torch.sort(log_t[[j for j in range(V_T) if j not in pairs.values()]].exp(), descending=True).values
        length = min(tail, len(a), len(b))
        total = total + loss + sum(abs(a[i] - b[i]) for i in range(length))
    return total / len(valid)


def hybrid(cls, kind: str, projection, aggregation: str = "mean"):
    if kind == "h_kl":
        return cls(ProjectionW.from_projection(projection).double(), tail=TAIL, aggregation=aggregation)
    return cls(FAKE_STUDENT, FAKE_TEACHER, tail=TAIL, aggregation=aggregation)


@pytest.mark.parametrize(("kind", "ours", "reference"), [("h_kl", HKLLoss, ReferenceHKLLoss),
                                                         ("gold", GoldLoss, ReferenceGoldLoss)])  # fmt: skip
def test_hybrid_losses_on_log_space_chunk_means(kind, ours, reference, projection, batch):
    student, teacher, s_chunk, t_chunk, labels, _ = batch
    got = hybrid(reference, kind, projection)(student, teacher, s_chunk, t_chunk, labels)
    want = naive_hybrid(student, teacher, s_chunk, t_chunk, make(kind, projection, "mean", 1.0, TAIL)[1]["pairs"], TAIL)
    grads = [torch.autograd.grad(v, student)[0] for v in (got, want)]
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(*grads, atol=1e-10, rtol=1e-10)
    mean = hybrid(ours, kind, projection)(student, teacher, s_chunk, t_chunk, labels)
    assert abs(float(got - mean)) > 1e-4  # the chunks with several positions
    first = [
        hybrid(cls, kind, projection, "first")(student, teacher, s_chunk, t_chunk, labels) for cls in (ours, reference)
    ]
    torch.testing.assert_close(*first)


@pytest.mark.parametrize(("kind", "reference"), [("h_kl", ReferenceHKLLoss), ("gold", ReferenceGoldLoss)])
def test_hybrid_reference_from_hidden_states_equals_its_logits(kind, reference, projection, batch):
    _, _, s_chunk, t_chunk, labels, _ = batch
    g = torch.Generator().manual_seed(4)
    h_s, h_t = torch.randn(2, 8, 6, generator=g, dtype=F64), torch.randn(2, 9, 6, generator=g, dtype=F64)
    w_s = torch.randn(V_S, 6, generator=g, dtype=F64).requires_grad_()
    w_t = torch.randn(V_T, 6, generator=g, dtype=F64)
    module = hybrid(reference, kind, projection)
    want = module(h_s @ w_s.T, h_t @ w_t.T, s_chunk, t_chunk, labels)
    got = module(OutputHead(h_s, w_s, None, 3), OutputHead(h_t, w_t, None, 3), s_chunk, t_chunk, labels)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(*(torch.autograd.grad(v, w_s)[0] for v in (got, want)), atol=1e-10, rtol=1e-10)


# ---- all four on real Llama-3 × Qwen3 inputs -----------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    """Two GSM8K texts tokenised and aligned by the real tokenizers, the real W, and random float64
    logits (the teacher's padded to Qwen3's 151,936-row lm_head, with large logits in the padding)."""
    student_vocab, teacher_vocab = vocab("llama3"), vocab("qwen3")
    projection = build_projection(student_vocab, teacher_vocab, progress=False)
    teachers = {"qwen": teacher_vocab}
    encoded = encode_texts(gsm8k("test")[:2], student_vocab, teachers, max_length=48)
    batch = collate([DistillDataset(encoded, student_vocab, teachers)[i] for i in range(2)])
    ids, chunks = batch["input_ids"], (batch["student_chunk"]["qwen"], batch["teacher_chunk"]["qwen"])
    g = torch.Generator().manual_seed(0)
    h_s = torch.randn(*ids.shape, 16, generator=g, dtype=F64)
    w_s = torch.randn(student_vocab.size, 16, generator=g, dtype=F64)
    h_t = torch.randn(*batch["teacher_input_ids"]["qwen"].shape, 16, generator=g, dtype=F64)
    w_t = torch.randn(151_936, 16, generator=g, dtype=F64)
    w_t[teacher_vocab.size :] += 3.0  # padding rows that would win any top-k they took part in
    setup = LossSetup(TeacherSpec(model="q", projection="W"), LossSpec(semantics="reference"), projection,
                      student_vocab, teacher_vocab)  # fmt: skip
    return setup, projection, (h_s, w_s), (h_t, w_t), chunks, batch["labels"]


@pytest.mark.slow
def test_reference_p_kl_equals_the_naive_reference_on_real_inputs(real):
    setup, projection, (h_s, w_s), (h_t, w_t), chunks, labels = real
    module = build_loss(setup)
    assert type(module) is ReferencePKLLoss and module.differences == set(DIFFERENCES) and module.topk == 8192
    module.w.double()
    z_t = h_t @ w_t.T
    w_s = w_s.clone().requires_grad_()
    from_logits = module(h_s @ w_s.T, z_t, *chunks, labels)
    grad = torch.autograd.grad(from_logits, w_s)[0]
    matrix = projection.matrix
    reachable = np.bincount(matrix.indices, minlength=matrix.shape[1]) > 0

    def project(p: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(matrix.T.dot(p.detach().numpy()))

    want = naive_pkl(h_s @ w_s.detach().T, z_t, *chunks, project, matrix.shape[1], reachable, 8192,
                     **dict.fromkeys(DIFFERENCES, True))  # fmt: skip
    assert abs(float(from_logits) - float(want)) < 1e-6
    ours = naive_pkl(h_s @ w_s.detach().T, z_t, *chunks, project, matrix.shape[1], reachable, 8192)
    assert abs(float(ours) - float(want)) > 0.02 * float(ours)  # the semantics differ on these inputs
    for positions in (7, 1024):  # from hidden states and output layers, `positions` rows at a time
        from_heads = module(OutputHead(h_s, w_s, None, positions), OutputHead(h_t, w_t, None, positions), *chunks,
                            labels)  # fmt: skip
        torch.testing.assert_close(from_heads, from_logits, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(torch.autograd.grad(from_heads, w_s)[0], grad, atol=1e-9, rtol=1e-9)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return distill_assets(tmp_path_factory.mktemp("reference"), gsm8k("train")[:8])


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["p_kl", "h_kl"])
def test_a_run_with_reference_semantics_trains(loss, assets, tmp_path):
    """The runner end to end (tiny models, real tokenizers, losses from hidden states): finite KD, the
    semantics recorded in the run's config."""
    teacher = {"name": "qwen", "model": str(assets["qwen"]), "loss": loss, "projection": str(assets["w"])}
    run = DistillConfig.from_dict({
        "student": {"model": str(assets["student"])}, "teachers": [teacher],
        "data": {"train": [str(assets["data"])], "max_length": 32},
        "training": {"steps": 3, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
        "loss": {"topk": 2048, "semantics": "reference"}, "output": {"dir": str(tmp_path)}, "eval": {"texts": 2},
    })  # fmt: skip
    DistillRunner(run).run()
    curve = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(curve) == 3 and all(math.isfinite(r["kd"]) for r in curve)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["loss"]["semantics"] == "reference"


# ---- the config field ------------------------------------------------------------------------------------


def run_config(**loss) -> DistillConfig:
    teacher = {"model": "teacher", "tokenizer": "demo:qwen3", "projection": "W.safetensors"}
    student = {"model": "student", "tokenizer": "demo:llama3"}
    return DistillConfig.from_dict({"student": student, "teachers": [teacher], "data": {"train": ["t"]}, "loss": loss})


def test_semantics_is_ours_by_default_and_other_values_are_refused():
    assert run_config().loss.semantics == "ours" and run_config(semantics="reference").loss.semantics == "reference"
    with pytest.raises(XTokenError, match=r"loss\.semantics: Input should be 'ours' or 'reference'"):
        run_config(semantics="bogus")
    with pytest.raises(XTokenError, match="topk_student: drop contradicts it"):
        run_config(semantics="reference", topk_student="drop")


@pytest.mark.parametrize("semantics", ["ours", "reference"])
def test_semantics_selects_the_losses_built(semantics, projection):
    built = {}
    student, teacher = (SimpleNamespace(pieces=v.pieces, size=len(v.pieces)) for v in (FAKE_STUDENT, FAKE_TEACHER))
    for name in loss_names():
        spec = TeacherSpec(model="t", projection="W", loss=name)
        options = LossSpec(semantics=semantics)
        built[name] = type(
            build_loss(LossSetup(spec, options, projection, student, student if name == "kd" else teacher))
        )
    ours = {name: loss_class(name) for name in loss_names()}
    if semantics == "ours":
        assert built == ours
    else:  # the reference has no ULD, and its same-tokenizer KD is ours
        assert built == ours | {"p_kl": ReferencePKLLoss, "h_kl": ReferenceHKLLoss, "gold": ReferenceGoldLoss}
