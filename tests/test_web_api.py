"""The JSON API (webapp/routes/*) through FastAPI's TestClient: search, detail, pair view, edits, exports,
access token, security headers, and what `serve` refuses.

Most tests run on the cheap workspace (llama2 student; llama3 and mistral-v1 teachers); the issue's
must-show cases run on Llama-3 × Qwen3. Expected values are computed from the vocabularies and W in the
test, not read back from the code under test.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import gsm8k, vocab
from web_fixtures import STUDENT, TEACHER_KEYS, TEACHERS, client_for, copy_workspace, quiet

from webapp.workspace import Workspace
from xtoken_align.errors import XTokenError
from xtoken_align.formats import load_projection, save_projection
from xtoken_align.rules import RULE_CODES

pytest_plugins = ["web_fixtures"]

LLAMA3, MISTRAL = TEACHER_KEYS


def page(client, side: str = "student", **params) -> dict:
    response = client.get(f"/api/vocab/{side}", params={"teacher": LLAMA3, **params})
    assert response.status_code == 200, response.text
    return response.json()


def every_page(client, side: str = "student", **params) -> list[dict]:
    found, offset = [], 0
    while True:
        data = page(client, side, offset=offset, limit=500, **params)["data"]
        found += data
        if len(data) < 500:
            return found
        offset += 500


def present_ids(v) -> list[int]:
    return [i for i in range(v.size) if v.categories[i] != "unused"]


def category_of(v, i: int) -> str:
    return "special" if i in v.special else v.categories[i]


def pid(v, piece: str) -> int:
    return v.pieces.index(piece)


# ---------------------------------------------------------------- meta, docs


def test_meta(web_client) -> None:
    meta = web_client.get("/api/meta").json()
    student = vocab("llama2")
    assert meta["student"] == {
        "name": "llama2", "source": STUDENT, "size": student.size, "fingerprint": student.fingerprint,
    }  # fmt: skip
    assert [t["key"] for t in meta["teachers"]] == list(TEACHER_KEYS)
    assert [t["source"] for t in meta["teachers"]] == list(TEACHERS)
    assert [t["size"] for t in meta["teachers"]] == [vocab("llama3").size, vocab("mistral-v1").size]
    assert meta["rules"] == list(RULE_CODES)
    assert "digits:3" in meta["categories"] and "special" in meta["categories"]
    assert (meta["max_text_chars"], meta["max_page_size"]) == (20_000, 500)


def test_docs_and_openapi_are_served(web_client) -> None:
    docs = web_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = web_client.get("/openapi.json").json()
    assert {"/api/meta", "/api/vocab/{side}", "/api/tokens/{side}/{token_id}", "/api/pair"} <= set(schema["paths"])
    assert set(schema["paths"]["/api/teachers/{teacher}/rows/{student_id}"]) == {"put"}


# ---------------------------------------------------------------- vocabulary search


@pytest.mark.parametrize("q", ["hello", "▁the", "ing", "é", "<"])
def test_substring_search_matches_piece_or_display(web_client, q: str) -> None:
    v = vocab("llama2")
    expected = [i for i in present_ids(v) if q in v.pieces[i] or q in v.display(i)]
    found = every_page(web_client, q=q)
    assert [t["id"] for t in found] == expected
    assert page(web_client, q=q, limit=1)["count"] == len(expected)
    for token in found[:50]:
        assert token["piece"] == v.pieces[token["id"]]  # verbatim, no escaping


def test_search_is_the_same_for_every_teacher_but_rows_differ(web_client) -> None:
    on_llama3 = page(web_client, q="▁Hello", limit=5)
    on_mistral = page(web_client, q="▁Hello", limit=5, teacher=MISTRAL)
    assert [t["id"] for t in on_llama3["data"]] == [t["id"] for t in on_mistral["data"]]
    hello = pid(vocab("llama2"), "▁Hello")
    rows = {
        key: next(t for t in p["data"] if t["id"] == hello)["top"]
        for key, p in ((LLAMA3, on_llama3), (MISTRAL, on_mistral))
    }
    assert [e["teacher_id"] for e in rows[LLAMA3]] == [pid(vocab("llama3"), "ĠHello")]
    assert [e["teacher_id"] for e in rows[MISTRAL]] == [pid(vocab("mistral-v1"), "▁Hello")]


def test_regex_search(web_client) -> None:
    v = vocab("llama2")
    pattern = r"^▁[A-Z][a-z]+ing$"
    expected = [i for i in present_ids(v) if re.search(pattern, v.pieces[i]) or re.search(pattern, v.display(i))]
    assert len(expected) > 10
    assert [t["id"] for t in every_page(web_client, q=pattern, regex=True)] == expected
    # the same text without regex=true is a literal substring: nothing contains it
    assert page(web_client, q=pattern)["count"] == 0


def test_regex_three_digit_numerals_on_llama3(demo_client) -> None:
    """`^[0-9]{3}$` finds exactly Llama-3's 1,000 three-digit numerals. `\\d` is Unicode-aware (in polars'
    Rust regex as in Python's re), so `^\\d{3}$` adds the 12 Extended Arabic-Indic numerals such as '۲۰۱'."""
    llama3 = vocab("llama3")
    ascii_digits = every_page(demo_client, q=r"^[0-9]{3}$", regex=True, teacher="qwen3")
    assert len(ascii_digits) == 1000
    assert {t["piece"] for t in ascii_digits} == {f"{n:03d}" for n in range(1000)}
    assert {t["category"] for t in ascii_digits} == {"digits:3"}

    unicode_digits = every_page(demo_client, q=r"^\d{3}$", regex=True, teacher="qwen3")
    expected = [
        i for i in present_ids(llama3)
        if re.fullmatch(r"\d{3}", llama3.pieces[i]) or re.fullmatch(r"\d{3}", llama3.display(i))
    ]  # fmt: skip
    assert [t["id"] for t in unicode_digits] == expected
    extra = [t["display"] for t in unicode_digits if t["category"] != "digits:3"]
    assert len(unicode_digits) == 1000 + len(extra) and "۲۰۱" in extra
    assert all(ch.isdecimal() and not ch.isascii() for text in extra for ch in text)


