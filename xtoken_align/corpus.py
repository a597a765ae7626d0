"""Texts to measure on: the user's corpus files, or the GSM8K test problems shipped with the package.

`read_corpus` reads JSONL (`text`, or GSM8K's `question` + `answer`) or plain text (one text per
paragraph) and refuses empty, binary and malformed files with one line naming the problem.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from xtoken_align.errors import XTokenError
from xtoken_align.textfile import read_text


def default_corpus() -> Path:
    """GSM8K test problems, shipped with the package (MIT licence beside the file)."""
    return Path(str(resources.files("xtoken_align") / "data" / "gsm8k" / "test.jsonl"))


def read_corpus(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of a JSONL file (`text`, or GSM8K's `question` + `answer`) or of a plain-text file
    (one text per paragraph). Refuses empty and binary files."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise XTokenError(f"corpus limit {limit}: give a positive number of texts")
    content = read_text(path, "corpus", "a text or JSONL file")
    texts: list[str] = []
    if path.suffix in (".jsonl", ".json"):
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise XTokenError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if isinstance(row, dict) and isinstance(row.get("text"), str):
                texts.append(row["text"])
            elif isinstance(row, dict) and isinstance(row.get("question"), str):
                texts.append(f"{row['question']}\n{row.get('answer', '')}")
            else:
                raise XTokenError(f"{path}:{number}: expected an object with 'text' or 'question'")
    else:
        texts = [p for p in content.split("\n\n") if p.strip()]
    if not texts:
        raise XTokenError(f"corpus {path} holds no text")
    return texts[:limit] if limit else texts
