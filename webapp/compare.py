"""Ws given with `serve --compare NAME=PATH`, read once at start for the diff view.

Each must be a W of the workspace's student and of one of its teachers; anything else is refused
with one line naming the file. The browser only ever names them, never a path.
"""

from __future__ import annotations

from dataclasses import dataclass

from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection
from xtoken_align.projection import Projection
from xtoken_align.vocab import Vocab


@dataclass(frozen=True)
class CompareW:
    name: str
    teacher: str  # the workspace teacher key it is a W of
    path: str
    projection: Projection


def read_compare(name: str, path: str, student: Vocab, teachers: dict[str, Vocab]) -> CompareW:
    """The W at `path`, matched to the teacher (by key) whose canonical vocabulary it was built for."""
    projection = load_projection(path)
    try:
        projection.check_tokenizers(student, None)
    except XTokenError as exc:
        raise XTokenError(f"--compare {name}={path}: {exc}") from None
    wanted = projection.teacher
    keys = [k for k, v in teachers.items() if (v.fingerprint, v.size) == (wanted.fingerprint, wanted.size)]
    if not keys:
        raise XTokenError(
            f"--compare {name}={path} is a W for teacher {wanted.name}, which this workspace does not have "
            f"(teachers: {', '.join(teachers)})"
        )
    return CompareW(name, keys[0], str(path), projection)
