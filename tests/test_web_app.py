"""What create_app (webapp/app.py) puts around every route: the access token on every /api call, a strict
Content-Security-Policy, an index page without inline scripts, and token strings sent verbatim; and the
static UI's ES modules, which import one another without a cycle.
"""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, vocab
from web_fixtures import LLAMA3, client_for, page


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


def static_imports() -> dict[str, set[str]]:
    """Each ES module under static/ (path relative to it) -> the modules it imports."""
    static = ROOT / "static"
    graph = {}
    for path in static.rglob("*.js"):
        found = re.findall(r'^\s*import\b[^"\']*["\']([^"\']+)["\']', path.read_text(encoding="utf-8"), flags=re.M)
        graph[path.relative_to(static).as_posix()] = {
            (path.parent / name).resolve().relative_to(static.resolve()).as_posix() for name in found
        }
    return graph


def test_static_modules_import_without_a_cycle() -> None:
    graph = static_imports()
    assert {"views/vocab.js", "state.js"} <= graph["app.js"] and "state.js" in graph["views/vocab.js"]
    assert not [module for module, imported in graph.items() if "app.js" in imported]  # the entry module

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        for imported in graph[module]:
            visit(imported, (*path, module))

    for module in graph:
        visit(module, ())


def test_served_connections_send_without_nagle_delay() -> None:
    """Keep-alive responses are written in parts; with Nagle's algorithm on, each waits for the
    client's delayed ACK (~40 ms a request). The listening socket hands TCP_NODELAY to every connection."""
    import socket

    from webapp.cli import bind

    with bind("127.0.0.1", 0) as listening, socket.create_connection(listening.getsockname()[:2]):
        accepted, _ = listening.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
