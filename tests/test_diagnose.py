"""diagnose: the paper's audit (method.md §5) on real tokenizers, corpus mass checked against an
independent count, the reports (text, CSV, HTML), and clean failures on bad input."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import FAMILIES, gsm8k, vocab

from xtoken_align.diagnose import (
    DEFAULT_CRITICAL,
    DiagnoseReport,
    diagnose,
    diagnose_figures,
    diagnose_html,
    diagnose_text,
    unmatched_critical_csv,
)
from xtoken_align.diagnose.corpus import one_to_one
from xtoken_align.errors import XTokenError
from xtoken_align.projection import build_projection
from xtoken_align.spans import encode_spans


@cache
def built(student: str, teacher: str):
    return build_projection(vocab(student), vocab(teacher), progress=False)


@cache
def report(*teachers: str, corpus: bool = False) -> DiagnoseReport:
    pairs = [(vocab(t), built("llama3", t)) for t in teachers]
    return diagnose(vocab("llama3"), pairs, gsm8k("test") if corpus else None, corpus_name="GSM8K test")


def document(*args, **kwargs) -> dict:
    """The JSON document `diagnose --json` prints for these arguments."""
    return json.loads(diagnose(*args, **kwargs).model_dump_json())


def by_name(result: DiagnoseReport) -> dict[str, dict]:
    """Each teacher's section of the JSON document, by teacher name."""
    return {t["teacher"]["name"]: t for t in json.loads(result.model_dump_json())["teachers"]}


def test_numerals_under_qwen3_and_o200k() -> None:
    qwen3, o200k = by_name(report("qwen3", "o200k")).values()
    assert qwen3["categories"]["digits:1"] == dict(total=10, strict=10, exact=10, common=10, covered=10, severity="ok")
    assert qwen3["categories"]["digits:2"] == dict(
        total=100, strict=0, exact=0, common=0, covered=100, severity="critical"
    )
    assert qwen3["categories"]["digits:3"] == dict(
        total=1000, strict=0, exact=0, common=0, covered=1000, severity="critical"
    )
    assert qwen3["recommendation"] == "p_kl"
    assert qwen3["reason"].startswith("1,100 of 1,110 numeral tokens are outside the H-KL common set for qwen3")
    assert "digits:2 0/100, digits:3 0/1,000 common" in qwen3["reason"]
    assert {u["category"] for u in qwen3["unmatched_critical"]} == {"digits:2", "digits:3"}
    assert len(qwen3["unmatched_critical"]) == 1_100
    assert [w["display"] for w in next(u for u in qwen3["unmatched_critical"] if u["piece"] == "201")["w_row"]] == [
        "2",
        "0",
        "1",
    ]

    assert o200k["categories"]["digits:2"]["strict"] == 100 and o200k["categories"]["digits:3"]["strict"] == 1000
    assert all(o200k["categories"][c]["severity"] == "ok" for c in ("digits:1", "digits:2", "digits:3"))
    assert o200k["recommendation"] == "h_kl" and o200k["unmatched_critical"] == []
    # Non-critical categories never reach "critical", however few of their tokens match.
    assert o200k["categories"]["letters:thai"]["severity"] == "warn"
    assert list(qwen3["categories"])[:3] == ["digits:1", "digits:2", "digits:3"]


def test_suppressed_sample_lists_the_numerals() -> None:
    qwen3, o200k = by_name(report("qwen3", "o200k")).values()
    assert [(s["display"], s["category"]) for s in qwen3["suppressed_sample"]] == [
        ("48", "digits:2"),
        ("124", "digits:3"),
        ("172", "digits:3"),
    ]
    assert o200k["suppressed_sample"] == []


def test_same_tokenizer_is_plain_kd_with_full_coverage() -> None:
    result = document(vocab("llama3"), [(vocab("llama3-tiktoken"), None)], None)
    (entry,) = result["teachers"]
    assert entry["recommendation"] == "kd" and "same canonical vocabulary" in entry["reason"]
    for name, c in entry["categories"].items():
        assert c["total"] == c["strict"] == c["exact"] == c["common"] == c["covered"], name
        assert c["severity"] == "ok"
    assert entry["unmatched_critical"] == [] and entry["suppressed_sample"] == [] and entry["corpus"] is None


def test_critical_categories_are_configurable() -> None:
    pairs = [(vocab("qwen3"), built("llama3", "qwen3")), (vocab("o200k"), built("llama3", "o200k"))]
    qwen3, o200k = document(vocab("llama3"), pairs, None, critical=["indent"])["teachers"]
    assert qwen3["recommendation"] == "h_kl"  # all 220 indentation runs match; numerals no longer count
    assert o200k["recommendation"] == "p_kl" and "197/220" in o200k["reason"]
    assert o200k["categories"]["indent"]["severity"] == "warn"
    assert qwen3["categories"]["digits:3"]["severity"] == "warn"  # not critical any more
    with pytest.raises(XTokenError, match=r"unknown category 'digits:9'; known: digits:1, digits:2"):
        diagnose(vocab("llama3"), pairs, None, critical=["digits:9"])


