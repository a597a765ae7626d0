"""What every rule needs: both vocabularies, the teacher's re-tokenisation, and an entry buffer.

Re-tokenising a student token's text with the teacher must give pieces whose canonical bytes add
up to exactly that text. Two things break this and are handled here: SentencePiece teachers add a
prefix space at the start of text (we encode with a copy that does not), and normalisers such as
Qwen's NFC can change the bytes (such tokens fall back to a byte-exact segmentation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from tokenizers import Tokenizer

from xtoken_align.vocab import Vocab


@dataclass
class Entries:
    """Proposed W entries, as three parallel lists (row, teacher id, raw score)."""

    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, row: int, col: int, score: float) -> None:
        self.rows.append(row)
        self.cols.append(col)
        self.scores.append(score)

    def add_pieces(self, row: int, pieces: list[int], beta: float, gamma: float, scale: float = 1.0) -> None:
        """The paper's leading-piece weights: piece i gets scale·β·γ^i (`201` → 0.9, 0.09, 0.009);
        γ = 0 keeps the first piece only."""
        for i, piece in enumerate(pieces):
            if gamma > 0 or i == 0:
                self.add(row, piece, scale * beta * gamma**i)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class RuleContext:
    student: Vocab
    teacher: Vocab

    @cached_property
    def _teacher_encoder(self) -> Tokenizer:
        """The teacher tokenizer, minus any start-of-text prefix space (SentencePiece's `▁`)."""
        tokenizer = self.teacher.tokenizer
        if not self.teacher.strips_leading_space:
            return tokenizer
        spec = json.loads(tokenizer.to_str())
        for key, container in (("normalizer", "normalizers"), ("pre_tokenizer", "pretokenizers")):
            step = spec.get(key) or {}
            steps = step.get(container, [step])
            steps[:] = [s for s in steps if s.get("type") != "Prepend"]
            for s in steps:
                if s.get("type") == "Metaspace":
                    s["prepend_scheme"] = "never"
            if key in spec and spec[key] and step.get("type") != "Sequence" and not steps:
                spec[key] = None
        return Tokenizer.from_str(json.dumps(spec))

    def retokenize(self, rows: list[int]) -> dict[int, list[int]]:
        """Teacher pieces of each student row's text, only where they reproduce its bytes exactly."""
        texts, kept = [], []
        for row in rows:
            try:
                texts.append(self.student.token_bytes[row].decode("utf-8"))
                kept.append(row)
            except UnicodeDecodeError:
                continue  # partial UTF-8 is the bytes rule's job
        encodings = self._teacher_encoder.encode_batch(texts, add_special_tokens=False)
        result = {}
        for row, encoding in zip(kept, encodings, strict=True):
            pieces = encoding.ids
            if pieces and b"".join(self.teacher.token_bytes[p] for p in pieces) == self.student.token_bytes[row]:
                result[row] = pieces
        return result

    @cached_property
    def _teacher_bytes(self) -> tuple[dict[bytes, int], int]:
        by_bytes = {}
        for index in range(self.teacher.size - 1, -1, -1):
            if self.teacher.is_regular(index) and self.teacher.token_bytes[index]:
                by_bytes[self.teacher.token_bytes[index]] = index
        return by_bytes, max(map(len, by_bytes))

    def segment_bytes(self, data: bytes) -> list[int] | None:
        """Greedy longest-prefix segmentation of raw bytes into teacher tokens (None if impossible).

        Hand-written because no library segments arbitrary, possibly invalid, UTF-8 bytes over
        another tokenizer's byte vocabulary; byte-level teachers always succeed (they hold all 256 bytes).
        """
        by_bytes, longest = self._teacher_bytes
        pieces, start = [], 0
        while start < len(data):
            for end in range(min(len(data), start + longest), start, -1):
                piece = by_bytes.get(data[start:end])
                if piece is not None:
                    pieces.append(piece)
                    start = end
                    break
            else:
                return None
        return pieces

    @cached_property
    def own_pieces(self) -> tuple[np.ndarray, np.ndarray]:
        """What each regular student row may hold without off-piece mass, for every row at once:
        (sorted keys row · V_T + teacher id of the allowed pairs, (V_S,) bool rows with no exact
        match). A row's allowed ids are its exact match, else its teacher pieces (or byte segments)."""
        student, teacher = self.student, self.teacher
        regular = [r for r in range(student.size) if student.is_regular(r)]
        allowed: dict[int, list[int]] = {}
        needs_pieces = []
        for row in regular:
            exact = teacher.id_of_bytes(student.token_bytes[row])
            if exact is not None:
                allowed[row] = [exact]
            else:
                needs_pieces.append(row)
        spelled = self.retokenize(needs_pieces)
        for row in needs_pieces:
            allowed[row] = list(spelled.get(row) or self.segment_bytes(student.token_bytes[row]) or [])
        keys = np.asarray([row * teacher.size + col for row, cols in allowed.items() for col in cols], dtype=np.int64)
        non_exact = np.zeros(student.size, dtype=bool)
        non_exact[needs_pieces] = True
        return np.sort(keys), non_exact
