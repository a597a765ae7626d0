"""A cached teacher's side of a micro-batch, kept sparse: per position a few ids and their log p̂.

    SparseTeacher(ids (..., M), logp (..., M), size V_T, log_ratio (..., M))
    log p̂[v] = logp[slot of v], −inf elsewhere

A teacher cache stores per position the top-K ids, the next token and S sampled ids (cache/signal.py);
a position's slots hold distinct ids, empty slots hold −inf. The losses read it through the same
helpers as a live teacher's logits (chunked.py: `source_rows`, `narrow_columns`, `column_max`), so a
loss that compares only some columns (P-KL's top-k) never builds a (N, V_T) tensor: its columns come
from the ids stored, and `narrow_columns` scatters the stored values into (N, k). Losses that read whole
rows (H-KL, GOLD, ULD, KD) get them densified one row group at a time. Since Σ p̂ = 1 per position, a
softmax of the densified rows is p̂ itself. p̂ is lumpier than p (a drawn id holds the mass of many), so
a KL's teacher term Σ p̂ log p̂ is too high; `log_ratio` = log p − log p̂ per slot (0 but on drawn ids)
turns it into the unbiased Σ p̂ log p (`kl_correction`), which the losses add to their values (base.py).
Columns picked from the stored ids get each stored id's own p instead (`columns`).
Left out: reading the cache (cache/reader.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SparseTeacher:
    """log p̂ of N positions (leading dims flattened by `flat`) at M slots each, over `size` teacher ids."""

    ids: Tensor  # (..., M) long, distinct per position where logp is finite
    logp: Tensor  # (..., M) float32, −inf in empty slots
    size: int  # V_T
    log_ratio: Tensor | None = None  # (..., M) log p − log p̂ per slot (0 on exact and empty slots)

    def flat(self) -> SparseTeacher:
        """(N, M) rows, N = the product of the leading dims."""
        m = self.ids.shape[-1]
        ratio = None if self.log_ratio is None else self.log_ratio.reshape(-1, m)
        return SparseTeacher(self.ids.reshape(-1, m), self.logp.reshape(-1, m), self.size, ratio)

    @property
    def n_rows(self) -> int:
        return self.ids[..., 0].numel()

    @property
    def device(self) -> torch.device:
        return self.logp.device

    def select(self, rows: Tensor) -> SparseTeacher:
        """The positions `rows` (n,) of the flattened rows."""
        flat = self.flat()
        ratio = None if flat.log_ratio is None else flat.log_ratio.index_select(0, rows)
        return SparseTeacher(flat.ids.index_select(0, rows), flat.logp.index_select(0, rows), self.size, ratio)

    def kl_correction(self, ids: Tensor | None = None) -> Tensor | None:
        """(N,) Σ_slots π̂ (log p − log p̂), π̂ = p̂ on the ids where `ids` (V_T,) is true (all when None):
        what turns a KL's teacher term Σ π̂ log π̂ into Σ π̂ log p, the live term's unbiased estimate for
        ids fixed in advance. ≤ 0 in expectation; 0 when nothing was drawn; None for a cache without
        the drawn ids' log p."""
        if self.log_ratio is None:
            return None
        flat = self.flat()
        p = flat.logp.float().softmax(-1).nan_to_num_(0.0)  # p̂, float16 rounding removed
        p = p if ids is None else p * ids[flat.ids]
        return (p * flat.log_ratio.float()).sum(-1)

    def dense(self) -> Tensor:
        """(N, V_T) log p̂, −inf where nothing is stored. amax, so an empty slot never hides a value."""
        flat = self.flat()
        out = torch.full((flat.n_rows, self.size), -torch.inf, dtype=flat.logp.dtype, device=flat.logp.device)
        return out.scatter_reduce_(1, flat.ids, flat.logp, "amax")

    def columns(self, columns: Tensor) -> Tensor:
        """(N, k) the teacher's log-values on `columns` (k,) sorted teacher ids, for a loss that compares
        only those (P-KL's top-k), picked from the ids stored. There p̂ would be biased: a drawn id is on
        the columns because it was drawn, and its p̂ holds the mass of many ids, most of them elsewhere
        (a flat teacher: p̂ ≈ 1 on the columns, p ≈ 0.05). So each stored id gets its own log p, and
        each column not stored at a position the mass the position left unstored, spread evenly over
        the ids it did not store (exact for a flat tail). Without the drawn ids' log p: log p̂, −inf
        where nothing is stored."""
        flat, k = self.flat(), len(columns)
        slot = torch.searchsorted(columns, flat.ids).clamp_max_(max(k - 1, 0))
        hit = columns.index_select(0, slot.reshape(-1)).reshape(slot.shape) == flat.ids if k else slot < 0
        own = flat.logp if flat.log_ratio is None else flat.logp.float() + flat.log_ratio.float()
        out = torch.full((flat.n_rows, k + 1), -torch.inf, dtype=own.dtype, device=own.device)
        out = out.scatter_reduce_(1, torch.where(hit, slot, k), own, "amax")[:, :k]
        if flat.log_ratio is None:
            return out
        stored = torch.isfinite(flat.logp)
        left = (1.0 - own.exp().sum(-1)).clamp_min(0.0) / (self.size - stored.sum(-1)).clamp_min(1)  # (N,)
        fill = left.clamp_min(torch.finfo(left.dtype).tiny).log()[:, None]
        return torch.where(torch.isfinite(out), out, fill).to(flat.logp.dtype)

    def column_max(self, valid: Tensor | None = None) -> Tensor:
        """(V_T,) max log p over the `valid` (N,) positions (all when None), −inf on ids never stored: a
        drawn id's own log p, not its log p̂ (which holds the mass of many ids and would outrank ids that
        are likelier; P-KL picks its columns by this, as a live teacher's by its logits)."""
        flat = self.flat()
        logp = flat.logp if flat.log_ratio is None else flat.logp + flat.log_ratio
        logp = logp if valid is None else logp.masked_fill(~valid.reshape(-1, 1), -torch.inf)
        out = torch.full((self.size,), -torch.inf, dtype=logp.dtype, device=logp.device)
        return out.scatter_reduce_(0, flat.ids.reshape(-1), logp.reshape(-1), "amax")

    def share(self, ids: Tensor, tau: float = 1.0) -> Tensor:
        """(N,) each position's share of softmax(log p̂ / τ) on the teacher ids where `ids` (V_T,) is true."""
        flat = self.flat()
        p = (flat.logp if tau == 1.0 else flat.logp / tau).exp()
        return (p * ids[flat.ids]).sum(-1) / p.sum(-1).clamp_min(torch.finfo(p.dtype).tiny)