def test_corpus_share_of_multidigit_numerals_counted_independently() -> None:
    texts = gsm8k("test")
    qwen3 = by_name(report("qwen3", corpus=True))["qwen3"]["corpus"]
    # Independently: the raw tokenizers, no Vocab, no categories.
    student, teacher = vocab("llama3").tokenizer, vocab("qwen3").tokenizer
    teacher_pieces = set(teacher.get_vocab())
    id_to_piece = {i: p for p, i in student.get_vocab().items()}
    targets = [i for e in student.encode_batch(texts, add_special_tokens=False) for i in e.ids]
    numerals = [p for p in map(id_to_piece.get, targets) if re.fullmatch(r"Ġ?[0-9]{2,}", p) and p not in teacher_pieces]
    multi = sum(qwen3["categories"].get(c, {}).get("uncommon", 0) for c in ("digits:2", "digits:3", "digits:4+"))
    assert qwen3["student_tokens"] == len(targets) and multi == len(numerals) > 0
    assert qwen3["categories"]["digits:2"]["suppressed_mass"] + qwen3["categories"]["digits:3"][
        "suppressed_mass"
    ] == pytest.approx(len(numerals) / len(targets), abs=2e-6)
    assert qwen3["critical_suppressed_mass"] == pytest.approx(len(numerals) / len(targets), abs=1e-6)
    assert 0.05 < qwen3["critical_suppressed_mass"] < 0.2  # GSM8K is full of multi-digit numbers


def walk_one_to_one(s_ends: list[int], t_ends: list[int]) -> list[bool]:
    """Reference: walk both tokenisations by byte offset, closing a chunk where they meet."""
    flags, i, j, s_pos, t_pos, chunk_s, chunk_t = [], 0, 0, 0, 0, [], []
    while i < len(s_ends) or j < len(t_ends):
        if j >= len(t_ends) or (i < len(s_ends) and s_pos <= t_pos):
            s_pos = s_ends[i]
            chunk_s.append(i)
            i += 1
        else:
            t_pos = t_ends[j]
            chunk_t.append(j)
            j += 1
        if s_pos == t_pos and chunk_s and chunk_t:
            flags += [len(chunk_s) == 1 and len(chunk_t) == 1] * len(chunk_s)
            chunk_s, chunk_t = [], []
    return flags + [len(chunk_s) == 1 and len(chunk_t) == 1] * len(chunk_s)


@pytest.mark.parametrize(("student", "teacher"), [("llama3", "qwen3"), ("llama3", "o200k"), ("llama2", "llama3")])
def test_one_to_one_matches_a_byte_walk(student: str, teacher: str) -> None:
    texts = gsm8k("test")[:200]
    s_spans, t_spans = encode_spans(vocab(student), texts), encode_spans(vocab(teacher), texts)
    flags = one_to_one(s_spans, t_spans)
    expected = []
    for k in range(len(texts)):
        s_ends, t_ends = s_spans.end[s_spans.tokens(k)], t_spans.end[t_spans.tokens(k)]
        expected += walk_one_to_one(s_ends.tolist(), t_ends.tolist())
    assert flags.tolist() == expected
    assert 0 < np.mean(flags) < 1


def test_ten_thousand_lines_scale_linearly(tmp_path: Path) -> None:
    from xtoken_align.corpus import read_corpus

    texts = gsm8k("test")
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": texts[k % len(texts)]}) + "\n" for k in range(10_000)))
    big = read_corpus(path)
    assert len(big) == 10_000
    pair = [(vocab("qwen3"), built("llama3", "qwen3"))]
    whole = document(vocab("llama3"), pair, big)["teachers"][0]["corpus"]
    once = by_name(report("qwen3", corpus=True))["qwen3"]["corpus"]
    rest = document(vocab("llama3"), pair, texts[: 10_000 % len(texts)])["teachers"][0]["corpus"]
    cycles = 10_000 // len(texts)
    for key in ("student_tokens", "teacher_tokens", "suppressed_tokens"):
        assert whole[key] == cycles * once[key] + rest[key]


