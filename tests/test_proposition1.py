"""method.md §1, the paper's Proposition 1, on the real Llama-3 (student) x Qwen3 (teacher) pair.

One chunk: the student writes the numeral "201" in one token, the teacher as "2", "0", "1". The
student finds "201" moderately likely; the teacher is confident in "2" at its first position.
Under GOLD the common set is the raw string matches: Qwen splits digits, so none of Llama's 1,100
multi-digit numerals is common and the KL through the full student softmax pushes every one of
them down (gradient ≥ 0 on its logit), the ground truth included. Under P-KL, W maps "201" to
("2", "0", "1") with (0.90, 0.09, 0.009), so the same teacher pulls the ground truth up.
"""

from __future__ import annotations

import pytest
import torch
from conftest import vocab

from xtoken_align.distill.losses import GoldLoss, PKLLoss
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.projection import build_projection

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setting():
    student, teacher = vocab("llama3"), vocab("qwen3")
    projection = build_projection(student, teacher, progress=False)
    truth = student.pieces.index("201")
    digits = [teacher.pieces.index(d) for d in "201"]
    numerals = [i for i, p in enumerate(student.pieces) if 2 <= len(p) <= 3 and p.isascii() and p.isdigit()]

    g = torch.Generator().manual_seed(0)
    student_logits = torch.randn(1, 1, student.size, generator=g)
    rest = torch.logsumexp(torch.cat([student_logits[0, 0, :truth], student_logits[0, 0, truth + 1 :]]), 0)
    student_logits[0, 0, truth] = rest + torch.log(torch.tensor(0.25))  # p("201") = 0.2
    teacher_logits = torch.randn(1, 3, teacher.size, generator=g)
    for position, digit in enumerate(digits):  # confident in "2", then "0", then "1"
        teacher_logits[0, position, digit] += 16.0  # p ≈ 0.97 against 151k random logits
    batch = {
        "teacher": teacher_logits,  # the teacher side of `ChunkLoss.forward`
        "student_chunk": torch.zeros(1, 1, dtype=torch.long),  # one position predicting "201"
        "teacher_chunk": torch.zeros(1, 3, dtype=torch.long),  # three predicting "2", "0", "1"
        "labels": torch.tensor([[truth]]),
        "teacher_labels": torch.tensor([digits]),
    }
    return student, teacher, projection, truth, numerals, student_logits, batch


def kd_gradient(loss: torch.nn.Module, student_logits: torch.Tensor, batch: dict) -> torch.Tensor:
    logits = student_logits.clone().requires_grad_()
    value = loss(logits, **batch)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value)
    return grad[0, 0]


def test_the_setting(setting):
    student, teacher, projection, truth, numerals, student_logits, batch = setting
    assert len(numerals) == 1100 and truth in numerals
    assert float(torch.softmax(student_logits[0, 0], -1)[truth]) == pytest.approx(0.2, abs=1e-3)
    assert float(torch.softmax(batch["teacher"][0, 0], -1).max()) > 0.9
    assert [teacher.pieces[t] for t, _, _, _ in projection.row(truth)] == ["2", "0", "1"]


@pytest.mark.parametrize("aggregation", ["mean", "first", "chain"])
def test_gold_pushes_every_unmatched_numeral_down(setting, aggregation):
    student, teacher, _, truth, numerals, student_logits, batch = setting
    loss = GoldLoss(student, teacher, aggregation=aggregation)
    common = set(loss.common_student.tolist())
    assert not common & set(numerals)  # all 1,100 are unmatched
    assert {student.pieces.index(d) for d in "0123456789"} <= common
    grad = kd_gradient(loss, student_logits, batch)
    assert bool((grad[numerals] >= 0).all()), f"{int((grad[numerals] < 0).sum())} numerals pulled up"
    assert float(grad[truth]) > 0  # the ground truth is pushed down
    # The common-set KL term alone (no tail): exactly p_S[j] · Σ_{t∈C} q_T[t] on every unmatched j.
    kl_only = kd_gradient(GoldLoss(student, teacher, tail=0, aggregation=aggregation), student_logits, batch)
    p = torch.softmax(student_logits[0, 0], -1)
    mass = kl_only[truth] / p[truth]
    assert 0 < float(mass) <= 1
    torch.testing.assert_close(kl_only[numerals], p[numerals] * mass)


@pytest.mark.parametrize("aggregation", ["first", "mean"])
def test_p_kl_pulls_the_ground_truth_up(setting, aggregation):
    _, _, projection, truth, _, student_logits, batch = setting
    loss = PKLLoss(ProjectionW.from_projection(projection), aggregation=aggregation)
    grad = kd_gradient(loss, student_logits, batch)
    assert float(grad[truth]) < 0
