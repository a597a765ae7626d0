"""What `xtoken-align cache-teacher` reports: the document `--json` prints. Kept free of torch."""

from __future__ import annotations

from xtoken_align.report import Report


class CachedTeacher(Report):
    name: str
    folder: str  # the cache: manifest.json, tokenizer/, shard-NNNNN.safetensors
    shards: int  # shards of the whole cache
    written: int  # shards this process wrote now
    reused: int  # shards this process found complete (a resumed run) and kept
    positions: int  # teacher positions written now
    tokens_per_s: float  # teacher positions per second while writing


class CacheReport(Report):
    """`xtoken-align cache-teacher`: each cached teacher's folder and what this run wrote (under torchrun,
    the main rank's share)."""

    output: str
    teachers: list[CachedTeacher]


def cache_text(report: CacheReport) -> str:
    lines = [
        f"teacher {t.name}: {t.folder} ({t.shards} shards; {t.written} written, {t.reused} kept; "
        f"{t.positions:,} positions at {t.tokens_per_s:,.0f} tokens/s)"
        for t in report.teachers
    ]
    return "\n".join(lines + [f"use it with teachers: [{{name: ..., cache: {report.output}/NAME, ...}}]"])