def test_text_output_shows_the_same_numbers() -> None:
    text = diagnose_text(report("qwen3", "o200k", corpus=True))
    qwen3, o200k = text.split("== o200k")
    assert re.search(r"^digits:2\s+100\s+0\s+0\s+0\s+100\s+critical$", qwen3, re.M)
    assert re.search(r"^digits:3\s+1,000\s+0\s+0\s+0\s+1,000\s+critical$", qwen3, re.M)
    assert re.search(r"^digits:3\s+1,000\s+1,000\s+1,000\s+1,000\s+1,000\s+ok$", o200k, re.M)
    lines = text.splitlines()
    assert lines[2].startswith("qwen3  P-KL  1,100 of 1,110 numeral tokens") and lines[3].startswith("o200k  H-KL")
    assert "'48' (digits:2), '124' (digits:3), '172' (digits:3)" in qwen3


def test_unmatched_critical_csv() -> None:
    rows = list(csv.DictReader(io.StringIO(unmatched_critical_csv(report("qwen3", "o200k")))))
    assert len(rows) == 1_100 and {r["teacher"] for r in rows} == {"qwen3"}
    row = next(r for r in rows if r["piece"] == "201")
    assert row["category"] == "digits:3" and row["w_row"] == "'2':0.9009 '0':0.0901 '1':0.0090"


def test_figures_put_teachers_side_by_side() -> None:
    coverage, mass = diagnose_figures(report("qwen3", "o200k", corpus=True))
    assert [trace["name"] for trace in coverage["data"]] == ["qwen3", "o200k"]
    qwen3 = dict(zip(coverage["data"][0]["x"], coverage["data"][0]["y"], strict=True))
    assert qwen3["digits:2"] == 0 and qwen3["digits:1"] == 1
    assert "digits:2" in mass["data"][0]["x"] and mass["layout"]["barmode"] == "group"
    assert "(corpus GSM8K test)" in mass["layout"]["title"]["text"]
    json.dumps([coverage, mass])  # plain JSON for the web layer


def test_figures_label_critical_bars_even_at_zero() -> None:
    """A 0% critical bar has no height: its red label still shows it (issue 14's missing bars)."""
    (coverage,) = diagnose_figures(report("qwen3", "o200k"))
    qwen3, o200k = coverage["data"]
    labels = dict(zip(qwen3["x"], zip(qwen3["text"], qwen3["textfont"]["color"], strict=True), strict=True))
    assert labels["digits:2"] == labels["digits:3"] == ("0%", "#b3261e")
    assert labels["digits:1"] == ("100%", "#1d2430") and labels["letters:latin"][0] == ""
    assert dict(zip(o200k["x"], o200k["text"], strict=True))["digits:3"] == "100%"


def test_figure_titles_name_no_empty_corpus() -> None:
    pairs = [(vocab("qwen3"), built("llama3", "qwen3"))]
    _, mass = diagnose_figures(diagnose(vocab("llama3"), pairs, ["She sold 201 clips."]))
    assert mass["layout"]["title"]["text"].endswith("by category")  # no "(corpus )"


def test_html_is_self_contained_and_escaped() -> None:
    from plotly.offline import get_plotlyjs

    crafted = report("qwen3", "o200k", corpus=True).model_copy(deep=True)
    attack = "<script>alert(1)</script>"
    entry = crafted.teachers[0]
    entry.unmatched_critical[0].display = attack
    entry.suppressed_sample[0].display = attack
    entry.teacher = dataclasses.replace(entry.teacher, name=attack)
    entry.reason = attack
    crafted.sample_text = attack
    page = diagnose_html(crafted)
    assert get_plotlyjs()[:2000] in page and "Plotly.newPlot(" in page
    assert attack not in page and "&lt;script&gt;" in page
    assert not re.search(r"<script[^>]*\bsrc=", page) and not re.search(r"<link[^>]*href=\"?http", page)
    assert page.count("<script") == page.count("</script>") == 2  # plotly.js and the figures, nothing else


def test_diagnose_refuses_an_empty_corpus() -> None:
    with pytest.raises(XTokenError, match="holds no text"):
        diagnose(vocab("llama3"), [(vocab("qwen3"), built("llama3", "qwen3"))], ["", "  \n"])
    assert DEFAULT_CRITICAL[:3] == ("digits:1", "digits:2", "digits:3")