def test_demo_search_345_shows_its_row_on_qwen_digits(demo_client) -> None:
    found = page(demo_client, q="345", teacher="qwen3")
    assert found["count"] == 1
    (token,) = found["data"]
    assert (token["piece"], token["category"], token["rule"], token["degree"]) == ("345", "digits:3", "digits", 3)
    assert [e["piece"] for e in token["top"]] == ["3", "4", "5"]
    assert [round(e["weight"], 4) for e in token["top"]] == [0.9009, 0.0901, 0.0090]


@pytest.mark.parametrize("q", ["68656c6c6f", "E28496", "e28496"])
def test_hex_search_matches_canonical_bytes(web_client, q: str) -> None:
    v = vocab("llama2")
    expected = [
        i for i in present_ids(v) if q.lower() in v.token_bytes[i].hex() or q in v.pieces[i] or q in v.display(i)
    ]  # fmt: skip
    found = every_page(web_client, q=q)
    assert [t["id"] for t in found] == expected and expected
    target = b"hello" if q.startswith("68") else "№".encode()
    assert any(v.token_bytes[t["id"]] == target for t in found)


def test_odd_length_hex_is_text_only(web_client) -> None:
    v = vocab("llama2")
    expected = [i for i in present_ids(v) if "abc" in v.pieces[i] or "abc" in v.display(i)]
    assert [t["id"] for t in every_page(web_client, q="abc")] == expected


@pytest.mark.parametrize("category", ["digits:1", "byte", "special", "letters:greek", "whitespace"])
def test_category_filter(web_client, category: str) -> None:
    v = vocab("llama2")
    expected = [i for i in present_ids(v) if category_of(v, i) == category]
    found = every_page(web_client, category=category)
    assert [t["id"] for t in found] == expected and expected
    assert {t["category"] for t in found} == {category}


def test_rule_degree_and_matched_filters_follow_w(web_client, web_workspace) -> None:
    base = web_workspace.teacher(LLAMA3).base
    size = vocab("llama2").size
    rows = [base.row(i) for i in range(size)]
    rule_of = [row[0][2] if row else "" for row in rows]

    multitoken = every_page(web_client, rule="multitoken")
    assert [t["id"] for t in multitoken] == [i for i in range(size) if rule_of[i] == "multitoken"]
    assert all(t["rule"] == "multitoken" and t["top"][0]["rule"] == "multitoken" for t in multitoken)

    two = every_page(web_client, degree=2)
    assert [t["id"] for t in two] == [i for i in range(size) if len(rows[i]) == 2]
    assert all(t["degree"] == 2 and len(t["top"]) == 2 for t in two)

    matched = page(web_client, matched=True, limit=1)["count"]
    unmatched = page(web_client, matched=False, limit=1)["count"]
    assert matched == sum(r in ("exact", "special") for r in rule_of)
    assert matched + unmatched == page(web_client, limit=1)["count"] == size
    assert all(not t["matched"] for t in page(web_client, matched=False, limit=200)["data"])


def test_teacher_side_search_and_filters(web_client, web_workspace) -> None:
    llama3 = vocab("llama3")
    found = page(web_client, "teacher", q="ĠHello", limit=500)
    assert [t["id"] for t in found["data"]] == [i for i in present_ids(llama3) if "ĠHello" in llama3.pieces[i]]
    # degree on the teacher side: student rows pointing at the token (computed from the base W's columns)
    columns = web_workspace.teacher(LLAMA3).base.matrix.tocsc()
    for token in found["data"]:
        assert token["degree"] == columns.indptr[token["id"] + 1] - columns.indptr[token["id"]]
    # the same filter on the two teachers: llama3 has 1,000 three-digit numerals, mistral-v1 none
    assert page(web_client, "teacher", category="digits:3", limit=1)["count"] == 1000
    assert page(web_client, "teacher", category="digits:3", limit=1, teacher=MISTRAL)["count"] == 0
    assert page(web_client, "teacher", limit=1, teacher=MISTRAL)["count"] == len(present_ids(vocab("mistral-v1")))


def test_sort_and_order(web_client) -> None:
    v = vocab("llama2")
    by_piece = page(web_client, q="▁th", sort="piece", limit=500)["data"]
    assert [t["piece"] for t in by_piece] == sorted(v.pieces[i] for i in present_ids(v) if "▁th" in v.pieces[i])
    descending = page(web_client, q="▁th", sort="piece", order="desc", limit=500)["data"]
    assert [t["piece"] for t in descending] == [t["piece"] for t in reversed(by_piece)]

    by_degree = page(web_client, sort="degree", order="desc", limit=500)["data"]
    degrees = [t["degree"] for t in by_degree]
    assert degrees == sorted(degrees, reverse=True)
    assert degrees[0] == max(t["degree"] for t in every_page(web_client, degree=degrees[0]))
    by_length = page(web_client, sort="length", limit=500)["data"]
    lengths = [len(v.token_bytes[t["id"]]) for t in by_length]
    assert lengths == sorted(lengths)


