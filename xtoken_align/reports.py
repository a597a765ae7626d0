"""Reports as data, then as text: JSON documents for scripts, aligned tables for people.

Each `*_report` function returns the JSON-ready dict that `--json` prints; each `*_text` renders
that same dict, so the text and the JSON can never disagree.
"""

from __future__ import annotations

from xtoken_align.vocab import Vocab


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain aligned text table; numbers right-aligned, with thousands separators."""
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _sample_ids(vocab: Vocab, count: int) -> list[int]:
    """A few tokens that show what canonicalisation does: space markers, numerals, bytes, specials."""
    wanted = ["letters:latin", "digits:3", "digits:1", "whitespace", "indent", "byte", "partial-utf8", "letters:cjk"]
    picked: list[int] = []
    for category in wanted:
        matches = [i for i in range(vocab.size) if vocab.categories[i] == category and vocab.is_regular(i)]
        if matches:
            picked.extend(matches[len(matches) // 3 : len(matches) // 3 + 1])  # a typical one, not the first
            spaced = [i for i in matches if vocab.token_bytes[i].startswith(b" ")]
            picked.extend(spaced[:1])
    picked.extend(sorted(vocab.special)[:2])
    return list(dict.fromkeys(picked))[:count]


def vocab_report(vocab: Vocab, samples: int = 12) -> dict:
    return {
        "name": vocab.name,
        "source": vocab.source,
        "size": vocab.size,
        "family": vocab.family,
        "strips_leading_space": vocab.strips_leading_space,
        "fingerprint": vocab.fingerprint,
        "special": [
            {"id": i, "piece": vocab.pieces[i], "roles": vocab.special[i], "evidence": vocab.role_evidence.get(i, [])}
            for i in sorted(vocab.special)
        ],
        "categories": vocab.category_counts(),
        "samples": [
            {
                "id": i,
                "raw": vocab.pieces[i],
                "canonical_hex": vocab.token_bytes[i].hex(),
                "display": vocab.display(i),
                "category": vocab.categories[i],
            }
            for i in _sample_ids(vocab, samples)
        ],
    }


def vocab_text(report: dict) -> str:
    named = [s for s in report["special"] if s["roles"] != ["unused"]]
    unused = len(report["special"]) - len(named)
    lines = [
        f"{report['name']}  ({report['source']})",
        f"size {report['size']:,}, {report['family']}, fingerprint {report['fingerprint'][:16]}",
        "",
        f"special tokens ({len(report['special'])}, {unused} unused placeholders not shown):",
        table(
            ["id", "piece", "roles", "evidence"],
            [[s["id"], s["piece"], ", ".join(s["roles"]), " | ".join(s["evidence"])] for s in named],
        ),
        "",
        table(["category", "tokens"], [[k, v] for k, v in report["categories"].items()]),
        "",
        "raw vs canonical:",
        table(
            ["id", "raw", "canonical", "bytes", "category"],
            [
                [s["id"], repr(s["raw"]), repr(s["display"]), s["canonical_hex"], s["category"]]
                for s in report["samples"]
            ],
        ),
    ]
    return "\n".join(lines)


def overlap_text(report: dict) -> str:
    student, teacher = report["student"], report["teacher"]
    gain = report["canonical_gain"]
    rows = [[name, c["total"], c["matched"], c["unmatched"]] for name, c in report["categories"].items()]
    lines = [
        f"student {student['name']} ({student['size']:,} tokens) vs teacher {teacher['name']} "
        f"({teacher['size']:,} tokens)",
        f"raw string overlap:      {report['raw_overlap']:,}",
        f"canonical bytes overlap: {report['canonical_overlap']:,}  ({gain:+,} vs raw)",
        "",
        "student tokens with an exact canonical match in the teacher, per category:",
        table(["category", "total", "matched", "unmatched"], rows),
    ]
    return "\n".join(lines)


def score_text(report: dict) -> str:
    rows = report["rows"]
    leak = report["off_piece_mass"]
    lines = [
        f"W {report['shape'][0]:,} x {report['shape'][1]:,}: student {report['student']['name']}, "
        f"teacher {report['teacher']['name']}, {report['nnz']:,} entries",
        f"regular rows filled: {rows['regular_filled']:,} / {rows['regular']:,}; "
        f"summing to 1: {rows['regular_summing_to_1']:,}",
        f"off-piece mass: {leak['rows_with_off_piece_mass']:,} rows "
        f"(mean {leak['mean_of_non_exact_rows']:.1%} of every non-exact row)",
    ]
    if leak["top_receivers"]:
        receivers = ", ".join(f"{r['piece']!r} ({r['rows']:,} rows)" for r in leak["top_receivers"])
        lines.append(f"  receiving teacher tokens: {receivers}")
    if rows["special_unmatched"]:
        lines.append("special tokens with empty rows: " + ", ".join(s["piece"] for s in rows["special_unmatched"]))
    lines += [
        "",
        table(
            ["category", "total", "covered", "exact", "H-KL common"],
            [[k, v["total"], v["covered"], v["exact"], v["common"]] for k, v in report["coverage"].items()],
        ),
    ]
    corpus = report.get("corpus")
    if corpus:
        lines += [
            "",
            f"corpus {corpus['name']}: {corpus['texts']:,} texts, {corpus['student_tokens']:,} student tokens, "
            f"{corpus['aligned_share']:.1%} share a start with a teacher token, {corpus['chunked_share']:.1%} are "
            "in a chunk that closes on both sides",
            f"agreement@1 {corpus['agreement@1']:.4f}, mean W mass on the teacher's token {corpus['mass']:.4f}",
            table(
                ["category", "aligned tokens", "aligned share", "agreement@1", "mass"],
                [
                    [k, v["tokens"], f"{v['aligned_share']:.1%}", f"{v['agreement@1']:.4f}", f"{v['mass']:.4f}"]
                    for k, v in corpus["categories"].items()
                ],
            ),
        ]
        failed = corpus["not_round_trip"]
        if failed["texts"]:
            lines.append(
                f"not reproduced byte for byte: {failed['student']:,} texts by the student, {failed['teacher']:,} by "
                "the teacher (their differing stretch is in no chunk): "
                + "; ".join(f"#{t['text']} ({t['side']}) {t['starts']!r}" for t in failed["texts"][:5])
            )
    return "\n".join(lines)


def diagnose_text(report: dict) -> str:
    """The `diagnose` report for people: recommendations first, then each teacher's tables."""
    losses = {"p_kl": "P-KL", "h_kl": "H-KL", "kd": "KD"}
    student, teachers = report["student"], report["teachers"]
    width = max((len(t["teacher"]["name"]) for t in teachers), default=0)
    lines = [
        f"student {student['name']} ({student['size']:,} tokens); critical: {', '.join(report['critical'])}",
        "",
        *(f"{t['teacher']['name']:<{width}}  {losses[t['recommendation']]:<4}  {t['reason']}" for t in teachers),
    ]
    for t in teachers:
        lines += [
            "",
            f"== {t['teacher']['name']} ({t['teacher']['size']:,} tokens): {losses[t['recommendation']]} ==",
            table(
                ["category", "total", "strict", "exact", "H-KL common", "covered", "severity"],
                [
                    [k, c["total"], c["strict"], c["exact"], c["common"], c["covered"], c["severity"]]
                    for k, c in t["categories"].items()
                ],
            ),
        ]
        corpus = t.get("corpus")
        if corpus:
            lost = {k: v for k, v in corpus["categories"].items() if v["uncommon"]}
            lines += [
                f"corpus {corpus['name']}: {corpus['texts']:,} texts, {corpus['student_tokens']:,} student tokens",
                f"  outside GOLD's strict set: {corpus['suppressed_mass']:.2%} of student next tokens "
                f"(critical categories: {corpus['critical_suppressed_mass']:.2%}); "
                f"not 1:1: {corpus['not_one_to_one']:.2%} of positions",
                table(
                    ["category", "tokens", "outside strict", "share of all tokens"],
                    [[k, v["tokens"], v["uncommon"], f"{v['suppressed_mass']:.2%}"] for k, v in lost.items()],
                ),
            ]
        sample = ", ".join(f"{s['display']!r} ({s['category']})" for s in t["suppressed_sample"])
        lines.append(f"pushed down in the sample: {sample or 'none'}")
        unmatched = t["unmatched_critical"]
        if unmatched:
            shown = ", ".join(repr(u["display"]) for u in unmatched[:8])
            lines.append(f"unmatched critical tokens: {len(unmatched):,} ({shown}, ...; --unmatched-csv lists all)")
    return "\n".join(lines)
