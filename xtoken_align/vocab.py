"""Canonical vocabulary: for every token id, the exact bytes it adds to decoded text.

Raw pieces are spelled differently by each tokenizer family (`Ġthe` in byte-level BPE, `▁the` in
SentencePiece, `<0x41>` for a fallback byte). Comparing them as strings, as GOLD does, misses most
equivalences. `build_vocab` undoes each family's spelling so that `b" the"` means the same thing
everywhere, flags special tokens with their roles, and gives each token a category and a display
string. Concatenating canonical bytes reproduces the tokenizer's decoded text, up to its start-of-
text rule (SentencePiece drops the first prefix space), which the tests check on every id.

Left out: tokenizers whose decoder is neither byte-level nor SentencePiece-style (WordPiece `##`
continuation, for example) are refused with a message rather than guessed at.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from tokenizers import Tokenizer

from xtoken_align.categories import categorize, category_rank
from xtoken_align.errors import XTokenError
from xtoken_align.roles import special_roles
from xtoken_align.sources import LoadedTokenizer, load_tokenizer

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: printable stand-in character -> the byte it encodes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


_BYTE_DECODER = _bytes_to_unicode()


@dataclass(frozen=True)
class ByteTable:
    """Per-vocabulary lookups for laying tokens out on bytes, built once."""

    width: np.ndarray  # int64 (V,) canonical byte length, 0 for skipped special tokens
    special: np.ndarray  # bool (V,) `Vocab.skipped`
    flat: np.ndarray  # uint8, every id's canonical bytes back to back (special tokens: none)
    offset: np.ndarray  # int64 (V,) where each id's bytes start in `flat`


@dataclass(frozen=True)
class CategoryCodes:
    """Categories as integers: `names[codes[i]]` is token i's category; names in report order."""

    names: list[str]
    codes: np.ndarray  # int64 (V,)

    def mask(self, categories) -> np.ndarray:
        """(V,) bool: the ids whose category is one of `categories`."""
        wanted = [k for k, name in enumerate(self.names) if name in set(categories)]
        return np.isin(self.codes, wanted)