def test_paging(web_client) -> None:
    whole = page(web_client, q="▁a", limit=30)
    parts = [page(web_client, q="▁a", offset=offset, limit=10) for offset in (0, 10, 20)]
    assert [t["id"] for p in parts for t in p["data"]] == [t["id"] for t in whole["data"]]
    assert {p["count"] for p in parts} == {whole["count"]} and whole["count"] > 30
    beyond = page(web_client, q="▁a", offset=whole["count"], limit=10)
    assert beyond == {"data": [], "count": whole["count"]}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 501}, "maximum page size 500"),
        ({"limit": 0}, ""),
        ({"offset": -1}, ""),
        ({"q": "(", "regex": True}, "invalid regular expression"),
        ({"q": "a{1000}{1000}", "regex": True}, "invalid regular expression"),
        ({"rule": "nope"}, "exact"),
        ({"category": "nope"}, "digits:1"),
        ({"sort": "nope"}, "piece"),
        ({"order": "sideways"}, ""),
        ({"degree": -1}, ""),
        ({"q": "x" * 201}, ""),
    ],
)
def test_bad_search_parameters_are_422(web_client, params: dict, message: str) -> None:
    response = web_client.get("/api/vocab/student", params={"teacher": LLAMA3, **params})
    assert response.status_code == 422, response.text
    assert message in json.dumps(response.json()["detail"])


def test_unknown_teacher_or_side(web_client) -> None:
    response = web_client.get("/api/vocab/student", params={"teacher": "gpt2"})
    assert response.status_code == 404
    assert "gpt2" in response.json()["detail"] and "llama3, mistral-v1" in response.json()["detail"]
    assert web_client.get("/api/vocab/both", params={"teacher": LLAMA3}).status_code == 422
    assert web_client.get("/api/vocab/student").status_code == 422  # teacher is required


# ---------------------------------------------------------------- token detail


def test_student_token_detail(web_client, web_workspace) -> None:
    student, teacher = vocab("llama2"), vocab("llama3")
    sid = pid(student, "▁Hello")
    detail = web_client.get(f"/api/tokens/student/{sid}", params={"teacher": LLAMA3}).json()
    assert (detail["side"], detail["id"], detail["piece"], detail["display"]) == ("student", sid, "▁Hello", " Hello")
    assert detail["hex"] == b" Hello".hex() and detail["category"] == "letters:latin" and detail["roles"] == []
    assert detail["version"] == 0 and detail["column"] is None
    expected_row = web_workspace.teacher(LLAMA3).base.row(sid)
    assert [(e["teacher_id"], e["weight"], e["rule"]) for e in detail["row"]] == [r[:3] for r in expected_row]
    assert [e["piece"] for e in detail["row"]] == [teacher.pieces[r[0]] for r in expected_row]
    assert [p["piece"] for p in detail["other_side"]] == ["ĠHello"]


@pytest.mark.parametrize("piece", ["▁nederbörd", "ruct", "▁При", "<0xE2>", "▁▁▁▁"])
def test_other_side_spells_the_same_bytes(web_client, piece: str) -> None:
    student, teacher = vocab("llama2"), vocab("mistral-v1")
    sid = pid(student, piece)
    detail = web_client.get(f"/api/tokens/student/{sid}", params={"teacher": MISTRAL}).json()
    assert detail["other_side"], detail
    assert b"".join(teacher.token_bytes[p["id"]] for p in detail["other_side"]) == student.token_bytes[sid]


def test_special_token_detail_has_roles(web_client) -> None:
    detail = web_client.get("/api/tokens/student/1", params={"teacher": LLAMA3}).json()
    assert (detail["piece"], detail["category"], detail["roles"], detail["other_side"]) == (
        "<s>",
        "special",
        ["bos"],
        [],
    )
    assert [e["piece"] for e in detail["row"]] == ["<|begin_of_text|>"]
    assert "tokenizer_config.json bos_token" in detail["role_evidence"][0]


def test_teacher_token_detail_lists_its_column(web_client, web_workspace) -> None:
    teacher = vocab("llama3")
    tid = pid(teacher, "I")
    detail = web_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3}).json()
    assert detail["side"] == "teacher" and detail["row"] is None and detail["version"] is None
    base = web_workspace.teacher(LLAMA3).base
    expected = {sid for sid in range(base.shape[0]) if any(c == tid for c, *_ in base.row(sid))}
    assert {e["student_id"] for e in detail["column"]} == expected
    weights = [e["weight"] for e in detail["column"]]
    assert weights == sorted(weights, reverse=True)
    for entry in detail["column"]:
        assert entry["weight"] == next(w for c, w, *_ in base.row(entry["student_id"]) if c == tid)
    assert [p["piece"] for p in detail["other_side"]] == ["I"]


def test_demo_qwen_digit_column_holds_llama3_345(demo_client) -> None:
    qwen, llama3 = vocab("qwen3"), vocab("llama3")
    three = pid(qwen, "3")
    detail = demo_client.get(f"/api/tokens/teacher/{three}", params={"teacher": "qwen3"}).json()
    entry = next(e for e in detail["column"] if e["student_id"] == pid(llama3, "345"))
    assert (entry["piece"], entry["rule"], round(entry["weight"], 4)) == ("345", "digits", 0.9009)
    assert detail["column"][0]["piece"] == "3" and detail["column"][0]["weight"] == 1.0


@pytest.mark.parametrize(
    ("side", "token_id", "status"),
    [("student", 32000, 404), ("student", -1, 404), ("teacher", 128256, 404), ("teacher", 10**30, 404),
     ("neither", 5, 422), ("student", "abc", 422)],
)  # fmt: skip
def test_bad_token_ids(web_client, side: str, token_id, status: int) -> None:
    response = web_client.get(f"/api/tokens/{side}/{token_id}", params={"teacher": LLAMA3})
    assert response.status_code == status, response.text
    if status == 404:
        assert str(token_id) in response.json()["detail"]


# ---------------------------------------------------------------- pair view


def boundaries(tokens: list[dict]) -> set[int]:
    return {t["start"] for t in tokens} | ({tokens[-1]["end"]} if tokens else set())


