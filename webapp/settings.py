"""Server settings: what `xtoken-align serve` was told, and the limits that protect it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    workspace: Path
    student: str
    teachers: tuple[str, ...]
    projections: tuple[str, ...] = ()
    compare: tuple[tuple[str, str], ...] = ()  # (name, W file) pairs the diff view compares against
    access_token: str | None = None  # required on every API call when set (any non-loopback bind)
    max_text_chars: int = 20_000  # pair view input; longer gets 413
    max_body_bytes: int = 1_000_000
    max_page_size: int = 500
    corpus_texts: int = 500  # GSM8K test problems the student vocabulary's impact order is measured on
