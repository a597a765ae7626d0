"""Restrict a BPE tokenizer to the tokens a corpus uses, so that small models fit a CPU.

A model's embedding and output layer grow with the vocabulary: with 128k-200k tokens they dominate a
tiny model's cost, although a study's few thousand texts touch only a few thousand tokens. `restrict`
keeps the tokens the corpus produces, every numeral, every added/special token and every single byte,
closes that set under BPE's merges (a kept token keeps the pieces it is merged from), renumbers the
kept tokens compactly and drops every merge whose result was dropped.

Why that is exact: BPE fires, at each step, the lowest-ranked merge among adjacent pairs. Every merge
that fires on a corpus word builds a piece of one of its final tokens, so it is kept, and the merges
that are gone never fired there: the corpus tokenizes exactly as before (`restrict` checks it). Other
text falls back to shorter kept pieces, down to single bytes: it still round-trips.
`Restriction.summary` says what was kept (`RestrictSummary`, what `xtoken-align restrict` prints).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from xtoken_align.categories import is_numeral
from xtoken_align.errors import XTokenError
from xtoken_align.report import Report
from xtoken_align.tokenizer_folder import role_config, save_tokenizer_folder
from xtoken_align.vocab import Vocab

BATCH = 1024


class RestrictSummary(Report):
    """What a restriction kept and where it was saved: the document `restrict --json` prints."""

    source: str  # the original tokenizer's name
    source_size: int
    size: int  # tokens kept
    reasons: dict[str, int]  # tokens kept for each reason, in the order the reasons were applied
    texts_checked: int  # corpus texts that tokenize exactly as before
    folder: str | None  # where it was saved, once saved


def restrict_text(summary: RestrictSummary) -> str:
    """Two lines: `llama3: 128,256 -> 5,210 tokens (corpus 3,120, ...)` and what was checked."""
    kept = ", ".join(f"{reason} {count:,}" for reason, count in summary.reasons.items())
    wrote = f"; wrote {summary.folder}" if summary.folder else ""
    return (
        f"{summary.source}: {summary.source_size:,} -> {summary.size:,} tokens ({kept})\n"
        f"tokenizes all {summary.texts_checked:,} corpus texts exactly as {summary.source} does{wrote}"
    )


@dataclass
class Restriction:
    """A smaller tokenizer and, for each of its ids, the id the token had in the original."""

    source: Vocab
    tokenizer: Tokenizer
    kept: list[int]  # new id -> original id
    reasons: dict[str, int]  # why tokens were kept: corpus, numeral, special, byte, merge parent
    texts_checked: int

    @property
    def size(self) -> int:
        return len(self.kept)

    def summary(self, folder: str | Path | None = None) -> RestrictSummary:
        """What was kept, and why; `folder`: where it was saved."""
        return RestrictSummary(
            source=self.source.name,
            source_size=self.source.size,
            size=self.size,
            reasons=dict(self.reasons),
            texts_checked=self.texts_checked,
            folder=str(folder) if folder is not None else None,
        )

    def save(self, folder: str | Path) -> Path:
        """Write tokenizer.json, tokenizer_config.json (roles) and restriction.json (the id map) as one
        folder, whole or not at all."""
        record = {
            "source": self.source.source,
            "source_fingerprint": self.source.fingerprint,
            "source_size": self.source.size,
            "reasons": self.reasons,
            "texts_checked": self.texts_checked,
            "kept": self.kept,
        }
        extra = {"restriction.json": json.dumps(record)}
        return save_tokenizer_folder(folder, self.tokenizer, role_config(self.source), extra)


def restrict(vocab: Vocab, texts: Sequence[str], *, keep_numerals: bool = True) -> Restriction:
    """Keep what `texts` need (see module docstring); raise if the tokenizer is not BPE."""
    spec = json.loads(vocab.tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise XTokenError(f"{vocab.name}: only BPE tokenizers can be restricted (this one is {model.get('type')})")
    if not texts:
        raise XTokenError("restricting a tokenizer needs a non-empty corpus")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if any(len(m) != 2 for m in merges):
        raise XTokenError(f"{vocab.name}: a merge rule does not have two parts")

    reasons: dict[str, int] = {}
    kept: set[int] = set()

    def keep(ids: Iterable[int], reason: str) -> None:
        new = set(ids) - kept
        reasons[reason] = reasons.get(reason, 0) + len(new)
        kept.update(new)

    corpus = _encode(vocab.tokenizer, texts)
    keep((i for ids in corpus for i in ids), "corpus")
    keep(vocab.special, "special")
    keep(vocab.tokenizer.get_added_tokens_decoder(), "special")
    keep((i for i, data in enumerate(vocab.token_bytes) if len(data) == 1 or vocab.categories[i] == "byte"), "byte")
    if keep_numerals:
        keep((i for i, c in enumerate(vocab.categories) if is_numeral(c) and i not in vocab.special), "numeral")
    keep(_merge_parents(model["vocab"], merges, kept), "merge parent")

    order = sorted(kept)
    new_id = {old: new for new, old in enumerate(order)}
    model["vocab"] = {piece: new_id[i] for piece, i in model["vocab"].items() if i in new_id}
    kept_pieces = model["vocab"]
    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    model["merges"] = [
        (f"{a} {b}" if string_merges else [a, b])
        for a, b in merges
        if a in kept_pieces and b in kept_pieces and a + b in kept_pieces
    ]
    spec["added_tokens"] = [dict(t, id=new_id[t["id"]]) for t in spec.get("added_tokens", [])]
    spec["post_processor"] = _remap_processor(spec.get("post_processor"), new_id, vocab.name)
    tokenizer = Tokenizer.from_str(json.dumps(spec))

    restricted = _encode(tokenizer, texts)
    for text, before, after in zip(texts, corpus, restricted, strict=True):
        if [new_id[i] for i in before] != after:
            raise XTokenError(f"{vocab.name}: the restricted tokenizer splits {text[:60]!r} differently")
    return Restriction(vocab, tokenizer, order, reasons, len(texts))


def _encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), BATCH):
        batch = tokenizer.encode_batch(list(texts[start : start + BATCH]), add_special_tokens=False)
        out.extend(e.ids for e in batch)
    return out


def _merge_parents(pieces: dict[str, int], merges: list[tuple[str, ...]], kept: set[int]) -> set[int]:
    """Ids of every piece some kept piece is (transitively) merged from."""
    parents: dict[str, list[tuple[str, str]]] = {}
    for a, b in merges:
        parents.setdefault(a + b, []).append((a, b))
    by_id = {i: p for p, i in pieces.items()}
    found: set[int] = set()
    stack = [by_id[i] for i in kept if i in by_id]
    while stack:
        for pair in parents.get(stack.pop(), ()):
            for part in pair:
                index = pieces.get(part)
                if index is not None and index not in kept and index not in found:
                    found.add(index)
                    stack.append(part)
    return found


def _remap_processor(processor: dict | None, new_id: dict[int, int], name: str) -> dict | None:
    """Renumber the ids a post-processor inserts (TemplateProcessing's special tokens)."""
    if processor is None or processor.get("type") == "ByteLevel":
        return processor
    if processor.get("type") == "Sequence":
        return dict(processor, processors=[_remap_processor(p, new_id, name) for p in processor["processors"]])
    if processor.get("type") == "TemplateProcessing":
        tokens = {
            key: dict(value, ids=[new_id[i] for i in value["ids"]])
            for key, value in processor.get("special_tokens", {}).items()
        }
        return dict(processor, special_tokens=tokens)
    raise XTokenError(f"{name}: cannot restrict a tokenizer with a {processor.get('type')} post-processor")