def check_pair(view: dict, text: str) -> None:
    """Invariants of a pair view, computed independently of the server's alignment."""
    data = text.encode("utf-8")
    assert view["round_trips"] == {"student": True, "teacher": True}
    for side in ("student", "teacher"):
        tokens = view[side]
        assert tokens[0]["start"] == 0 and tokens[-1]["end"] == len(data)
        for before, after in zip(tokens, tokens[1:], strict=False):
            assert before["end"] == after["start"]  # tokens tile the text
    chunks = view["chunks"]
    assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(data)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before["end"] == after["start"] and before["start"] < before["end"]
    for side in ("student", "teacher"):
        members = [position for chunk in chunks for position in chunk[side]]
        assert sorted(members) == list(range(len(view[side])))  # every token in exactly one chunk
        for k, chunk in enumerate(chunks):
            for position in chunk[side]:
                token = view[side][position]
                assert token["chunk"] == k and chunk["start"] <= token["start"] <= token["end"] <= chunk["end"]
        assert all(chunk[side] for chunk in chunks)
    for chunk in chunks:
        assert chunk["one_to_one"] == (len(chunk["student"]) == len(chunk["teacher"]) == 1)
    expected = sorted(boundaries(view["student"]) ^ boundaries(view["teacher"]))
    assert view["disagreeing_boundaries"] == expected
    shared = sorted(boundaries(view["student"]) & boundaries(view["teacher"]))
    assert [c["start"] for c in chunks] + [chunks[-1]["end"]] == shared


def test_pair_view_of_gsm8k_problems(web_client) -> None:
    student = vocab("llama2")
    for text in gsm8k()[:3]:
        for key, teacher in ((LLAMA3, vocab("llama3")), (MISTRAL, vocab("mistral-v1"))):
            view = web_client.post("/api/pair", json={"text": text, "teacher": key}).json()
            check_pair(view, text)
            assert [t["id"] for t in view["student"]] == student.tokenizer.encode(text, add_special_tokens=False).ids
            assert [t["id"] for t in view["teacher"]] == teacher.tokenizer.encode(text, add_special_tokens=False).ids
            assert all(t["row"] == [] for t in view["teacher"])
            assert all(t["piece"] == student.pieces[t["id"]] for t in view["student"])


def test_pair_rows_are_the_student_tokens_w_rows(web_client) -> None:
    view = web_client.post("/api/pair", json={"text": "Hello world, it's 2024!", "teacher": LLAMA3}).json()
    for token in view["student"]:
        detail = web_client.get(f"/api/tokens/student/{token['id']}", params={"teacher": LLAMA3}).json()
        assert token["row"] == detail["row"]


def test_demo_pair_view_splits_numerals(demo_client) -> None:
    text = "Natalia sold 12345 clips."
    view = demo_client.post("/api/pair", json={"text": text, "teacher": "qwen3"}).json()
    check_pair(view, text)
    number = text.index("12345")
    student_digits = [t["piece"] for t in view["student"] if number <= t["start"] < number + 5]
    teacher_digits = [t["piece"] for t in view["teacher"] if number <= t["start"] < number + 5]
    assert (student_digits, teacher_digits) == (["123", "45"], ["1", "2", "3", "4", "5"])
    assert {number + 1, number + 2, number + 4} <= set(view["disagreeing_boundaries"])


EDGE_TEXTS = ["", "\n x", "\x00\n\t é😀 €", "ℵ₀ — ﬁ 12\r\n", "<script>x</script>", "tab\tand  two spaces"]
SPACE_FIRST = [" ", " x", "   leading spaces"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (text, key)
        for text in EDGE_TEXTS + SPACE_FIRST
        for key in TEACHER_KEYS
        if not (key == MISTRAL and text[:1] == " ")
    ]
    + [pytest.param(text, MISTRAL) for text in SPACE_FIRST],
)
def test_pair_view_edge_texts(web_client, text: str, key: str) -> None:
    response = web_client.post("/api/pair", json={"text": text, "teacher": key})
    assert response.status_code == 200, response.text
    view = response.json()
    if text:
        check_pair(view, text)
    else:
        assert view == {
            "student": [],
            "teacher": [],
            "chunks": [],
            "disagreeing_boundaries": [],
            "round_trips": {"student": True, "teacher": True},
        }


def test_pair_view_limits(web_workspace) -> None:
    client = client_for(web_workspace, max_text_chars=100, max_body_bytes=2_000)
    assert client.post("/api/pair", json={"text": "é" * 100, "teacher": LLAMA3}).status_code == 200
    too_long = client.post("/api/pair", json={"text": "é" * 101, "teacher": LLAMA3})
    assert too_long.status_code == 413 and "101" in too_long.json()["detail"]
    too_big = client.post("/api/pair", json={"text": "a", "teacher": LLAMA3, "padding": "x" * 2_000})
    assert too_big.status_code == 413 and "2,000 bytes" in too_big.json()["detail"]
    default = client_for(web_workspace)
    assert default.post("/api/pair", json={"text": "a" * 20_001, "teacher": LLAMA3}).status_code == 413
    assert default.post("/api/pair", json={"text": "a", "teacher": "gpt2"}).status_code == 404
    assert default.post("/api/pair", json={"text": 5, "teacher": LLAMA3}).status_code == 422


def test_chunked_body_over_the_limit_is_413(web_workspace) -> None:
    client = client_for(web_workspace, max_body_bytes=2_000)
    body = json.dumps({"text": "a", "teacher": LLAMA3, "padding": "x" * 50_000}).encode()
    response = client.post("/api/pair", content=iter([body]), headers={"content-type": "application/json"})
    assert response.status_code == 413


# ---------------------------------------------------------------- edits


def put_row(client, sid: int, entries: list[tuple[int, float]], version: int, note: str = "", teacher=LLAMA3):
    body = {"entries": [{"teacher_id": t, "weight": w} for t, w in entries], "version": version, "note": note}
    return client.put(f"/api/teachers/{teacher}/rows/{sid}", json=body)


