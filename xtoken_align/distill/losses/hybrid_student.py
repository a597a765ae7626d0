"""The student side of the hybrid losses (H-KL, GOLD, ULD) as one autograd Function.

Per chunk k, with q_S = scale_k · Σ_{i→k} softmax(z_i / τ) (aggregate.py) and the teacher's chunk
distribution given as its common-set mass a = q_T[C_T] and its sorted uncommon tail b:

    L_k = Σ_c a_c (log a_c − log q_S[C_S[c]]) + Σ_{l<L} |top_l(q_S|U_S) − b_l|

Composed from autograd primitives this takes about a dozen (N, V)-sized temporaries (gathers and
their scatter-backs, log, clamp, the index_add's backward). Written by hand the backward is
    ∂L/∂z_i = p_i ⊙ (G_i − ⟨G_i, p_i⟩) / τ,   G_i = H[k(i)],
    H[k, C_S[c]] = −a_c / s_c,  H[k, tail index l] = sign_l · scale_k   (s = Σ p, unscaled),
so the forward keeps only p, a / s on C and the tail, and the backward builds H and G once.
Σ a (log a − log s) is taken as Σ a · log(a / s), in the memory of s on C. ∂L/∂log scale_k =
−Σ a + Σ_l sign_l q_l (the chain factor's gradient).
Left out: the teacher side (no gradient; hybrid.py computes a and b).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xtoken_align.distill.aggregate import LOG_FLOOR, chunk_sum


def row_dot(x: Tensor, y: Tensor) -> Tensor:
    """(n, V), (n, V) -> (n,) Σ_v x·y per row, without an (n, V) temporary."""
    return torch.bmm(x.unsqueeze(1), y.unsqueeze(2)).reshape(-1)


def hybrid_student(
    z: Tensor,
    log_scale: Tensor,
    target: Tensor,
    common: Tensor,
    uncommon: Tensor | None,
    a: Tensor,
    b: Tensor,
    tau: float = 1.0,
) -> Tensor:
    """(K,) L_k: z (N, V) student logits in the
    compute dtype, log_scale (K,), target (N,) chunk per row (K = unused), common (C,) student ids,
    uncommon (U,) student ids or None for every id, a (K, C), b (K, L) descending."""
    return _HybridStudent.apply(z, log_scale, target, common, uncommon, a, b, tau)


class _HybridStudent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, log_scale, target, common, uncommon, a, b, tau):
        n_chunks, length = len(log_scale), b.shape[-1]
        p = torch.softmax(z if tau == 1.0 else z / tau, dim=-1)  # (N, V)
        s = chunk_sum(p, target, n_chunks)  # (K, V) unscaled chunk sums
        loss = -a.sum(-1) * log_scale
        ratio = sign = columns = tail = None
        if len(common):
            tiny = LOG_FLOOR  # the same floor in every dtype (aggregate.safe_log)
            s_c = s.index_select(1, common).clamp_min_(tiny)  # (K, C)
            ratio = a / s_c  # kept for the backward
            log_ratio = torch.clamp(ratio, min=tiny, out=s_c).log_()  # log a − log s, in s_c's memory
            loss = loss + row_dot(a, log_ratio)
        if length:
            values, where = torch.topk(s if uncommon is None else s.index_select(1, uncommon), length, dim=-1)
            tail = values * log_scale.exp().unsqueeze(1)  # (K, L) q_S's largest uncommon values
            sign = torch.sign(tail - b)
            loss = loss + (tail - b).abs().sum(-1)
            columns = where if uncommon is None else uncommon[where]
        ctx.tau = tau
        ctx.save_for_backward(p, log_scale, target, common, a, ratio, sign, columns, tail)
        return loss

    @staticmethod
    def backward(ctx, g):
        p, log_scale, target, common, a, ratio, sign, columns, tail = ctx.saved_tensors
        n_chunks = len(log_scale)
        h = torch.zeros(n_chunks + 1, p.shape[-1], dtype=p.dtype, device=p.device)  # ∂L/∂s, spare row K
        if ratio is not None:
            h[:n_chunks].index_copy_(1, common, ratio * -g.unsqueeze(1))
        if sign is not None:
            h[:n_chunks].scatter_add_(1, columns, sign * (g * log_scale.exp()).unsqueeze(1))
        grad = h[target]  # (N, V) ∂L/∂p_i
        grad.sub_(row_dot(grad, p).unsqueeze(1)).mul_(p)
        if ctx.tau != 1.0:
            grad.div_(ctx.tau)
        grad_scale = None
        if ctx.needs_input_grad[1]:
            grad_scale = -a.sum(-1) + (0.0 if sign is None else (sign * tail).sum(-1))
            grad_scale = g * grad_scale
        return grad, grad_scale, None, None, None, None, None, None
