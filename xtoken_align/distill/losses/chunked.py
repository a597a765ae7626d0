"""Losses from hidden states, in position chunks: the output layer's logits are recomputed chunk by
chunk, forward and backward, so no (N, V) tensor outlives one chunk.

    OutputHead(hidden (N, H), weight (V', H), bias (V',) | None, chunk_positions)   logits = h Wᵀ + b

A loss given an `OutputHead` instead of logits splits its rows into groups (`chunk_groups`: whole
alignment chunks, `position_groups`: single positions) of at most `chunk_positions` rows per side and
calls its own per-chunk formula on each group's logits: the formula is the same code as on full
logits, and the sum over groups is exact because every term of those losses lives within one
alignment chunk (P-KL's micro-batch top-k columns are chosen first, in a pass of their own). The
student side runs in `_ChunkedHead`: its forward computes, per group, the logits, the group's loss and
its gradients wrt the group's hidden rows, W, b and the loss's own parameters (a learned W), and
keeps only those gradients (N·H + V'·H, not N·V'); its backward scales them by the incoming gradient.
A teacher's side is recomputed per group without gradient (an `OutputHead`), sliced from its
logits (a tensor) or read from a teacher cache's stored ids (a `SparseTeacher`). Left out: the
formulas (projected.py, hybrid.py, same_tokenizer.py, objective.py) and how a model's hidden states
are obtained (student_terms.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xtoken_align.distill.aggregate import ChunkLayout, compute_dtype
from xtoken_align.distill.losses.sparse_teacher import SparseTeacher


@dataclass(frozen=True)
class OutputHead:
    """A model's final hidden states and output layer: logits = hidden @ weightᵀ + bias, computed
    `chunk_positions` rows at a time. hidden (..., H) is flattened to (N, H)."""

    hidden: Tensor
    weight: Tensor
    bias: Tensor | None = None
    chunk_positions: int = 1024

    def __post_init__(self) -> None:
        if self.chunk_positions < 1:
            raise ValueError(f"chunk_positions must be at least 1, got {self.chunk_positions}")
        if self.hidden.shape[-1] != self.weight.shape[-1]:
            raise ValueError(f"hidden size {self.hidden.shape[-1]} does not match the output layer's "
                             f"{tuple(self.weight.shape)}")  # fmt: skip

    @property
    def rows(self) -> Tensor:
        """(N, H) the flattened hidden states."""
        return self.hidden.reshape(-1, self.hidden.shape[-1])

    def logits(self, rows: Tensor) -> Tensor:
        """(n,) row ids -> (n, V') logits of those rows."""
        return nn.functional.linear(self.rows.index_select(0, rows), self.weight, self.bias)


Source = Tensor | OutputHead | SparseTeacher  # logits (..., V'), the layer that makes them, or a cache's


def source_rows(source: Source, rows: Tensor) -> Tensor:
    """(n, V') logits of `rows` of a teacher-side source, without gradient (a cache's: densified)."""
    with torch.no_grad():
        if isinstance(source, OutputHead):
            return source.logits(rows)
        if isinstance(source, SparseTeacher):
            return source.select(rows).dense()
        return source.detach().reshape(-1, source.shape[-1]).index_select(0, rows)


def narrow_columns(source: Source, columns: Tensor) -> Source:
    """The same source with only `columns` (k,) of its logits: (N, k) or a head with k output rows."""
    if isinstance(source, OutputHead):
        bias = None if source.bias is None else source.bias.index_select(0, columns)
        return OutputHead(source.hidden, source.weight.index_select(0, columns), bias, source.chunk_positions)
    if isinstance(source, SparseTeacher):
        return source.columns(columns)
    return source.detach().reshape(-1, source.shape[-1]).index_select(1, columns)


def head_zero(head: OutputHead) -> Tensor:
    """0 that backpropagates (zeros) into the hidden states and the output layer."""
    total = head.hidden.sum() + head.weight.sum() + (0.0 if head.bias is None else head.bias.sum())
    return total.to(compute_dtype(head.weight)) * 0.0


@dataclass(frozen=True)
class Group:
    """One chunk of work: student rows, teacher rows (sorted by chunk, then position) and, for chunk
    groups, the group's layout with chunks renumbered from 0."""

    student: Tensor
    teacher: Tensor
    layout: ChunkLayout | None = None


def chunk_groups(layout: ChunkLayout, limit: int) -> list[Group]:
    """Consecutive valid chunks, as many as keep both sides within `limit` positions (a chunk longer
    than `limit` alone). Positions in no valid chunk take no part. E.g. counts (2, 1, 3) on both
    sides, limit 3 -> chunks {0, 1}, {2}."""
    sides = (layout.student, layout.teacher)
    counts = [side.count.tolist() for side in sides]
    bounds, sizes = [0], [0, 0]
    for k in range(layout.n_chunks):
        s, t = counts[0][k], counts[1][k]
        if k > bounds[-1] and (sizes[0] + s > limit or sizes[1] + t > limit):
            bounds.append(k)
            sizes = [0, 0]
        sizes = [sizes[0] + s, sizes[1] + t]
    bounds.append(layout.n_chunks)
    orders = [torch.argsort(side.target, stable=True) for side in sides]  # valid rows by chunk, then position
    starts = [[0, *itertools.accumulate(c)] for c in counts]
    groups = []
    for a, b in itertools.pairwise(bounds):
        rows = [order[start[a] : start[b]] for order, start in zip(orders, starts, strict=True)]
        ids = [side.target.index_select(0, r) - a for side, r in zip(sides, rows, strict=True)]
        groups.append(Group(*rows, ChunkLayout.build(*ids)))
    return groups if layout.n_chunks else []


def position_groups(keep: Tensor, limit: int) -> list[Group]:
    """Rows where `keep` (N,) is true, `limit` at a time; the same rows on both sides."""
    rows = torch.nonzero(keep).squeeze(1)
    return [Group(part, part) for part in torch.split(rows, limit)]


def chunked_head_sum(
    loss_of: Callable[[Tensor, int], Tensor | tuple[Tensor, Tensor]],
    head: OutputHead,
    groups: Sequence[Group],
    params: Sequence[Tensor] = (),
) -> Tensor:
    """Σ_g loss_of(logits of group g's student rows, g) as a scalar whose gradient reaches head.hidden,
    head.weight, head.bias and `params` (tensors loss_of uses that require grad), computed group by group.
    A loss that knows its gradient in closed form returns (value, ∂value/∂logits) instead of the value:
    no autograd graph over the (n, V') logits then (CE: softmax − one-hot)."""
    params = [p for p in params if p.requires_grad]
    return _ChunkedHead.apply(loss_of, groups, len(params), head.rows, head.weight, head.bias, *params)


class _ChunkedHead(torch.autograd.Function):
    """Per group: z = h Wᵀ + b (in the autocast dtype when autocast is on, as nn.Linear would), the
    group's loss and ∂L/∂z by autograd, then by hand ∂L/∂h = ∂L/∂z W and ∂L/∂W += ∂L/∂zᵀ h (in place,
    addmm_, when the dtypes agree) and ∂L/∂b += Σ ∂L/∂z: no (V', H) temporary per group in float32."""

    @staticmethod
    def forward(ctx, loss_of, groups, n_params, hidden, weight, bias, *params):
        inputs = (hidden, weight, bias, *params)
        wanted = ctx.needs_input_grad[3:]  # per input in `inputs`
        device = hidden.device.type
        cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        w, b = weight.detach().to(cast), None if bias is None else bias.detach().to(cast)  # cast once
        acc = compute_dtype(weight)
        grad_h = torch.zeros_like(hidden) if wanted[0] else None
        grads = [torch.zeros_like(x, dtype=acc) if w_ else None for x, w_ in zip(inputs[1:], wanted[1:], strict=True)]
        total = torch.zeros((), dtype=compute_dtype(hidden), device=hidden.device)
        for number, group in enumerate(groups):
            total += _group_step(loss_of, number, group, hidden, w, b, grad_h, grads, params).to(total.dtype)
        ctx.dtypes = [x.dtype if w_ else None for x, w_ in zip(inputs, wanted, strict=True)]
        ctx.save_for_backward(*[torch.empty(0) if g is None else g for g in (grad_h, *grads)])
        return total

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        scaled = [None if dtype is None else (x * g).to(dtype) for x, dtype in zip(saved, ctx.dtypes, strict=True)]
        return None, None, None, *scaled


_BUFFERS: dict[tuple, Tensor] = {}


def logits_buffer(rows: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(rows, width) memory for one group's logits, reused across groups, losses and steps on the CPU:
    a fresh tensor that large costs its page faults each time (the allocator hands blocks over 32 MB
    back to the system), as long as the matmul that fills it. Elsewhere (CUDA's allocator caches
    blocks itself) a fresh tensor. Its contents are the caller's until the next call."""
    if device.type != "cpu":
        return torch.empty(rows, width, dtype=dtype, device=device)
    key = (width, dtype)
    buffer = _BUFFERS.get(key)
    if buffer is None or buffer.shape[0] < rows:
        _BUFFERS.clear()  # one buffer at a time: the largest group's
        buffer = _BUFFERS[key] = torch.empty(rows, width, dtype=dtype)
    return buffer[:rows]


def _group_step(loss_of, number: int, group: Group, hidden, w, b, grad_h, grads, params) -> Tensor:
    """One group of `_ChunkedHead.forward`: its loss (detached), its gradients added to grad_h (its rows)
    and grads (W, b, params; None where not wanted). A function so that its (n, V') tensors die with it."""
    device, cast = hidden.device.type, w.dtype
    h = hidden.detach().index_select(0, group.student).to(cast)  # (n, H)
    out = logits_buffer(len(h), w.shape[0], cast, hidden.device)
    z = torch.mm(h, w.T, out=out) if b is None else torch.addmm(b, h, w.T, out=out)  # = linear(h, w, b)
    with torch.enable_grad():
        z.requires_grad_(grad_h is not None or any(x is not None for x in grads))
        found = loss_of(z, number)  # scalar, or (scalar, ∂/∂z) in closed form, which may overwrite z
    if isinstance(found, tuple):
        value, grad_z = found
        grad_params = [None] * len(params)
    elif not found.requires_grad:
        return found.detach()
    else:
        value = found
        grad_z, *grad_params = torch.autograd.grad(value, [z, *params], allow_unused=True)
    del z, found  # (n, V'): only its gradient is needed from here
    if grad_z is not None:
        with torch.autocast(device, enabled=False):
            grad_z = grad_z.to(cast)
            if grad_h is not None:  # each row is in one group
                grad_h.index_copy_(0, group.student, (grad_z @ w).to(grad_h.dtype))
            if grads[0] is not None:
                if grads[0].dtype == cast:
                    grads[0].addmm_(grad_z.T, h)  # in place: no (V', H) temporary
                else:
                    grads[0].add_(grad_z.T @ h)
            if grads[1] is not None:
                grads[1].add_(grad_z.sum(0))
    for total_grad, g in zip(grads[2:], grad_params, strict=True):
        if g is not None:
            total_grad.add_(g)
    return value.detach()