def detail(client, sid: int, teacher: str = LLAMA3) -> dict:
    return client.get(f"/api/tokens/student/{sid}", params={"teacher": teacher}).json()


def test_put_normalises_and_drops_zero_weights(fresh_client) -> None:
    teacher = vocab("llama3")
    sid = pid(vocab("llama2"), "▁Hello")
    response = put_row(fresh_client, sid, [(10, 2), (11, 1), (12, 1), (13, 0)], version=0, note="spread")
    assert response.status_code == 200, response.text
    row = response.json()
    assert (row["student_id"], row["version"]) == (sid, 1)
    assert [(e["teacher_id"], e["weight"], e["rule"]) for e in row["row"]] == [
        (10, 0.5, "edit"), (11, 0.25, "edit"), (12, 0.25, "edit"),
    ]  # fmt: skip
    assert [e["piece"] for e in row["row"]] == [teacher.pieces[t] for t in (10, 11, 12)]
    shown = detail(fresh_client, sid)
    assert (shown["version"], shown["row"]) == (1, row["row"])


def test_put_keeps_provenance_of_unchanged_entries(fresh_client, web_workspace) -> None:
    sid = pid(vocab("llama2"), "▁nederbörd")
    base = web_workspace.teacher(LLAMA3).base.row(sid)
    assert len(base) >= 2
    entries = [(c, w * 7) for c, w, _, _ in base]  # the same row, scaled: normalises back to the same weights
    row = put_row(fresh_client, sid, entries, version=0).json()["row"]
    assert [(e["teacher_id"], e["rule"]) for e in row] == [(c, r) for c, _, r, _ in base]
    assert [e["weight"] for e in row] == pytest.approx([w for _, w, _, _ in base], abs=1e-6)


