"""Fuzz the OpenAPI schema for server errors (schemathesis, in-process over ASGI), plus hostile inputs that
the generator does not produce (lone surrogates in JSON strings).

Each operation gets a bounded number of examples, positive and negative; hooks offer, next to each generated
value, variants with a real teacher key and ids folded into range, so that requests get past the 404s and 422s
and into the handlers. Only `not_a_server_error` is checked: a 5xx is a bug. A hypothesis fuzzer of edit
sequences (PUT with hostile weights and ids, undo, redo) checks the server against a model of what it must
answer. The fuzzed workspaces are fresh copies (edits really happen).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, configuration, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from web_fixtures import TEACHER_KEYS, client_for, copy_workspace

from webapp.app import create_app
from webapp.settings import Settings

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, database=None)


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis keeps its caches under pytest's tmp dir, not in the working directory (the repo)."""
    configuration.set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    configuration.set_hypothesis_home_dir(None)


COMPARE = "base"  # the fuzzed workspace compares its llama3 W with the base W it started from


def fold_id(value):
    return abs(value) % 32_000 if isinstance(value, int) and not isinstance(value, bool) else value


def realistic(context, values):
    """The generated value, or variants of it with a real teacher key and ids folded into the vocabularies."""
    if not isinstance(values, dict):
        return st.just(values)
    variants = [values]
    for key in TEACHER_KEYS:
        fixed = {
            name: fold_id(value) if name in ("student_id", "token_id") else value for name, value in values.items()
        }
        if "teacher" in fixed:
            fixed["teacher"] = key
        if isinstance(fixed.get("entries"), list):
            fixed["entries"] = [
                {**e, "teacher_id": fold_id(e.get("teacher_id"))} if isinstance(e, dict) else e
                for e in fixed["entries"]
            ]
            fixed["version"] = 0
        if "other" in fixed:
            fixed["other"] = COMPARE
        if isinstance(fixed.get("action"), dict) and "source" in fixed["action"]:
            fixed["action"] = {**fixed["action"], "source": COMPARE}
        variants.append(fixed)
    return st.sampled_from(variants)