@dataclass
class Vocab:
    """Canonical view of one tokenizer. Index every list by token id."""

    name: str
    source: str
    tokenizer: Tokenizer
    pieces: list[str]  # raw piece as the tokenizer stores it ("" for an unused id)
    token_bytes: list[bytes]  # canonical bytes: what the token adds to decoded text
    categories: list[str]
    special: dict[int, list[str]]  # special token id -> roles ("bos", "eos", "turn_end", "unused", ...)
    strips_leading_space: bool  # SentencePiece-style: decoding drops the text's first space
    family: str  # "byte-level" or "sentencepiece"
    role_evidence: dict[int, tuple[str, ...]] = field(default_factory=dict)  # per role, where it came from
    # Added tokens flagged special: `decode(skip_special_tokens=True)` drops them, so they take no
    # bytes of the text. Role-bearing tokens the tokenizer does not flag (Gemma's `<unusedN>`) print.
    skipped: frozenset[int] = frozenset()
    _by_bytes: dict[bytes, int] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.pieces)

    def is_regular(self, index: int) -> bool:
        """A token that can appear in text: not special and not an unused id."""
        return index not in self.special and self.categories[index] != "unused"

    def display(self, index: int) -> str:
        """Printable text of a token: invalid UTF-8 as `\\xNN`, never U+FFFD.

        >>> display_bytes(b"\\xe2\\x80 ok")
        '\\\\xe2\\\\x80 ok'
        """
        return display_bytes(self.token_bytes[index])

    def id_of_bytes(self, data: bytes) -> int | None:
        """The regular token whose canonical bytes are exactly `data` (lowest id on ties)."""
        if not self._by_bytes:
            # Byte-fallback pieces first, so that a real token with the same bytes (`:` over
            # `<0x3A>`) wins: it is the one the tokenizer actually produces for that text.
            regular = [i for i in range(self.size - 1, -1, -1) if self.is_regular(i)]
            for index in sorted(regular, key=lambda i: self.categories[i] != "byte"):
                self._by_bytes[self.token_bytes[index]] = index
        return self._by_bytes.get(data)

    def decode_bytes(self, ids: list[int]) -> bytes:
        """Concatenated canonical bytes, with the tokenizer's start-of-text rule applied."""
        data = b"".join(self.token_bytes[i] for i in ids)
        if self.strips_leading_space and data.startswith(b" "):
            data = data[1:]
        return data

    def roles(self) -> dict[str, int]:
        """role -> lowest special id carrying it."""
        found: dict[str, int] = {}
        for index in sorted(self.special):
            for role in self.special[index]:
                found.setdefault(role, index)
        return found

    def category_counts(self) -> dict[str, int]:
        counts = Counter(self.categories)
        return dict(sorted(counts.items(), key=lambda kv: (category_rank(kv[0]), kv[0])))

    @cached_property
    def category_codes(self) -> CategoryCodes:
        """Every id's category as an index into the vocabulary's category names, in report order."""
        names = list(self.category_counts())
        lookup = {name: k for k, name in enumerate(names)}
        return CategoryCodes(names, np.fromiter(map(lookup.__getitem__, self.categories), np.int64, self.size))

    @cached_property
    def byte_lengths(self) -> np.ndarray:
        """(V,) int64: length of every id's canonical bytes (special tokens included)."""
        return np.fromiter(map(len, self.token_bytes), dtype=np.int64, count=self.size)

    @cached_property
    def byte_table(self) -> ByteTable:
        """Every id's canonical bytes flat, with widths (zero for special tokens), for `spans`."""
        special = np.zeros(self.size, dtype=bool)
        special[list(self.skipped)] = True
        data = [b"" if special[i] else b for i, b in enumerate(self.token_bytes)]
        width = np.where(special, 0, self.byte_lengths)
        flat = np.frombuffer(b"".join(data), dtype=np.uint8)
        return ByteTable(width, special, flat, np.cumsum(width) - width)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the canonical vocabulary: bytes and special flags of every id, in order."""
        digest = hashlib.sha256()
        for index, data in enumerate(self.token_bytes):
            digest.update(b"S" if index in self.special else b"R")
            digest.update(len(data).to_bytes(4, "little"))
            digest.update(data)
        return digest.hexdigest()


def display_bytes(data: bytes) -> str:
    """Text of canonical bytes for people: bad UTF-8 as `\\xNN`, a literal U+FFFD as `\\ufffd`."""
    return data.decode("utf-8", errors="backslashreplace").replace("\ufffd", "\\ufffd")


def load_vocab(source: str) -> Vocab:
    """Load a tokenizer from any source (see `xtoken_align.sources`) and canonicalise it."""
    return build_vocab(load_tokenizer(source))


def build_vocab(loaded: LoadedTokenizer) -> Vocab:
    tokenizer = loaded.tokenizer
    family, strips, byte_fallback = _decoder_family(tokenizer)
    regular = tokenizer.get_vocab(with_added_tokens=False)
    added = tokenizer.get_added_tokens_decoder()
    size = max([*regular.values(), *added.keys()]) + 1
    pieces = [""] * size
    for piece, index in regular.items():
        pieces[index] = piece
    token_bytes = [b""] * size
    for index, piece in enumerate(pieces):
        if piece:
            token_bytes[index] = _piece_bytes(piece, family, byte_fallback)
    categories = [categorize(data) if data else "unused" for data in token_bytes]
    for index, piece in enumerate(pieces):
        if family == "sentencepiece" and byte_fallback and _BYTE_PIECE.fullmatch(piece):
            categories[index] = "byte"  # a fallback byte piece even when the byte is plain ASCII

    for index, token in added.items():
        # Decoding runs an added token's content through the same decoder as any piece (Gemma's
        # added `▁▁` decodes to two spaces), whatever its `normalized`/`lstrip`/`rstrip` flags:
        # those change how text is matched on the way in, not what the token prints.
        pieces[index] = token.content
        token_bytes[index] = _piece_bytes(token.content, family, byte_fallback)
        categories[index] = categorize(token_bytes[index])
    found = special_roles(tokenizer, loaded.config_roles, loaded.chat_template)
    special = {index: list(found[index].roles) for index in sorted(found)}
    for index, roles in special.items():
        categories[index] = "special:unused" if roles == ["unused"] else "special"
    return Vocab(
        loaded.name,
        loaded.source,
        tokenizer,
        pieces,
        token_bytes,
        categories,
        special,
        strips,
        family,
        role_evidence={index: found[index].evidence for index in special},
        skipped=frozenset(index for index, token in added.items() if token.special),
    )


def _decoder_family(tokenizer: Tokenizer) -> tuple[str, bool, bool]:
    """(family, strips the first leading space, decodes <0xNN> pieces) from the decoder's spec."""
    if tokenizer.decoder is None:
        raise XTokenError("tokenizer has no decoder; cannot tell what bytes its tokens stand for")
    spec = json.loads(tokenizer.decoder.__getstate__())
    steps = spec["decoders"] if spec["type"] == "Sequence" else [spec]
    kinds = {step["type"] for step in steps}
    if "ByteLevel" in kinds:
        return "byte-level", False, False
    metaspace = next((s for s in steps if s["type"] == "Metaspace"), None)
    replaces_marker = any(s["type"] == "Replace" and s["pattern"].get("String") == "\u2581" for s in steps)
    if metaspace or replaces_marker:
        strips = any(s["type"] == "Strip" and s.get("start", 0) >= 1 for s in steps)
        if metaspace:
            strips = strips or metaspace.get("prepend_scheme", "always") != "never"
        return "sentencepiece", strips, "ByteFallback" in kinds
    raise XTokenError(f"unsupported decoder {sorted(kinds)}: only byte-level BPE and SentencePiece-style")


def _piece_bytes(piece: str, family: str, byte_fallback: bool) -> bytes:
    """Canonical bytes of a regular piece.

    >>> _piece_bytes("Ġ12", "byte-level", False), _piece_bytes("▁the", "sentencepiece", True)
    (b' 12', b' the')
    >>> _piece_bytes("<0xE2>", "sentencepiece", True)
    b'\\xe2'
    """
    if family == "byte-level":
        try:
            return bytes(_BYTE_DECODER[ch] for ch in piece)
        except KeyError:  # not in the byte alphabet: the piece is literal text
            return piece.encode("utf-8")
    if byte_fallback:
        match = _BYTE_PIECE.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
    return piece.replace("\u2581", " ").encode("utf-8")
