"""The paper's Needleman-Wunsch alignment (method.md §3), the `"dp"` method of `align.py`.

Over canonical token bytes with the reference constants: exact match +3 (a mismatched diagonal
-3), one token against the join of k ≤ 4 tokens on the other side +1.5·k, gap -1.5, unique 3-gram
anchors to avoid quadratic cost; long stretches between anchors run a row-vectorised DP. Runs of
unmatched pairs are merged when their bytes agree and dropped otherwise (gap positions get chunk
-1). Slower than the byte walk; offered for comparison with the reference aligner.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from xtoken_align.distill.align import _Side

MATCH, COMBINE, GAP, MAX_COMBINE, ANCHOR = 3.0, 1.5, -1.5, 4, 3  # reference DP constants
_WINDOW = 10  # unmatched DP pairs are merged over at most this many pairs (reference re-alignment window)
_DIAG, _UP, _LEFT = 0, 1, 2  # DP moves; 3 + k: one student token over k teacher ones; 8 + k: the reverse
_WIDE_DP = 64  # segments with more teacher tokens than this run the row-vectorised DP, others the plain one


def _units(side: _Side) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """Tokens with bytes (the DP's sequence): their token indices, byte offsets (n+1,), bytes."""
    index = np.flatnonzero(side.end > side.start)
    cuts = np.append(side.start[index], side.end[index[-1]] if len(index) else 0)
    data = side.stream
    return index, cuts, [data[a:b] for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)]


def align_dp(s: _Side, t: _Side) -> tuple[np.ndarray, np.ndarray]:
    s_index, s_cuts, s_bytes = _units(s)
    t_index, t_cuts, t_bytes = _units(t)
    keys: dict[bytes, int] = {}
    s_keys = [keys.setdefault(b, len(keys)) for b in s_bytes]
    t_keys = [keys.setdefault(b, len(keys)) for b in t_bytes]
    pairs: list[tuple[int, int, bool]] = []  # (student units, teacher units, matched) in text order
    i0 = j0 = 0
    for i, j in _anchors(s_keys, t_keys):  # DP between anchors; an anchor is three 1:1 matches
        pairs += _dp(s_bytes[i0:i], t_bytes[j0:j], s_keys[i0:i], t_keys[j0:j], keys) + [(1, 1, True)] * ANCHOR
        i0, j0 = i + ANCHOR, j + ANCHOR
    pairs += _dp(s_bytes[i0:], t_bytes[j0:], s_keys[i0:], t_keys[j0:], keys)
    s_data, t_data = s.stream, t.stream
    s_unit = np.full(len(s_bytes), -1, dtype=np.int64)
    t_unit = np.full(len(t_bytes), -1, dtype=np.int64)
    s_at = np.cumsum([0] + [a for a, _, _ in pairs])  # unit position before each pair
    t_at = np.cumsum([0] + [b for _, b, _ in pairs])
    chunk, k = 0, 0
    while k < len(pairs):
        stop = k + 1
        if not pairs[k][2]:  # a run of unmatched pairs: one chunk if its bytes agree, else dropped
            while stop < len(pairs) and not pairs[stop][2]:
                stop += 1
            for end in range(stop, min(max(stop, k + _WINDOW), len(pairs)) + 1):
                a, b = s_data[s_cuts[s_at[k]] : s_cuts[s_at[end]]], t_data[t_cuts[t_at[k]] : t_cuts[t_at[end]]]
                if a == b:
                    stop = end
                    break
            else:
                k = stop
                continue
        s_unit[s_at[k] : s_at[stop]] = chunk
        t_unit[t_at[k] : t_at[stop]] = chunk
        chunk, k = chunk + 1, stop
    return _spread(s, s_index, s_unit), _spread(t, t_index, t_unit)


def _spread(side: _Side, index: np.ndarray, unit_chunk: np.ndarray) -> np.ndarray:
    """Unit chunks back onto every token: a zero-width regular token joins the next unit's chunk."""
    where = np.minimum(np.searchsorted(index, np.arange(len(side.ids))), len(index) - 1)
    chunk = unit_chunk[where] if len(index) else np.full(len(side.ids), -1, dtype=np.int64)
    chunk[side.special] = -1
    return chunk


def _anchors(s_keys: list[int], t_keys: list[int]) -> list[tuple[int, int]]:
    """Start positions of 3-grams that occur exactly once on each side, greedy, non-overlapping, monotone."""

    def once(seq: list[int]) -> dict[tuple[int, ...], int]:
        grams = list(zip(seq, seq[1:], seq[2:], strict=False))
        counts = Counter(grams)
        return {g: i for i, g in enumerate(grams) if counts[g] == 1}

    s_once, t_once = once(s_keys), once(t_keys)
    chosen, s_free, t_free = [], 0, 0
    for i, j in sorted((i, t_once[g]) for g, i in s_once.items() if g in t_once):
        if i >= s_free and j >= t_free:  # no overlap with the previous anchor, and monotone
            chosen.append((i, j))
            s_free, t_free = i + ANCHOR, j + ANCHOR
    return chosen