@pytest.fixture(scope="module")
def fuzz_schema(web_workspace, tmp_path_factory):
    workspace = copy_workspace(web_workspace, tmp_path_factory.mktemp("fuzz") / "workspace")
    settings_ = Settings(
        workspace.folder, workspace.student.source, tuple(t.vocab.source for t in workspace.teachers.values())
    )
    app = create_app(settings_, workspace=workspace)
    workspace.add_compare(COMPARE, str(workspace.folder / f"W-{TEACHER_KEYS[0]}.safetensors"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for name in ("flatmap_query", "flatmap_path_parameters", "flatmap_body"):
        schema.hook(name)(realistic)
    return schema


OPERATIONS = [
    "GET /api/meta",
    "GET /api/vocab/{side}",
    "GET /api/tokens/{side}/{token_id}",
    "POST /api/pair",
    "PUT /api/teachers/{teacher}/rows/{student_id}",
    "POST /api/teachers/{teacher}/undo",
    "POST /api/teachers/{teacher}/redo",
    "POST /api/teachers/{teacher}/rows/{student_id}/undo",
    "POST /api/teachers/{teacher}/rows/{student_id}/redo",
    "GET /api/teachers/{teacher}/history",
    "GET /api/teachers/{teacher}/export/{fmt}",
    "GET /api/diagnosis",
    "GET /api/overview",
    "GET /api/teachers/{teacher}/diff",
    "POST /api/teachers/{teacher}/bulk",
    "GET /api/teachers/{teacher}/rules",
    "POST /api/teachers/{teacher}/rebuild",
]
FEWER = {  # slow operations get fewer examples (seconds per example)
    "POST /api/teachers/{teacher}/bulk": 25,
    "POST /api/teachers/{teacher}/rebuild": 8,
    "GET /api/diagnosis": 4,
    "GET /api/overview": 4,
    "GET /api/teachers/{teacher}/export/{fmt}": 20,
}


def test_every_operation_is_fuzzed(fuzz_schema) -> None:
    assert sorted(op.ok().label for op in fuzz_schema.get_all_operations()) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_errors(fuzz_schema, label: str) -> None:
    """Positive and negative cases of one operation; any 5xx fails (hypothesis prints the shrunk request)."""
    operation = fuzz_schema.find_operation_by_label(label)
    cases = st.one_of(operation.as_strategy(mode) for mode in GenerationMode)

    @given(case=cases)
    @settings(FUZZ, max_examples=FEWER.get(label, FUZZ.max_examples))
    def call(case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    call()


# ---------------------------------------------------------------- edit sequences against a model

TEACHER = "mistral-v1"  # 32,000 tokens
SPECIAL_ROWS = (0, 1, 2)  # <unk>, <s>, </s>: may have an empty row
ROWS = (*SPECIAL_ROWS, 100, 5_000, 31_999)
WEIGHTS = st.one_of(
    st.floats(min_value=0, max_value=2e6),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, -0.0, 5e-324, 1e-300, 1e6, 1e6 + 1, 3]),
)
TEACHER_IDS = st.one_of(st.integers(0, 31_999), st.sampled_from([-1, 32_000, 2**63]))
EDITS = st.tuples(st.just("put"), st.sampled_from(ROWS), st.lists(st.tuples(TEACHER_IDS, WEIGHTS), max_size=6),
                  st.sampled_from(["current", "stale", "future"]))  # fmt: skip
ROW_STEPS = st.tuples(st.sampled_from(["row-undo", "row-redo"]), st.sampled_from(ROWS),
                      st.sampled_from(["current", "stale", "future"]))  # fmt: skip
STEPS = st.lists(
    st.one_of(EDITS, ROW_STEPS, st.tuples(st.just("undo")), st.tuples(st.just("redo"))), min_size=1, max_size=10
)


def valid(sid: int, entries: list[tuple[int, float]]) -> bool:
    ids = [t for t, _ in entries]
    if any(not 0 <= t < 32_000 for t in ids) or len(set(ids)) < len(ids):
        return False
    if any(not (0 <= w <= 1e6) for _, w in entries):  # NaN fails the comparison too
        return False
    return sid in SPECIAL_ROWS or any(w > 0 for _, w in entries)


@pytest.fixture(scope="module")
def edit_client(web_workspace, tmp_path_factory):
    return client_for(copy_workspace(web_workspace, tmp_path_factory.mktemp("fuzz-edits") / "workspace"))


def test_edit_sequences_follow_the_model(edit_client) -> None:
    client = edit_client

    def row(sid: int) -> dict:
        response = client.get(f"/api/tokens/student/{sid}", params={"teacher": TEACHER})
        assert response.status_code == 200
        return response.json()

    @given(steps=STEPS)
    @settings(FUZZ, max_examples=30)
    def run(steps) -> None:
        for step in steps:
            if step[0] == "put":
                _, sid, entries, which = step
                before = row(sid)
                version = {
                    "current": before["version"],
                    "stale": before["version"] - 1,
                    "future": before["version"] + 1,
                }
                body = json.dumps(  # NaN and Infinity go out as the JSON extensions Python reads
                    {"entries": [{"teacher_id": t, "weight": w} for t, w in entries], "version": version[which]}
                )
                response = client.put(f"/api/teachers/{TEACHER}/rows/{sid}", content=body,
                                      headers={"content-type": "application/json"})  # fmt: skip
                expected = 422 if not valid(sid, entries) or version[which] < 0 else 200 if which == "current" else 409
                assert response.status_code == expected, (entries, which, response.text)
                if expected != 200:
                    assert row(sid) == before
                    continue
                answer = response.json()
                if not answer["changed"]:  # the same row again: answered, not journalled
                    assert (answer["version"], answer["row"]) == (before["version"], before["row"])
                    continue
                assert answer["version"] == before["version"] + 1
                weights = [e["weight"] for e in answer["row"]]
                assert sorted(weights, reverse=True) == weights and all(w >= 0 for w in weights)
                # Entries too light to survive float32 (what W files store) are dropped, as documented.
                total = sum(w for _, w in entries)
                assert {e["teacher_id"] for e in answer["row"]} == {t for t, w in entries if np.float32(w / total) > 0}
                assert sum(weights) == pytest.approx(1.0) if weights else sid in SPECIAL_ROWS
            elif step[0].startswith("row-"):
                _, sid, which = step
                before = row(sid)
                version = before["version"] + {"current": 0, "stale": -1, "future": 1}[which]
                action = step[0].removeprefix("row-")
                response = client.post(f"/api/teachers/{TEACHER}/rows/{sid}/{action}", json={"version": version})
                assert response.status_code in ((422,) if version < 0 else (200, 409)), response.text
                if response.status_code != 200:
                    assert row(sid) == before
                    continue
                answer = response.json()
                assert which == "current" and answer["student_id"] == sid
                assert answer["version"] == before["version"] + 1
            else:
                response = client.post(f"/api/teachers/{TEACHER}/{step[0]}")
                assert response.status_code in (200, 409), response.text
                if response.status_code == 409:
                    continue
                answer = response.json()
            shown = row(answer["student_id"])
            assert (shown["version"], shown["row"]) == (answer["version"], answer["row"])

    run()
    history = client.get(f"/api/teachers/{TEACHER}/history", params={"limit": 500}).json()
    assert all(h["state"] in ("done", "undone", "dropped") for h in history["data"])
    assert edit_client.app.state.workspace.store.integrity() == "ok"


# ---------------------------------------------------------------- bodies the generator does not make

EDIT = "/api/teachers/llama3/rows/"


@pytest.fixture(scope="module")
def hostile_client(web_workspace, tmp_path_factory):
    return client_for(copy_workspace(web_workspace, tmp_path_factory.mktemp("fuzz-hostile") / "workspace"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST", "/api/pair", '{"text":"\\ud800x","teacher":"llama3"}', id="pair-text",
        ),
        pytest.param(
            "POST", "/api/pair", '{"text":"x","teacher":"\\ud800"}', id="pair-teacher",
        ),
        pytest.param(
            "PUT", EDIT + "5", '{"entries":[{"teacher_id":1,"weight":1}],"version":0,"note":"\\udc80"}',
            id="edit-note",
        ),
        pytest.param("POST", "/api/pair", '{"text":"\\u0000\\uffff\\ufffe","teacher":"llama3"}', id="nul-nonchars"),
        pytest.param("POST", "/api/pair", '{"text":"' + "\\u00e9" * 5000 + '","teacher":"mistral-v1"}', id="long"),
        pytest.param("POST", "/api/pair", '{"text":"x","teacher":"llama3","extra":[[[[[[[[]]]]]]]]}', id="extra"),
        pytest.param("POST", "/api/pair", "[]", id="array-body"),
        pytest.param("POST", "/api/pair", '{"text":"x","teacher":"llama3"', id="truncated"),
        pytest.param("POST", "/api/pair", b"\xff\xfe{}", id="not-utf8"),
        pytest.param("PUT", EDIT + "6", '{"entries":[{"teacher_id":1e3,"weight":1}],"version":0}', id="float-id"),
        pytest.param("PUT", EDIT + "7", '{"entries":[{"teacher_id":1,"weight":1e-320}],"version":0}', id="subnormal"),
        pytest.param("PUT", EDIT + "8", '{"entries":[{"teacher_id":1,"weight":1e-300},'
                     '{"teacher_id":2,"weight":1e-300}],"version":0}', id="tiny-weights"),
        pytest.param("PUT", EDIT + "9", '{"entries":[{"teacher_id":1,"weight":1e6},{"teacher_id":2,"weight":1e6}],'
                     '"version":' + str(2**64) + "}", id="huge-version"),
        pytest.param("PUT", EDIT + "99999999999999999999999", '{"entries":[{"teacher_id":1,"weight":1}],"version":0}',
                     id="huge-student-id"),
        pytest.param("GET", "/api/vocab/student?teacher=llama3&q=%ED%A0%80&regex=true", None, id="surrogate-query"),
        pytest.param("GET", "/api/vocab/student?teacher=llama3&q=%FF%FE", None, id="not-utf8-query"),
        pytest.param("GET", "/api/vocab/teacher?teacher=llama3&q=%00&regex=true", None, id="nul-regex"),
        pytest.param("GET", "/api/vocab/student?teacher=llama3&q=(?<=a)b&regex=true", None, id="lookbehind"),
        pytest.param("GET", "/api/vocab/student?teacher=llama3&q=\\p{Nope}&regex=true", None, id="bad-class"),
    ],
)  # fmt: skip
def test_hostile_requests_are_client_errors(hostile_client, method: str, path: str, body: str | bytes | None) -> None:
    content = body.encode() if isinstance(body, str) else body
    response = hostile_client.request(method, path, content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    assert isinstance(response.json(), dict)  # an answer the UI can read
    if response.status_code == 200 and method == "PUT":
        weights = [e["weight"] for e in response.json()["row"]]
        assert sum(weights) == pytest.approx(1.0) and all(w > 0 for w in weights)
