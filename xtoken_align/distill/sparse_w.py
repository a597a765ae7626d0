"""W on the torch side: the sparse projection p̃ = Wᵀ p_S, fixed or learnable, and the common sets.

`ProjectionW` keeps W's CSR structure as buffers and its values either as a buffer (fixed, the
default) or as logits θ with W[s] = softmax(θ[s]) over row s's own entries (`learnable=True`): the
sparsity pattern never changes and every non-empty row stays on the simplex. A learned W goes back
to a `Projection` (`to_projection`) and so to a W file the UI can open.

The product is a gather/scatter over W's entries (index_select + index_add) rather than
torch.sparse.mm: on CPU with torch 2.13, for a (256, 128k) batch restricted to 8,192 teacher
columns, sparse.mm (COO or CSR, with Wᵀ or W) was about as fast forward but 35x slower backward.
`project_logits` fuses the student softmax with the projection so that its backward costs one
dense pass over the logits instead of three.

Left out: building W (`xtoken_align.projection`), files (`xtoken_align.formats`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from xtoken_align.projection import HKL_THRESHOLD, Projection, build_time, common_pairs, leading_entries
from xtoken_align.vocab import Vocab


class ProjectionW(nn.Module):
    """W [V_S, V_T] from CSR arrays (`indptr` (V_S+1,), `indices` (nnz,) teacher ids, `data` (nnz,))."""

    def __init__(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        data: ArrayLike,
        shape: tuple[int, int],
        *,
        learnable: bool = False,
        identity: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        # (nnz,) entries where the student token *is* the teacher token: they win H-KL collisions.
        self.identity = np.zeros(len(np.asarray(data)), bool) if identity is None else np.asarray(identity, bool)
        v_s, v_t = (int(x) for x in shape)
        self.shape = (v_s, v_t)
        self.learnable = learnable
        crow = torch.as_tensor(np.asarray(indptr), dtype=torch.long)
        col = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        value = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        if crow.shape != (v_s + 1,) or col.shape != value.shape or int(crow[-1]) != len(col):
            raise ValueError(f"CSR arrays do not describe a {v_s}x{v_t} matrix")
        row = torch.repeat_interleave(torch.arange(v_s), crow.diff())
        by_teacher = torch.argsort(col * v_s + row)  # entries in Wᵀ's CSR order (teacher, then student)
        self.register_buffer("crow", crow, persistent=False)
        self.register_buffer("row", row, persistent=False)
        self.register_buffer("col", col, persistent=False)
        self.register_buffer("by_teacher", by_teacher, persistent=False)
        t_crow = torch.zeros(v_t + 1, dtype=torch.long)
        t_crow[1:] = torch.bincount(col, minlength=v_t).cumsum(0)
        self.register_buffer("t_crow", t_crow, persistent=False)
        # (V_T,) teacher ids some student token projects to; a learnable W's entries all stay > 0
        reaching = col if learnable else col[value > 0]
        self.register_buffer("reachable", torch.bincount(reaching, minlength=v_t) > 0, persistent=False)
        if learnable:  # θ = log w, so that softmax(θ) over a row gives back w at the start
            self.theta = nn.Parameter(torch.log(value.clamp_min(torch.finfo(torch.float32).tiny)))
        else:
            self.register_buffer("weight", value)

    @classmethod
    def from_projection(cls, projection: Projection, *, learnable: bool = False) -> ProjectionW:
        m = projection.matrix
        return cls(m.indptr, m.indices, m.data, projection.shape, learnable=learnable, identity=projection.identity())

    def values(self) -> Tensor:
        """(nnz,) current weights in CSR order; for a learnable W, softmax(θ) within each row."""
        if not self.learnable:
            return self.weight
        theta, row = self.theta, self.row
        top = torch.full((self.shape[0],), -torch.inf, dtype=theta.dtype, device=theta.device)
        top = top.scatter_reduce(0, row, theta.detach(), "amax")
        e = torch.exp(theta - top[row])
        total = torch.zeros(self.shape[0], dtype=theta.dtype, device=theta.device).index_add(0, row, e)
        return e / total[row]

    def entries(self, columns: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(entry index into `values()`, student id, output column) of the entries in `columns`
        (teacher ids, (k,)), output column j meaning columns[j]; all entries when None."""
        if columns is None:
            return torch.arange(len(self.col), device=self.col.device), self.row, self.col
        start, end = self.t_crow[columns], self.t_crow[columns + 1]
        counts = end - start
        total = int(counts.sum())
        offsets = torch.cumsum(counts, 0) - counts  # where each column's entries start in the output
        within = torch.arange(total, device=counts.device) - torch.repeat_interleave(offsets, counts, output_size=total)
        entry = self.by_teacher[torch.repeat_interleave(start, counts, output_size=total) + within]
        out_col = torch.repeat_interleave(torch.arange(len(columns), device=counts.device), counts, output_size=total)
        return entry, self.row[entry], out_col

    def project(self, p_s: Tensor, columns: Tensor | None = None) -> Tensor:
        """(K, V_S) student probabilities -> (K, V_T) Wᵀ-projected mass (or (K, k) for `columns`).
        Differentiable wrt p_s and, when learnable, θ. Computed in p_s's dtype (float64 stays)."""
        entry, student, out_col = self.entries(columns)
        width = self.shape[1] if columns is None else len(columns)
        w = self.values()[entry].to(p_s.dtype)
        gathered = p_s.index_select(-1, student) * w  # (K, nnz_sel)
        return torch.zeros(p_s.shape[0], width, dtype=p_s.dtype, device=p_s.device).index_add(-1, out_col, gathered)

    def project_logits(self, logits: Tensor, columns: Tensor | None = None) -> Tensor:
        """(n, V) student logits -> (n, k) Wᵀ softmax(logits), fused (one dense pass backward).
        Logit columns beyond W's V_S (model padding) take part in the softmax but project nowhere."""
        entry, student, out_col = self.entries(columns)
        width = self.shape[1] if columns is None else len(columns)
        return _SoftmaxProject.apply(logits, self.values()[entry].to(logits.dtype), student, out_col, width)

    def to_projection(self, base: Projection, note: str = "") -> Projection:
        """`base` with the current weights (same structure), and a "learned" entry in its history."""
        m = base.matrix
        if m.shape != self.shape or m.nnz != len(self.col) or not np.array_equal(m.indices, self.col.cpu().numpy()):
            raise ValueError("base projection does not have this W's structure")
        values = self.values().detach().double().cpu().numpy()
        row = self.row.cpu().numpy()
        sums = np.bincount(row, weights=values, minlength=self.shape[0])
        data = (values / np.where(sums > 0, sums, 1.0)[row]).astype(np.float32)
        changed = np.abs(data.astype(np.float64) - m.data) > 1e-6
        matrix = sp.csr_array((data, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        entry = {"action": "learned", "note": note, "at": build_time()}
        entry |= {"rows_changed": int(len(np.unique(row[changed]))), "max_change": float(np.abs(data - m.data).max())}
        return dataclasses.replace(base, matrix=matrix, history=[*base.history, entry])

    def common_set(self, threshold: float = HKL_THRESHOLD) -> tuple[Tensor, Tensor]:
        """H-KL common set of the current W (method.md §4): (student ids, teacher ids), by student id."""
        data = self.values().detach().float().cpu().numpy()
        matrix = sp.csr_array((data, self.col.cpu().numpy(), self.crow.cpu().numpy()), shape=self.shape)
        return _pairs(common_pairs(leading_entries(matrix), self.identity, threshold), self.col.device)

    @classmethod
    def string_common_set(cls, student: Vocab, teacher: Vocab) -> tuple[Tensor, Tensor]:
        """GOLD's common set: student and teacher ids whose raw `pieces` are equal strings, 1:1
        (on a repeated piece the lowest id wins on each side). E.g. Llama-3 "Ġthe" <-> Qwen3 "Ġthe"."""
        teacher_id: dict[str, int] = {}
        for t, piece in enumerate(teacher.pieces):
            if piece:
                teacher_id.setdefault(piece, t)
        pairs: dict[int, int] = {}
        taken: set[int] = set()
        for s, piece in enumerate(student.pieces):
            t = teacher_id.get(piece) if piece else None
            if t is not None and t not in taken:
                pairs[s] = t
                taken.add(t)
        return _pairs(pairs, torch.device("cpu"))


def _pairs(pairs: dict[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    students = sorted(pairs)
    return (
        torch.tensor(students, dtype=torch.long, device=device),
        torch.tensor([pairs[s] for s in students], dtype=torch.long, device=device),
    )


class _SoftmaxProject(torch.autograd.Function):
    """out = softmax(z) @ Wsel, Wsel given as entries (value v_e, student src_e, column dst_e).

    Backward: with h[j] = Σ_{e: src_e=j} v_e g[dst_e] and Σ_j h_j p_j = Σ_t g_t out_t,
    dz = p ⊙ (h − Σ_t g_t out_t): one dense pass plus a scatter over the selected entries.
    """

    @staticmethod
    def forward(ctx, z: Tensor, v: Tensor, src: Tensor, dst: Tensor, width: int) -> Tensor:
        p = torch.softmax(z, dim=-1)  # (n, V)
        p_src = p.index_select(-1, src)  # (n, nnz_sel)
        out = torch.zeros(z.shape[0], width, dtype=z.dtype, device=z.device).index_add_(-1, dst, p_src * v)
        ctx.save_for_backward(p, p_src, out, v, src, dst)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        p, p_src, out, v, src, dst = ctx.saved_tensors
        g_dst = g.index_select(-1, dst)  # (n, nnz_sel)
        grad_z = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_z = p * -(g * out).sum(-1, keepdim=True)
            grad_z.index_add_(-1, src, p_src * g_dst * v)
        if ctx.needs_input_grad[1]:
            grad_v = (p_src * g_dst).sum(0)
        return grad_z, grad_v, None, None, None
