"""Server-side vocabulary search: substring or regex over piece, display text and canonical hex,
with filters, sort and paging, fast on a 200k vocabulary.

String matching runs in polars (Rust, vectorised; its regex engine has no catastrophic
backtracking, so a user's pattern cannot stall the server); filters and sorting are numpy masks
over per-token arrays. Columns that depend on W (rule, degree, matched, and on the student side
impact: `xtoken_align.impact`) are passed in by the caller, which keeps them current as rows are
edited. Every key sorts ascending, ties in id order; `descending` reverses that whole order (ties
then come in descending id order). Callers choose the default direction: impact is read highest
first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from xtoken_align.errors import XTokenError
from xtoken_align.vocab import Vocab

SORT_KEYS = ("id", "piece", "category", "degree", "length", "impact")


@dataclass(frozen=True)
class Query:
    q: str = ""
    regex: bool = False
    category: str | None = None
    matched: bool | None = None
    rule: str | None = None
    degree: int | None = None
    sort: str = "id"
    descending: bool = False
    offset: int = 0
    limit: int = 50


class VocabIndex:
    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        categories = list(vocab.categories)
        self.frame = pl.DataFrame(
            {
                "piece": vocab.pieces,
                "display": [vocab.display(i) for i in range(vocab.size)],
                "hex": [data.hex() for data in vocab.token_bytes],
            }
        )
        self.categories = np.asarray(categories)
        self.lengths = vocab.byte_lengths
        self.present = self.categories != "unused"
        self._piece_order = np.argsort(np.asarray(vocab.pieces, dtype=object), kind="stable")

    def search(
        self,
        query: Query,
        rules: np.ndarray,
        degrees: np.ndarray,
        matched: np.ndarray,
        impact: np.ndarray | None = None,
    ) -> tuple[list[int], int]:
        """(ids of the requested page, total count of matches). `rules` holds rule names ('' if none);
        `impact` (V,) float is needed only to sort by it."""
        if query.sort == "impact" and impact is None:
            raise XTokenError("sort=impact is for student tokens only (the teacher side has no impact)")
        mask = self.present.copy()
        if query.q:
            mask &= self._text_mask(query.q, query.regex)
        if query.category:
            mask &= self.categories == query.category
        if query.matched is not None:
            mask &= matched == query.matched
        if query.rule:
            mask &= rules == query.rule
        if query.degree is not None:
            mask &= degrees == query.degree
        ids = np.flatnonzero(mask)
        if query.sort == "piece":
            rank = np.empty(self.vocab.size, dtype=np.int64)
            rank[self._piece_order] = np.arange(self.vocab.size)
            ids = ids[np.argsort(rank[ids], kind="stable")]
        elif query.sort in ("category", "degree", "length", "impact"):
            key = {"category": self.categories, "degree": degrees, "length": self.lengths, "impact": impact}[query.sort]
            ids = ids[np.argsort(key[ids], kind="stable")]
        if query.descending:
            ids = ids[::-1]
        return ids[query.offset : query.offset + query.limit].tolist(), int(len(ids))

    def _text_mask(self, q: str, regex: bool) -> np.ndarray:
        columns = [pl.col("piece"), pl.col("display")]
        try:
            matches = [c.str.contains(q, literal=not regex) for c in columns]
            if not regex and all(ch in "0123456789abcdefABCDEF" for ch in q) and len(q) % 2 == 0:
                matches.append(pl.col("hex").str.contains(q.lower(), literal=True))
            found = self.frame.select(pl.any_horizontal(matches).alias("m"))["m"]
        except pl.exceptions.ComputeError as exc:
            reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise XTokenError(f"invalid regular expression: {reason}") from None
        return found.to_numpy()
