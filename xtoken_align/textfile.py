"""Reading a user's text file (a config, a corpus) with one clear line for every way it can fail.

Left out: parsing (YAML, JSONL and paragraphs are the callers' business) and writing (`atomic`).
"""

from __future__ import annotations

from pathlib import Path

from xtoken_align.errors import XTokenError


def read_text(path: str | Path, what: str, expected: str) -> str:
    """The UTF-8 text of `path`, refusing a missing file, a folder, unreadable or binary content.

    `what` names the file in messages ("config", "corpus"); `expected` says what to give instead
    ("a YAML or JSON file").
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise XTokenError(f"no such {what} file: {path}") from None
    except IsADirectoryError:
        raise XTokenError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise XTokenError(f"cannot read {what} {path}: {exc.strerror}") from None
    if b"\x00" in raw[:65536]:
        raise XTokenError(f"{what} {path} looks binary (NUL bytes); give {expected}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XTokenError(
            f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); give {expected}"
        ) from None
