"""Shared by the loss tests (test_losses_*.py, test_sparse_w.py): a random sparse W, a batch with
mixed chunk layouts, and naive dense references (float64, explicit loops) of every loss; and by the
run tests (test_distill_run, test_hf_trainer): `distill_assets`, the tiny models they train.

The references walk chunks and positions in Python and use a dense W; the modules under test are
vectorised and sparse. conftest.py loads the fixtures for every test module, and test modules
and import the helpers by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xtoken_align.assemble import assemble_entries
from xtoken_align.distill.losses import GoldLoss, HKLLoss, PKLLoss, ULDLoss
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.projection import Projection, TokenizerInfo

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
        return loss, {"pairs": projection.common_set(), "tail": tail}
    if kind == "gold":
        loss = GoldLoss(FAKE_STUDENT, FAKE_TEACHER, tail=tail, aggregation=aggregation, tau=tau)
        pairs = {}
        for a, piece in enumerate(FAKE_STUDENT.pieces):
            match = [b for b, other in enumerate(FAKE_TEACHER.pieces) if piece and other == piece]
            if match and match[0] not in pairs.values():
                pairs[a] = match[0]
        return loss, {"pairs": pairs, "tail": tail}
    return ULDLoss(tail=tail, aggregation=aggregation, tau=tau), {"tail": tail}


def loss_kwargs(kind: str, projection: Projection) -> dict:
    w = ProjectionW.from_projection(projection).double()
    by_kind = {"p_kl": {"w": w, "topk": TOPK}, "h_kl": {"w": w, "tail": TAIL}, "uld": {"tail": TAIL}}
    by_kind["gold"] = {"student_vocab": FAKE_STUDENT, "teacher_vocab": FAKE_TEACHER, "tail": TAIL}
    return by_kind.get(kind, {})


def padded(logits: torch.Tensor, extra: int, seed: int) -> torch.Tensor:
    """logits with `extra` padding columns of large finite logits (40 ± 1: they would dominate a softmax)."""
    g = torch.Generator().manual_seed(seed)
    pad = 40.0 + torch.randn(*logits.shape[:-1], extra, generator=g, dtype=logits.dtype)
    return torch.cat([logits.detach(), pad], -1).requires_grad_()


def unreachable_reference(teacher, t_chunk, dense) -> float:
    """Mean over valid chunks of the teacher's mean-aggregated mass on the ids no W column reaches."""
    t = teacher.reshape(-1, V_T)
    empty = [v for v in range(V_T) if dense[:, v].sum() == 0]
    chunks = positions_by_chunk(t_chunk)
    valid = sorted(set(chunks) & set(positions_by_chunk(torch.tensor(STUDENT_CHUNK))))
    mass = [sum(float(torch.softmax(t[i], -1)[empty].sum()) for i in chunks[c]) / len(chunks[c]) for c in valid]
    return sum(mass) / len(mass)


def distill_assets(root: Path, texts: list[str]) -> dict[str, Path]:
    """What the run tests train on (test_distill_run, test_hf_trainer): `texts` as train.jsonl, the
    Llama-3 × Qwen3 W and tiny seeded models with the real tokenizers (a Llama-3 student, a Qwen3
    teacher and a same-tokenizer Llama-3 teacher)."""
    from conftest import vocab

    from xtoken_align.distill.models import tiny_model
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import build_projection

    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    w = save_projection(build_projection(vocab("llama3"), vocab("qwen3"), progress=False), root / "W.safetensors")
    return {
        "data": data,
        "w": w,
        "student": tiny_model("llama", vocab("llama3"), root / "student", seed=1),
        "qwen": tiny_model("qwen3", vocab("qwen3"), root / "qwen", seed=2),
        "llama_teacher": tiny_model("llama", vocab("llama3"), root / "llama-teacher", hidden=96, seed=3),
        "root": root,
    }