@pytest.fixture(scope="module")
def rejecting_client(web_workspace, tmp_path_factory):
    """One editable workspace for the edits that must be refused (each test checks that none was stored)."""
    return client_for(copy_workspace(web_workspace, tmp_path_factory.mktemp("rejects") / "workspace"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"entries":[{"teacher_id":10,"weight":NaN}],"version":0}', "weight nan"),
        ('{"entries":[{"teacher_id":10,"weight":Infinity}],"version":0}', "weight inf"),
        ('{"entries":[{"teacher_id":10,"weight":1e400}],"version":0}', "finite"),
        ('{"entries":[{"teacher_id":10,"weight":-1}],"version":0}', "weight -1"),
        ('{"entries":[{"teacher_id":10,"weight":1000001}],"version":0}', "1e+06"),
        ('{"entries":[{"teacher_id":10,"weight":1},{"teacher_id":10,"weight":2}],"version":0}', "appears twice"),
        ('{"entries":[{"teacher_id":128256,"weight":1}],"version":0}', "teacher id 128256 is outside 0..128255"),
        ('{"entries":[{"teacher_id":-1,"weight":1}],"version":0}', "teacher id -1 is outside"),
        ('{"entries":[],"version":0}', "at least one entry"),
        ('{"entries":[{"teacher_id":10,"weight":0}],"version":0}', "at least one entry"),
        ('{"entries":[{"teacher_id":10,"weight":"heavy"}],"version":0}', "weight"),
        ('{"entries":[{"teacher_id":10,"weight":1}],"version":-1}', "version"),
        ('{"entries":[{"teacher_id":10,"weight":1}]}', "version"),
        ('{"entries":[{"teacher_id":10,"weight":1}],"version":0,"note":' + json.dumps("n" * 2001) + "}", "note"),
        (json.dumps({"entries": [{"teacher_id": i, "weight": 1} for i in range(65)], "version": 0}), "entries"),
        ("{not json", "json"),
    ],
)
def test_invalid_edits_are_422_and_change_nothing(rejecting_client, body: str, message: str) -> None:
    client = rejecting_client
    sid = pid(vocab("llama2"), "▁Hello")
    before = detail(client, sid)
    response = client.put(
        f"/api/teachers/{LLAMA3}/rows/{sid}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert message.lower() in json.dumps(response.json()["detail"]).lower()
    assert detail(client, sid) == before
    assert client.get(f"/api/teachers/{LLAMA3}/history").json()["count"] == 0


def test_edits_never_leave_zero_weight_entries(fresh_client, tmp_path: Path) -> None:
    underflow = fresh_client.put(
        f"/api/teachers/{LLAMA3}/rows/1001",
        content='{"entries":[{"teacher_id":1,"weight":1e6},{"teacher_id":2,"weight":5e-324}],"version":0}',
        headers={"content-type": "application/json"},
    )
    tiny = put_row(fresh_client, 1000, [(1, 1.0), (2, 1e-50)], 0)
    for response in (underflow, tiny):
        if response.status_code == 200:
            assert all(e["weight"] > 0 for e in response.json()["row"]), response.text
    with zipfile.ZipFile(io.BytesIO(download(fresh_client, "safetensors").content)) as archive:
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-llama3.safetensors")
    assert (projection.matrix.data > 0).all()


@pytest.mark.parametrize("sid", [32000, -1, 10**20])
def test_edit_of_an_unknown_student_id_is_422(fresh_client, sid: int) -> None:
    response = put_row(fresh_client, sid, [(10, 1)], version=0)
    assert response.status_code == 422 and f"student id {sid} is outside 0..31999" in response.json()["detail"]


def test_edit_of_an_unknown_teacher_is_404(fresh_client) -> None:
    assert put_row(fresh_client, 5, [(10, 1)], version=0, teacher="gpt2").status_code == 404


def test_special_token_may_have_an_empty_row(fresh_client) -> None:
    response = put_row(fresh_client, 0, [], version=0, note="unk maps nowhere")  # <unk> never appears in text
    assert response.status_code == 200 and response.json()["row"] == []
    assert detail(fresh_client, 0)["row"] == [] and detail(fresh_client, 0)["version"] == 1


def test_stale_version_is_409_with_the_current_row(fresh_client) -> None:
    sid = pid(vocab("llama2"), "▁the")
    first = put_row(fresh_client, sid, [(10, 1)], version=0).json()
    stale = put_row(fresh_client, sid, [(11, 1)], version=0)
    assert stale.status_code == 409
    body = stale.json()
    assert "version 1" in body["detail"] and body["row"] == first
    assert put_row(fresh_client, sid, [(11, 1)], version=5).status_code == 409
    assert detail(fresh_client, sid)["row"] == first["row"]
    assert put_row(fresh_client, sid, [(11, 1)], version=1).json()["version"] == 2


def test_undo_redo_and_history(fresh_client, web_workspace) -> None:
    student = vocab("llama2")
    a, b = pid(student, "▁Hello"), pid(student, "▁world")
    base_a = detail(fresh_client, a)["row"]
    put_row(fresh_client, a, [(10, 1)], 0, "a1")
    put_row(fresh_client, a, [(11, 3), (12, 1)], 1, "a2")
    put_row(fresh_client, b, [(13, 1)], 0, "b1")

    history = fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()
    assert history["count"] == 3
    assert [(h["student_id"], h["note"], h["state"]) for h in history["data"]] == [
        (b, "b1", "done"), (a, "a2", "done"), (a, "a1", "done"),
    ]  # fmt: skip
    assert history["data"][2]["before"] == base_a
    assert [e["teacher_id"] for e in history["data"][1]["before"]] == [10]
    assert [(e["teacher_id"], e["weight"]) for e in history["data"][1]["after"]] == [(11, 0.75), (12, 0.25)]

    undone = fresh_client.post(f"/api/teachers/{LLAMA3}/undo").json()
    assert (undone["student_id"], undone["version"]) == (b, 2)
    assert detail(fresh_client, b)["row"] == detail(client_for(web_workspace), b)["row"]  # back to the base row
    undone = fresh_client.post(f"/api/teachers/{LLAMA3}/undo").json()
    assert (undone["student_id"], undone["version"], [e["teacher_id"] for e in undone["row"]]) == (a, 3, [10])
    assert detail(fresh_client, a)["version"] == 3

    redone = fresh_client.post(f"/api/teachers/{LLAMA3}/redo").json()
    assert (redone["student_id"], [e["teacher_id"] for e in redone["row"]]) == (a, [11, 12])
    put_row(fresh_client, a, [(14, 1)], 4, "a3")  # drops the remaining redo entry (b1)
    nothing = fresh_client.post(f"/api/teachers/{LLAMA3}/redo")
    assert nothing.status_code == 409 and "redo" in nothing.json()["detail"]
    states = {h["note"]: h["state"] for h in fresh_client.get(f"/api/teachers/{LLAMA3}/history").json()["data"]}
    assert states == {"a3": "done", "b1": "dropped", "a2": "done", "a1": "done"}
    limited = fresh_client.get(f"/api/teachers/{LLAMA3}/history", params={"limit": 2}).json()
    assert [h["note"] for h in limited["data"]] == ["a3", "b1"]
    assert fresh_client.get(f"/api/teachers/{LLAMA3}/history", params={"limit": 501}).status_code == 422


def test_teachers_have_separate_rows_and_histories(fresh_client, web_workspace) -> None:
    sid = pid(vocab("llama2"), "▁Hello")
    on_mistral = detail(fresh_client, sid, MISTRAL)
    put_row(fresh_client, sid, [(10, 1)], 0)
    assert detail(fresh_client, sid, MISTRAL) == on_mistral
    assert fresh_client.post(f"/api/teachers/{MISTRAL}/undo").status_code == 409
    assert fresh_client.get(f"/api/teachers/{MISTRAL}/history").json() == {"data": [], "count": 0}
    assert put_row(fresh_client, sid, [(20, 1)], 0, teacher=MISTRAL).json()["version"] == 1


def test_edits_show_in_search_detail_columns_and_pair_view(fresh_client) -> None:
    student, teacher = vocab("llama2"), vocab("llama3")
    sid, tid = pid(student, "▁Hello"), pid(teacher, "Hello")
    column_before = fresh_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3}).json()["column"]
    assert sid not in {e["student_id"] for e in column_before}
    degree_before = page(fresh_client, "teacher", q="Hello", limit=500)["data"]
    degree_before = next(t["degree"] for t in degree_before if t["id"] == tid)

    put_row(fresh_client, sid, [(tid, 3), (pid(teacher, "ĠHello"), 1)], 0, "capitalised")
    edited = page(fresh_client, rule="edit")
    assert [t["id"] for t in edited["data"]] == [sid] and edited["count"] == 1
    assert edited["data"][0]["degree"] == 2 and edited["data"][0]["matched"] is False
    assert page(fresh_client, rule="edit", teacher=MISTRAL)["count"] == 0
    assert sid in [t["id"] for t in every_page(fresh_client, degree=2)]

    column = fresh_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3}).json()["column"]
    assert next(e for e in column if e["student_id"] == sid)["weight"] == 0.75
    after = next(t for t in page(fresh_client, "teacher", q="Hello", limit=500)["data"] if t["id"] == tid)
    assert after["degree"] == degree_before + 1

    view = fresh_client.post("/api/pair", json={"text": "Hello", "teacher": LLAMA3}).json()
    (token,) = [t for t in view["student"] if t["id"] == sid]
    assert [(e["teacher_id"], e["weight"]) for e in token["row"]] == [(tid, 0.75), (pid(teacher, "ĠHello"), 0.25)]


