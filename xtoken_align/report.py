"""What every report shares: a typed model that is its own JSON document, and the plain text table.

Each command's report is a `Report` (pydantic) defined next to the code that makes it; `--json`
prints `model_dump_json()`, the text renderers read the same model, and the web API declares it as
its `response_model`, so the JSON, the text and the API cannot disagree. Field aliases carry the
names that are not Python identifiers (`agreement@1`); the JSON schemas are in docs/json.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Report(BaseModel):
    """A report section: strict fields, dumped by alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class TokenRef(Report):
    """One token as a report names it."""

    id: int
    piece: str
    display: str
    category: str


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain aligned text table; numbers right-aligned, with thousands separators.

    >>> print(table(["category", "tokens"], [["digits:1", 10], ["digits:3", 1000]]))
    category  tokens
    --------  ------
    digits:1      10
    digits:3   1,000
    """
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
