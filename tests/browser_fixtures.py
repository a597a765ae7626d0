"""Fixtures of the browser tests: Debian's chromium driven by Playwright, one per test module, a
fresh page per test (which fails the test on any page error), the screenshots' folder, and the
API look-ups the browser tests share.

Screenshots go to $XTOKEN_ALIGN_ARTIFACTS (CI sets it to ./artifacts), else to pytest's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("XTOKEN_ALIGN_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Debian's chromium package is needed (make test installs it)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


def student_id(page: Page, url: str, piece: str) -> int:
    """The Llama-3 student id of `piece`, found through the server's own search."""
    found = page.request.get(f"{url}/api/vocab/student", params={"teacher": "qwen3", "q": piece, "limit": 100}).json()
    return next(t["id"] for t in found["data"] if t["piece"] == piece)


def api_row(page: Page, url: str, sid: int) -> dict:
    """The student token's detail (its W row and version) for the Qwen3 teacher."""
    return page.request.get(f"{url}/api/tokens/student/{sid}", params={"teacher": "qwen3"}).json()