@pytest.mark.slow
def test_teacher_column_while_rows_are_edited(fresh_workspace) -> None:
    workspace = fresh_workspace()
    workspace.store.close()
    with sqlite3.connect(workspace.store.path) as db:  # 1,000 edited rows pointing at teacher token 10
        row = json.dumps([[10, 0.5, "edit", 1.0], [11, 0.5, "edit", 1.0]])
        db.executemany("INSERT INTO rows VALUES (?, ?, 1, ?)", [(LLAMA3, sid, row) for sid in range(3000, 4000)])
    workspace = Workspace(workspace.folder, STUDENT, list(TEACHERS), log=quiet)
    state = workspace.teacher(LLAMA3)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_column() -> None:  # what the route does on every GET of teacher token 10
        while not stop.is_set():
            try:
                assert len(state.column(10)) >= 1000
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

    reader = threading.Thread(target=read_column)
    reader.start()
    try:
        for sid in range(5000, 5300):  # what PUT /api/teachers/llama3/rows/{sid} does
            workspace.edit(LLAMA3, sid, 0, [(10, 1.0)], "")
            if errors:
                break
    finally:
        stop.set()
        reader.join()
    assert errors == []


# ---------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def edited_client(web_workspace, tmp_path_factory):
    """A workspace with two edits on llama3 (one undone and redone) and none on mistral-v1."""
    workspace = copy_workspace(web_workspace, tmp_path_factory.mktemp("exports") / "workspace")
    client = client_for(workspace)
    sid = pid(vocab("llama2"), "▁Hello")
    assert put_row(client, sid, [(10, 2), (11, 1), (12, 1)], 0, "export me").status_code == 200
    assert put_row(client, 0, [], 0, "unk maps nowhere").status_code == 200
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert client.post(f"/api/teachers/{LLAMA3}/redo").status_code == 200
    return client, sid


def download(client, fmt: str, teacher: str = LLAMA3):
    response = client.get(f"/api/teachers/{teacher}/export/{fmt}")
    assert response.status_code == 200, response.text
    return response


def test_export_safetensors_zip(edited_client, tmp_path: Path) -> None:
    client, sid = edited_client
    response = download(client, "safetensors")
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="W-llama2-llama3.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["W-llama2-llama3.json", "W-llama2-llama3.safetensors"]
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-llama3.safetensors", vocab("llama2"), vocab("llama3"))
    assert [(c, round(w, 6), r) for c, w, r, _ in projection.row(sid)] == [
        (10, 0.5, "edit"), (11, 0.25, "edit"), (12, 0.25, "edit"),
    ]  # fmt: skip
    assert projection.row(0) == []
    edits = [h for h in projection.history if h.get("action") == "edit"]
    assert [(h["student_id"], h["note"]) for h in edits] == [(sid, "export me"), (0, "unk maps nowhere")]
    assert [e[0] for e in edits[0]["after"]] == [10, 11, 12]
    sidecar = json.loads((tmp_path / "W-llama2-llama3.json").read_text(encoding="utf-8"))
    assert sidecar["history"] == projection.history


def test_export_of_an_unedited_teacher_is_its_base_w(edited_client, web_workspace, tmp_path: Path) -> None:
    client, sid = edited_client
    with zipfile.ZipFile(io.BytesIO(download(client, "safetensors", MISTRAL).content)) as archive:
        archive.extractall(tmp_path)
    projection = load_projection(tmp_path / "W-llama2-mistral-v1.safetensors")
    base = web_workspace.teacher(MISTRAL).base
    assert (projection.matrix != base.matrix).nnz == 0
    assert not [h for h in projection.history if h.get("action") == "edit"]


def test_export_nemo_pt(edited_client, tmp_path: Path) -> None:
    import torch  # installed by the project's set-up (the distill extra)

    client, sid = edited_client
    response = download(client, "nemo")
    path = tmp_path / "W.pt"
    path.write_bytes(response.content)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    indices, likelihoods = payload["indices"], payload["likelihoods"]
    assert indices.shape == likelihoods.shape and indices.shape[0] == vocab("llama2").size
    assert indices[sid, :3].tolist() == [10, 11, 12] and (indices[sid, 3:] == -1).all()
    assert likelihoods[sid, :3].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert (indices[0] == -1).all()
    assert payload["student_model_id"] == STUDENT and payload["teacher_model_id"] == "demo:llama3"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_tables(edited_client, fmt: str) -> None:
    client, sid = edited_client
    response = download(client, fmt)
    table = pl.read_csv(io.BytesIO(response.content)) if fmt == "csv" else pl.read_parquet(io.BytesIO(response.content))
    row = table.filter(pl.col("student_id") == sid).sort("rank")
    assert row["teacher_id"].to_list() == [10, 11, 12]
    assert row["weight"].to_list() == pytest.approx([0.5, 0.25, 0.25])
    assert row["rule"].to_list() == ["edit"] * 3
    assert row["student_piece"].to_list() == ["▁Hello"] * 3
    assert table.filter(pl.col("student_id") == 0).height == 0
    sums = table.group_by("student_id").agg(pl.col("weight").sum())["weight"].to_numpy()
    assert np.allclose(sums, 1.0, atol=1e-5)


def test_export_bad_format_or_teacher(edited_client) -> None:
    client, _ = edited_client
    assert client.get(f"/api/teachers/{LLAMA3}/export/xlsx").status_code == 422
    assert client.get("/api/teachers/gpt2/export/csv").status_code == 404


# ---------------------------------------------------------------- access token, headers


