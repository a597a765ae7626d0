"""GET /api/vocab/{side} (webapp/routes/vocab.py) through FastAPI's TestClient: substring, regex and hex
search, filters, sorting, paging and the parameters it refuses.

Most tests run on the cheap workspace (llama2 student; llama3 and mistral-v1 teachers); the issue's
must-show cases run on Llama-3 × Qwen3. Expected values are computed from the vocabularies and W in the
test, not read back from the code under test.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import vocab
from web_fixtures import LLAMA3, MISTRAL, category_of, client_for, every_page, page, pid, present_ids, put_row


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


def test_sort_by_impact_puts_the_highest_first(demo_client) -> None:
    """Llama-3 × Qwen3: numerals carry the most training signal at risk; `order=asc` reverses the order."""
    llama3 = vocab("llama3")
    top = page(demo_client, sort="impact", teacher="qwen3", limit=200)["data"]
    impacts = [t["impact"] for t in top]
    assert impacts == sorted(impacts, reverse=True) and impacts[0] > 0
    assert top[0]["piece"] == "20" and top[0]["category"] == "digits:2" and not top[0]["matched"]
    for t in top:
        assert t["frequency"] > 0 and 0 < t["risk"] <= 1  # 268 tokens put some signal at risk here
        assert t["impact"] == pytest.approx(t["frequency"] * t["risk"], abs=1e-4 * t["frequency"])  # risk: 4 decimals
    the = page(demo_client, q="the", teacher="qwen3", limit=500)["data"]
    (word,) = [t for t in the if t["id"] == pid(llama3, "Ġthe")]
    assert word["frequency"] > 1000 and word["risk"] == 0 and word["impact"] == 0

    numerals = every_page(demo_client, category="digits:3", sort="impact", teacher="qwen3")
    assert len(numerals) == 1000 and {t["category"] for t in numerals} == {"digits:3"}
    impacts = [t["impact"] for t in numerals]
    assert impacts == sorted(impacts, reverse=True)
    explicit = every_page(demo_client, category="digits:3", sort="impact", order="desc", teacher="qwen3")
    ascending = every_page(demo_client, category="digits:3", sort="impact", order="asc", teacher="qwen3")
    assert [t["id"] for t in explicit] == [t["id"] for t in numerals] == [t["id"] for t in reversed(ascending)]
    assert page(demo_client, teacher="qwen3", limit=3)["data"][0]["id"] == 0  # other keys stay ascending


def test_teacher_side_has_no_impact(web_client) -> None:
    response = web_client.get("/api/vocab/teacher", params={"teacher": LLAMA3, "sort": "impact"})
    assert response.status_code == 422 and "student tokens only" in response.json()["detail"]
    assert all(t["impact"] is None for t in page(web_client, "teacher", limit=5)["data"])


def test_impact_follows_edits_undo_and_redo(fresh_workspace) -> None:
    """Mapping `▁the` (exact, common, frequent) away raises its risk; undo makes it an exact match again."""
    workspace = fresh_workspace()
    client = client_for(workspace, corpus_texts=200)
    sid = pid(vocab("llama2"), "▁the")

    def token() -> dict:
        (found,) = [t for t in every_page(client, q="▁the") if t["id"] == sid]
        return found

    before = token()
    assert before["matched"] and before["frequency"] > 100 and before["risk"] < 0.1
    other = pid(vocab("llama3"), "Ġcat")
    assert put_row(client, sid, [(other, 1.0)], 0, "map away").status_code == 200
    edited = token()
    assert not edited["matched"] and edited["frequency"] == before["frequency"]
    assert edited["risk"] == 1 and edited["impact"] == edited["frequency"]  # unmatched, uncommon, never agrees
    assert [t["id"] for t in page(client, sort="impact", limit=1)["data"]] == [sid]
    assert client.post(f"/api/teachers/{LLAMA3}/undo").status_code == 200
    assert token() == before  # the exact match is back: its risk drops back
    assert client.post(f"/api/teachers/{LLAMA3}/redo").status_code == 200
    assert token()["risk"] == 1
