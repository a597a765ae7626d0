"""Fixtures for the web tests: workspaces, apps and TestClients, built once per session where they can be.

Two workspaces are built per session, each in pytest's tmp dir (never in the repo):
- the cheap one, `demo:llama2` student with two teachers (`demo:llama3`, `demo:mistral-v1`), for most API
  tests; it is kept read-only (tests that edit open `fresh_workspace()`, a copy of its W files with an
  empty edit database);
- the issue's demo, `demo:llama3` student with `demo:qwen3` teacher, for the must-show cases.

Workspaces here load their vocabularies through conftest's cached `vocab()` (a 128k vocabulary takes a
second or two to load); nothing else about them differs from what `xtoken-align serve` opens.
Test modules pull these in with `pytest_plugins = ["web_fixtures"]` and import its helpers, so it is
imported before pytest could rewrite its asserts: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import vocab
from fastapi import FastAPI
from fastapi.testclient import TestClient

import webapp.workspace
from webapp.app import create_app
from webapp.settings import Settings
from webapp.workspace import Workspace
from xtoken_align.vocab import Vocab

STUDENT = "demo:llama2"
TEACHERS = ("demo:llama3", "demo:mistral-v1")
TEACHER_KEYS = ("llama3", "mistral-v1")
DEMO_STUDENT, DEMO_TEACHER = "demo:llama3", "demo:qwen3"


def cached_vocab(source: str) -> Vocab:
    """`load_vocab` for demo names, memoised for the session."""
    assert source.startswith("demo:"), source
    return vocab(source.removeprefix("demo:"))


def quiet(message: str) -> None:
    pass


def settings_for(folder: Path, student: str = STUDENT, teachers: tuple[str, ...] = TEACHERS, **limits) -> Settings:
    return Settings(folder, student, teachers, **limits)


@pytest.fixture(scope="session")
def _cached_vocabs() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webapp.workspace, "load_vocab", cached_vocab)
        yield


@pytest.fixture(scope="session")
def web_workspace(tmp_path_factory, _cached_vocabs) -> Workspace:
    """The cheap workspace (llama2 student; llama3 and mistral-v1 teachers). Read-only for tests."""
    return Workspace(tmp_path_factory.mktemp("web-base"), STUDENT, list(TEACHERS), log=quiet)


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
    return Workspace(folder, STUDENT, list(TEACHERS), log=quiet)


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
def demo_workspace(tmp_path_factory, _cached_vocabs) -> Workspace:
    """The issue's demo pair, Llama-3 student and Qwen3 teacher (builds W: about ten seconds)."""
    return Workspace(tmp_path_factory.mktemp("web-demo"), DEMO_STUDENT, [DEMO_TEACHER], log=quiet)


@pytest.fixture(scope="session")
def demo_client(demo_workspace) -> TestClient:
    return client_for(demo_workspace)