def example_path(path: str) -> str:
    values = {"side": "student", "token_id": "5", "teacher": LLAMA3, "student_id": "5", "fmt": "csv"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def test_access_token_guards_every_api_call(web_workspace) -> None:
    client = client_for(web_workspace, access_token="s3cret")
    operations = [
        (method, example_path(path)) for path, item in client.app.openapi()["paths"].items() for method in item
    ]
    assert len(operations) >= 10 and all(path.startswith("/api/") for _, path in operations)
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cre"}):
            response = client.request(method.upper(), path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"detail": "missing or wrong access token"}
        assert client.get(path, params={"token": "nope"}).status_code == 401
    meta = client.get("/api/meta", headers={"Authorization": "Bearer s3cret"})
    assert meta.status_code == 200 and meta.json()["student"]["name"] == "llama2"
    assert client.get(f"/api/teachers/{LLAMA3}/export/csv", params={"token": "s3cret"}).status_code == 200
    for public in ("/", "/static/app.js", "/static/style.css", "/vendor/plotly.min.js", "/openapi.json"):
        assert client.get(public).status_code == 200, public


def test_token_strings_leave_the_server_verbatim(demo_client) -> None:
    llama3 = vocab("llama3")
    found = page(demo_client, q="<", limit=500, teacher="qwen3")
    assert found["count"] > 0
    for token in found["data"]:
        assert token["piece"] == llama3.pieces[token["id"]] and "&lt;" not in token["piece"]
    response = demo_client.get("/api/tokens/student/128000", params={"teacher": "qwen3"})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["piece"] == "<|begin_of_text|>"
    assert b'"piece":"<|begin_of_text|>"' in response.content


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = [part.strip().split() for part in header.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/meta"])
def test_pages_send_a_strict_content_security_policy(web_client, path: str) -> None:
    response = web_client.get(path)
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_index_page_has_no_inline_scripts(web_client) -> None:
    html = web_client.get("/").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts and all('src="/' in attributes and not body.strip() for attributes, body in scripts)
    assert not re.search(r"\son\w+\s*=", html, flags=re.I)  # no inline event handlers
    for tag, url in re.findall(r"<(script|link)\b[^>]*?(?:src|href)=\"([^\"]*)\"", html, flags=re.I):
        assert url.startswith(("/", "data:")) and not url.startswith("//"), (tag, url)  # nothing from a CDN


def test_docs_page_works_under_its_own_csp(web_client) -> None:
    response = web_client.get("/docs")
    script_src = csp_directives(response.headers["content-security-policy"])["script-src"]
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", response.text, flags=re.S | re.I)
    assert scripts
    for attributes, body in scripts:
        source = re.search(r'src="([^"]+)"', attributes)
        assert source and body.strip() == "", "inline script blocked by script-src without 'unsafe-inline'"
        assert source.group(1).startswith("/") or any(source.group(1).startswith(s) for s in script_src)


# ---------------------------------------------------------------- what serve refuses


def test_workspace_for_other_tokenizers_is_refused(web_workspace, tmp_path: Path, _cached_vocabs) -> None:
    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    with pytest.raises(XTokenError, match=r"was made for llama2, llama3, mistral-v1; give another --workspace"):
        Workspace(folder, STUDENT, ["demo:mistral-v1"], log=quiet)
    with pytest.raises(XTokenError, match="was made for llama2, llama3, mistral-v1"):
        Workspace(folder, "demo:llama3", list(TEACHERS), log=quiet)
    assert Workspace(folder, STUDENT, list(TEACHERS), log=quiet).teachers.keys() == set(TEACHER_KEYS)


def test_serve_command_refuses_a_foreign_workspace(web_workspace, tmp_path: Path, capsys, _cached_vocabs) -> None:
    from webapp.cli import main

    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    code = main(["serve", "--student", STUDENT, "--teacher", "demo:mistral-v1", "--workspace", str(folder)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"xtoken-align: error: workspace {folder} was made for llama2, llama3, mistral-v1; give another --workspace"
    )


def test_serve_refuses_a_projection_for_other_tokenizers(web_workspace, tmp_path: Path, capsys, _cached_vocabs) -> None:
    from webapp.cli import main

    llama3_w = web_workspace.folder / "W-llama3.safetensors"
    with pytest.raises(
        XTokenError, match="teacher tokenizer mistral-v1 has 32,000 tokens but W was built for llama3 with 128,256"
    ):
        Workspace(tmp_path / "a", STUDENT, ["demo:mistral-v1"], [str(llama3_w)], log=quiet)
    code = main(["serve", "--student", STUDENT, "--teacher", "demo:mistral-v1", "--projection", str(llama3_w),
                 "--workspace", str(tmp_path / "b")])  # fmt: skip
    assert code == 2 and "W was built for llama3" in capsys.readouterr().err
    assert not (tmp_path / "b" / "W-mistral-v1.safetensors").exists()

    # same sizes, other vocabulary: a W whose sidecar names another teacher fingerprint
    other = tmp_path / "other" / "W.safetensors"
    projection = load_projection(llama3_w)
    save_projection(replace(projection, teacher=replace(projection.teacher, fingerprint="0" * 64)), other)
    with pytest.raises(XTokenError, match="canonical vocabulary fingerprints differ"):
        Workspace(tmp_path / "c", STUDENT, ["demo:llama3"], [str(other)], log=quiet)
    with pytest.raises(XTokenError, match="one per teacher"):
        Workspace(tmp_path / "d", STUDENT, list(TEACHERS), [str(llama3_w)], log=quiet)


def test_serve_needs_student_and_teacher(capsys) -> None:
    from webapp.cli import main

    assert main(["serve", "--student", STUDENT]) == 2
    assert "serve needs --student and --teacher (or --demo)" in capsys.readouterr().err


def test_workspace_recovers_from_a_w_file_without_its_sidecar(web_workspace, tmp_path: Path, _cached_vocabs) -> None:
    folder = copy_workspace(web_workspace, tmp_path / "ws").folder
    (folder / "W-mistral-v1.json").unlink()  # what a kill between the two renames leaves
    reopened = Workspace(folder, STUDENT, list(TEACHERS), log=quiet)
    assert reopened.teacher(MISTRAL).base.shape == (vocab("llama2").size, vocab("mistral-v1").size)