@pytest.mark.slow
def test_cli_json_text_html_and_csv(run_cli, tmp_path: Path) -> None:
    args = ["diagnose", "--student", "demo:llama3", "--teacher", "demo:qwen3", "--teacher", "demo:o200k"]
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    qwen3, o200k = json.loads(result.stdout)["teachers"]
    assert (qwen3["recommendation"], o200k["recommendation"]) == ("p_kl", "h_kl")
    assert qwen3["categories"]["digits:2"]["strict"] == 0 and o200k["categories"]["digits:3"]["strict"] == 1000
    assert qwen3["corpus"]["name"] == "GSM8K test" and qwen3["corpus"]["texts"] == 1_319

    page, table = tmp_path / "report.html", tmp_path / "unmatched.csv"
    result = run_cli(*args, "--html", str(page), "--unmatched-csv", str(table))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^digits:3\s+1,000\s+0\s+0\s+0\s+1,000\s+critical$", result.stdout, re.M)
    assert page.read_text().startswith("<!doctype html>") and len(table.read_text().splitlines()) == 1_101


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corpus", "{empty}"], "holds no text"),
        (["--corpus", "{binary}"], "looks binary"),
        (["--critical", "digits:2,numbers"], "unknown category 'numbers'; known: digits:1"),
        (["--critical", ","], "--critical needs at least one category"),
        (["--projection", "a.safetensors", "--projection", "b.safetensors"], "2 --projection for 1 --teacher"),
        (["--projection", "{other_w}"], "teacher tokenizer qwen3 has 151,669 tokens but W was built for mistral"),
        (["--html", "{tmp}/report.htm"], "should end in .html"),
    ],
)
def test_bad_input_exits_2_without_traceback(run_cli, tmp_path: Path, extra: list[str], message: str) -> None:
    from xtoken_align.formats import save_projection

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\x89PNG")
    names = {"empty": tmp_path / "empty.txt", "binary": tmp_path / "binary.txt", "tmp": tmp_path}
    if "{other_w}" in extra:
        names["other_w"] = save_projection(built("llama2", "mistral-v1"), tmp_path / "W.safetensors")
    extra = [arg.format(**names) for arg in extra]
    student = "demo:llama2" if "other_w" in names else "demo:llama3"
    result = run_cli("diagnose", "--student", student, "--teacher", "demo:qwen3", *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("report*"))


def distinct_families() -> list[str]:
    """One demo per canonical vocabulary (llama3-tiktoken is llama3, byte for byte)."""
    seen: dict[str, str] = {}
    for name in FAMILIES:
        seen.setdefault(vocab(name).fingerprint, name)
    return list(seen.values())


QUOTED = re.compile(r"\(([^()]*) (common|strict)\)")


def quoted_counts(reason: str) -> list[tuple[str, str, str, str]]:
    """(category, count, total, field) of every "(digits:2 0/100, digits:3 0/1,000 common)" group."""
    out = []
    for group, field in QUOTED.findall(reason):
        for item in group.split(", "):
            category, fraction = item.split(" ")
            out.append((category, *fraction.split("/"), field))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("direction", [0, 1])
def test_verdict_quotes_its_own_table_for_every_pair(direction: int) -> None:
    """For every ordered pair of demo vocabularies: each count in the reason is the table's, and
    P-KL is advised exactly when a critical category falls outside the H-KL common set."""
    names = distinct_families()
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for student, teacher in pairs if direction == 0 else [(b, a) for a, b in pairs]:
        (entry,) = document(vocab(student), [(vocab(teacher), built(student, teacher))], None)["teachers"]
        table = entry["categories"]
        quoted = quoted_counts(entry["reason"])
        assert quoted, entry["reason"]
        for category, got, total, field in quoted:
            row = table[category]
            assert (int(got.replace(",", "")), int(total.replace(",", ""))) == (row[field], row["total"])
        outside = [c for c in DEFAULT_CRITICAL if c in table and table[c]["common"] / table[c]["total"] < 0.95]
        assert (entry["recommendation"] == "p_kl") == bool(outside), (student, teacher, entry["reason"])
        assert {c for c, _, _, field in quoted if field == "common"} >= set(outside)
        for c in DEFAULT_CRITICAL:
            if c in table:
                assert (table[c]["severity"] == "critical") == (table[c]["common"] / table[c]["total"] < 0.5)


@pytest.mark.parametrize("student", ["llama2", "mistral-v1", "gemma3"])
def test_byte_fallback_students_keep_their_real_digits_in_the_common_set(student: str) -> None:
    (entry,) = document(vocab(student), [(vocab("qwen3"), built(student, "qwen3"))], None)["teachers"]
    assert entry["categories"]["digits:1"]["common"] == 10 and entry["recommendation"] == "h_kl"
    common = built(student, "qwen3").common_set()
    s, t = vocab(student), vocab("qwen3")
    for digit in b"0123456789":
        real = s.id_of_bytes(bytes([digit]))
        assert s.categories[real] == "digits:1" and common[real] == t.id_of_bytes(bytes([digit]))
        byte_piece = s.pieces.index(f"<0x{digit:02X}>")
        assert byte_piece not in common  # the <0x33> fallback piece loses the collision to the real `3`
