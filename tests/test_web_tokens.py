"""GET /api/tokens/{side}/{id} (webapp/routes/tokens.py) through FastAPI's TestClient: a student token's
row, a teacher token's column, how the other side spells it, and ids it refuses.

Most tests run on the cheap workspace (llama2 student; llama3 and mistral-v1 teachers); the issue's
must-show cases run on Llama-3 × Qwen3. Expected values are computed from the vocabularies and W in the
test, not read back from the code under test.
"""

from __future__ import annotations

import pytest
from conftest import vocab
from web_fixtures import LLAMA3, MISTRAL, pid


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


def test_teacher_column_is_paged(web_client) -> None:
    tid = pid(vocab("llama3"), "I")

    def column(**params) -> dict:
        response = web_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3, **params})
        assert response.status_code == 200, response.text
        return response.json()

    whole = column()
    assert whole["column_count"] >= 3
    second = column(column_offset=1, column_limit=2)
    assert second["column"] == whole["column"][1:3] and second["column_count"] == whole["column_count"]
    assert column(column_offset=10**6)["column"] == []
    for bad in ({"column_limit": 0}, {"column_limit": 201}, {"column_offset": -1}):
        assert web_client.get(f"/api/tokens/teacher/{tid}", params={"teacher": LLAMA3, **bad}).status_code == 422
