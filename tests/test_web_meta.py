"""GET /api/meta (webapp/routes/meta.py), and the API's own docs: Swagger UI and the OpenAPI schema."""

from __future__ import annotations

from conftest import vocab
from web_fixtures import STUDENT, TEACHER_KEYS, TEACHERS

from xtoken_align.rules import RULE_CODES


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