def _dp(s_bytes, t_bytes, s_keys, t_keys, keys) -> list[tuple[int, int, bool]]:
    """Needleman-Wunsch over one segment; (student units, teacher units, matched) per pair."""
    n1, n2 = len(s_keys), len(t_keys)
    if not n1 or not n2:
        return [(1, 0, False)] * n1 + [(0, 1, False)] * n2
    # combine[k][i][j]: unit i on one side equals the join of the k units ending at j on the other
    s_join = {
        k: [keys.get(b"".join(s_bytes[e - k : e]), -1) for e in range(k, n1 + 1)] for k in range(2, MAX_COMBINE + 1)
    }
    t_join = {
        k: [keys.get(b"".join(t_bytes[e - k : e]), -1) for e in range(k, n2 + 1)] for k in range(2, MAX_COMBINE + 1)
    }
    moves = (_dp_numpy if n2 > _WIDE_DP else _dp_small)(s_keys, t_keys, s_join, t_join)
    pairs = []
    i, j = n1, n2
    while i > 0 or j > 0:
        move = moves[i][j]
        if move == _DIAG:
            pairs.append((1, 1, s_keys[i - 1] == t_keys[j - 1]))
            i, j = i - 1, j - 1
        elif move == _UP:
            pairs.append((1, 0, False))
            i -= 1
        elif move == _LEFT:
            pairs.append((0, 1, False))
            j -= 1
        elif move < 8:  # one student unit over k teacher units
            pairs.append((1, move - 3, True))
            i, j = i - 1, j - (move - 3)
        else:
            pairs.append((move - 8, 1, True))
            i, j = i - (move - 8), j - 1
    return pairs[::-1]


def _dp_small(s_keys, t_keys, s_join, t_join) -> list[list[int]]:
    """The reference recurrence cell by cell; ties: diagonal, up, left, then combinations (strictly better)."""
    n1, n2 = len(s_keys), len(t_keys)
    dp = [[GAP * (i + j) if i == 0 or j == 0 else 0.0 for j in range(n2 + 1)] for i in range(n1 + 1)]
    moves = [[_LEFT if i == 0 else _UP for _ in range(n2 + 1)] for i in range(n1 + 1)]
    for i in range(1, n1 + 1):
        for j in range(1, n2 + 1):
            best = dp[i - 1][j - 1] + (MATCH if s_keys[i - 1] == t_keys[j - 1] else -MATCH)
            move = _DIAG
            for score, candidate in ((dp[i - 1][j] + GAP, _UP), (dp[i][j - 1] + GAP, _LEFT)):
                if score > best:
                    best, move = score, candidate
            for k in range(2, min(j, MAX_COMBINE) + 1):
                if t_join[k][j - k] == s_keys[i - 1] and dp[i - 1][j - k] + COMBINE * k > best:
                    best, move = dp[i - 1][j - k] + COMBINE * k, 3 + k
            for k in range(2, min(i, MAX_COMBINE) + 1):
                if s_join[k][i - k] == t_keys[j - 1] and dp[i - k][j - 1] + COMBINE * k > best:
                    best, move = dp[i - k][j - 1] + COMBINE * k, 8 + k
            dp[i][j], moves[i][j] = best, move
    return moves


def _dp_numpy(s_keys, t_keys, s_join, t_join) -> np.ndarray:
    """The same recurrence a row at a time: the in-row left gap is a running maximum."""
    n1, n2 = len(s_keys), len(t_keys)
    sk, tk = np.asarray(s_keys), np.asarray(t_keys)
    t_over = {k: np.asarray(v) for k, v in t_join.items()}  # (n2 - k + 1,) key of teacher units j-k..j-1
    s_over = {k: np.asarray(v) for k, v in s_join.items()}
    ramp = -GAP * np.arange(n2 + 1)
    dp = np.zeros((n1 + 1, n2 + 1))
    dp[0] = GAP * np.arange(n2 + 1)
    moves = np.full((n1 + 1, n2 + 1), _UP, dtype=np.int64)
    moves[0] = _LEFT
    for i in range(1, n1 + 1):
        prev = dp[i - 1]
        best = prev[:-1] + np.where(tk == sk[i - 1], MATCH, -MATCH)
        up = prev[1:] + GAP
        move = np.where(up > best, _UP, _DIAG)
        best = np.maximum(best, up)
        combo = np.full(n2, -np.inf)
        combo_move = np.zeros(n2, dtype=np.int64)
        for k in range(2, MAX_COMBINE + 1):
            if k <= n2:
                cand = np.full(n2, -np.inf)
                cand[k - 1 :] = np.where(t_over[k] == sk[i - 1], prev[: n2 - k + 1] + COMBINE * k, -np.inf)
                better = cand > combo
                combo, combo_move = np.where(better, cand, combo), np.where(better, 3 + k, combo_move)
        for k in range(2, min(i, MAX_COMBINE) + 1):
            cand = np.where(tk == s_over[k][i - k], dp[i - k, :-1] + COMBINE * k, -np.inf)
            better = cand > combo
            combo, combo_move = np.where(better, cand, combo), np.where(better, 8 + k, combo_move)
        row = np.maximum.accumulate(np.concatenate([[GAP * i], np.maximum(best, combo)]) + ramp) - ramp
        left = row[:-1] + GAP
        move = np.where(left > best, _LEFT, move)
        best = np.maximum(best, left)
        move = np.where(combo > best, combo_move, move)
        dp[i], moves[i, 1:] = row, move
    return moves
