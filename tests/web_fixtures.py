"""Fixtures and helpers for the web tests: workspaces, apps and TestClients (built once per session where
they can be), real `serve` processes, and the requests the API tests share.

Two workspaces are built per session, each in pytest's tmp dir (never in the repo):
- the cheap one, `demo:llama2` student with two teachers (`demo:llama3`, `demo:mistral-v1`), for most API
  tests; it is kept read-only (tests that edit open `fresh_workspace()`, a copy of its W files with an
  empty edit database);
- the issue's demo, `demo:llama3` student with `demo:qwen3` teacher, for the must-show cases.

Workspaces here are opened with conftest's cached `vocab()` as their loader (a 128k vocabulary takes a
second or two to load); nothing else about them differs from what `xtoken-align serve` opens.
`start_server` runs the real console command in a subprocess (it loads its own vocabularies).
conftest.py loads these fixtures for every test module; test modules import its helpers by name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from conftest import vocab
from fastapi import FastAPI
from fastapi.testclient import TestClient

from webapp.app import create_app
from webapp.settings import Settings
from webapp.workspace import Workspace
from xtoken_align.vocab import Vocab

STUDENT = "demo:llama2"
TEACHERS = ("demo:llama3", "demo:mistral-v1")
TEACHER_KEYS = ("llama3", "mistral-v1")
LLAMA3, MISTRAL = TEACHER_KEYS
DEMO_STUDENT, DEMO_TEACHER = "demo:llama3", "demo:qwen3"


def cached_vocab(source: str) -> Vocab:
    """`load_vocab` for demo names, memoised for the session."""
    assert source.startswith("demo:"), source
    return vocab(source.removeprefix("demo:"))


def quiet(message: str) -> None:
    pass


def settings_for(folder: Path, student: str = STUDENT, teachers: tuple[str, ...] = TEACHERS, **limits) -> Settings:
    return Settings(folder, student, teachers, **limits)


def open_workspace(
    folder: Path, student: str = STUDENT, teachers: Sequence[str] = TEACHERS, projections: Sequence[str] | None = None
) -> Workspace:
    """`Workspace.open` as `serve` does it, with the session's cached vocabularies and no log."""
    return Workspace.open(folder, student, teachers, projections, load=cached_vocab, log=quiet)


@pytest.fixture(scope="session")
def web_workspace(tmp_path_factory) -> Workspace:
    """The cheap workspace (llama2 student; llama3 and mistral-v1 teachers). Read-only for tests."""
    return open_workspace(tmp_path_factory.mktemp("web-base"))


@pytest.fixture(scope="session")
def web_app(web_workspace) -> FastAPI:
    return create_app(settings_for(web_workspace.folder), workspace=web_workspace)


@pytest.fixture(scope="session")
def web_client(web_app) -> TestClient:
    """A client that shows server errors as 500 responses (as a browser would see them)."""
    return TestClient(web_app, raise_server_exceptions=False)


def copy_workspace(base: Workspace, folder: Path) -> Workspace:
    """A new workspace in `folder` with `base`'s W files and manifest and an empty edit database."""
    folder.mkdir(parents=True)
    for path in base.folder.iterdir():
        if path.name == "workspace.json" or path.name.startswith("W-"):
            shutil.copy2(path, folder / path.name)
    return open_workspace(folder, base.student.source, [state.vocab.source for state in base.teachers.values()])


@pytest.fixture
def fresh_workspace(web_workspace, tmp_path) -> Callable[[], Workspace]:
    """Factory: a new editable workspace with the session's W files (about a second each)."""
    made = iter(range(1_000))
    return lambda: copy_workspace(web_workspace, tmp_path / f"workspace-{next(made)}")


def client_for(workspace: Workspace, **limits) -> TestClient:
    """A client that shows server errors as 500 responses (as a browser would see them)."""
    student, teachers = workspace.student.source, tuple(t.vocab.source for t in workspace.teachers.values())
    app = create_app(settings_for(workspace.folder, student, teachers, **limits), workspace=workspace)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def fresh_client(fresh_workspace) -> TestClient:
    """A client over a fresh, editable workspace."""
    return client_for(fresh_workspace())


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Workspace:
    """The issue's demo pair, Llama-3 student and Qwen3 teacher (builds W: about ten seconds)."""
    return open_workspace(tmp_path_factory.mktemp("web-demo"), DEMO_STUDENT, [DEMO_TEACHER])


@pytest.fixture(scope="session")
def demo_client(demo_workspace) -> TestClient:
    return client_for(demo_workspace)


@pytest.fixture
def fresh_demo(demo_workspace, tmp_path) -> Callable[[], Workspace]:
    """Factory: a new editable copy of the demo workspace (Llama-3 student, Qwen3 teacher)."""
    made = iter(range(1_000))
    return lambda: copy_workspace(demo_workspace, tmp_path / f"demo-{next(made)}")


# ---------------------------------------------------------------- real servers

READY = re.compile(r"ready: open (http://\S+?)/(?:#|$)", re.M)


class Server:
    """A `serve` process started by `start_server`; its log is next to the workspace."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill leaves behind."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def start_server(workspace: Path, *args: str, timeout: float = 180) -> Server:
    """Run `xtoken-align serve --workspace WORKSPACE --port 0 ARGS` and wait until /api/meta answers.

    Port 0 lets the server choose a free port (no race with other tests); the URL is read from its
    "ready: open URL" line. Output is appended to WORKSPACE.log, shown when the server fails to start.
    """
    log = workspace.parent / f"{workspace.name}.log"
    start = log.stat().st_size if log.is_file() else 0  # a restart appends to the log of the last run
    command = [sys.executable, "-m", "webapp.cli", "serve", "--workspace", str(workspace), "--port", "0", *args]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        ready = READY.search(log.read_bytes()[start:].decode("utf-8", "replace"))
        try:
            if ready and httpx.get(f"{ready.group(1)}/api/meta", timeout=2).status_code == 200:
                return Server(process, ready.group(1), log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    raise AssertionError(f"server did not answer within {timeout:.0f} s:\n{log.read_text()}")


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """`start_server` for one test; every server it started is stopped at the end."""
    started: list[Server] = []

    def start(workspace: Path, *args: str) -> Server:
        started.append(start_server(workspace, *args))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------- requests the API tests share


def page(client: TestClient, side: str = "student", **params) -> dict:
    """One page of GET /api/vocab/{side} (teacher llama3 unless given), asserting a 200."""
    response = client.get(f"/api/vocab/{side}", params={"teacher": LLAMA3, **params})
    assert response.status_code == 200, response.text
    return response.json()


def every_page(client: TestClient, side: str = "student", **params) -> list[dict]:
    found, offset = [], 0
    while True:
        data = page(client, side, offset=offset, limit=500, **params)["data"]
        found += data
        if len(data) < 500:
            return found
        offset += 500


def present_ids(v: Vocab) -> list[int]:
    return [i for i in range(v.size) if v.categories[i] != "unused"]


def category_of(v: Vocab, i: int) -> str:
    return "special" if i in v.special else v.categories[i]


def pid(v: Vocab, piece: str) -> int:
    return v.pieces.index(piece)


def put_row(
    client: TestClient, sid: int, entries: list[tuple[int, float]], version: int, note: str = "", teacher=LLAMA3
) -> httpx.Response:
    body = {"entries": [{"teacher_id": t, "weight": w} for t, w in entries], "version": version, "note": note}
    return client.put(f"/api/teachers/{teacher}/rows/{sid}", json=body)


def detail(client: TestClient, sid: int, teacher: str = LLAMA3) -> dict:
    return client.get(f"/api/tokens/student/{sid}", params={"teacher": teacher}).json()


def download(client: TestClient, fmt: str, teacher: str = LLAMA3) -> httpx.Response:
    response = client.get(f"/api/teachers/{teacher}/export/{fmt}")
    assert response.status_code == 200, response.text
    return response
