"""The UI in a real headless Chromium (Debian's package, driven by Playwright) against a real server.

Screenshots go to $XTOKEN_ALIGN_ARTIFACTS (CI sets it to ./artifacts), else to pytest's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import TOKENIZERS
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workspace: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "webapp.cli", "serve", "--workspace", str(workspace), "--port", str(port), *args]
    log = open(workspace.parent / f"{workspace.name}.log", "w")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((workspace.parent / f"{workspace.name}.log").read_text())
        try:
            if httpx.get(f"{url}/api/meta", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not start")


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


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    process, url = start_server(tmp_path_factory.mktemp("demo") / "workspace", "--demo")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_search_open_edit_reload(page: Page, demo_server: str, artifacts: Path) -> None:
    page.goto(f"{demo_server}/#/vocab")
    search = page.locator("[data-search]")
    search.fill("345")
    search.press("Enter")
    row = page.locator("table.vocab tbody tr", has_text="345").first
    expect(row).to_be_visible()
    page.screenshot(path=artifacts / "vocab-search-345.png")
    row.click()
    editor = page.locator("form.editor")
    expect(editor).to_be_visible()
    pieces = editor.locator("tbody tr td:first-child code")
    expect(pieces).to_have_text(["3", "4", "5"])
    weights = editor.locator("input[data-teacher-id]")
    expect(weights.first).to_have_value("0.9009009003639221")
    page.screenshot(path=artifacts / "token-345-before.png")

    weights.nth(0).fill("0.5")
    weights.nth(1).fill("0.3")
    weights.nth(2).fill("0.2")
    editor.locator("input[aria-label=note]").fill("browser test")
    editor.get_by_role("button", name="Save row").click()
    expect(editor.locator("p", has_text="saved: version")).to_be_visible()

    page.reload()
    weights = page.locator("form.editor input[data-teacher-id]")
    expect(weights).to_have_count(3)
    assert [float(weights.nth(i).input_value()) for i in range(3)] == pytest.approx([0.5, 0.3, 0.2])
    expect(page.locator("form.editor tbody td", has_text="edit").first).to_be_visible()
    page.screenshot(path=artifacts / "token-345-after-reload.png")


def test_pair_view_and_keyboard(page: Page, demo_server: str, artifacts: Path) -> None:
    page.goto(f"{demo_server}/#/pair?text={quote('She sold 201 clips.')}")
    student = page.locator(".tokens.student .tok")
    expect(student).to_have_text(["She", "·sold", "·", "201", "·clips", "."])
    expect(page.locator(".tokens.teacher .tok")).to_have_text(["She", "·sold", "·", "2", "0", "1", "·clips", "."])
    student.nth(3).focus()  # keyboard: focusing a token shows its W row
    panel = page.locator(".row-panel")
    expect(panel.locator("tbody tr")).to_have_count(3)
    expect(page.locator(".tokens.teacher .tok.lit")).to_have_count(3)
    page.screenshot(path=artifacts / "pair-201.png")
    token_id = student.nth(3).get_attribute("data-id")
    student.nth(3).press("Enter")
    expect(page).to_have_url(f"{demo_server}/#/token/student/{token_id}?teacher=qwen3")


def test_diagnosis_and_export_pages(page: Page, demo_server: str, artifacts: Path) -> None:
    page.goto(f"{demo_server}/#/diagnosis")
    expect(page.locator(".card .recommendation")).to_have_text("P-KL", timeout=60_000)
    expect(page.locator(".chart .main-svg").first).to_be_visible(timeout=30_000)  # plotly drew from /vendor
    page.screenshot(path=artifacts / "diagnosis.png", full_page=True)
    page.goto(f"{demo_server}/#/export")
    with page.expect_download() as download:
        page.get_by_text("CSV table").click()
    assert download.value.suggested_filename.endswith(".csv")


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    """A student tokenizer whose pieces are HTML/JS payloads."""
    from tokenizers import AddedToken, Tokenizer

    folder = tmp_path_factory.mktemp("hostile")
    tokenizer = Tokenizer.from_file(str(TOKENIZERS / "llama2" / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken(p, special=False, normalized=False) for p in PAYLOADS])
    tokenizer.save(str(folder / "tokenizer.json"))
    shutil.copyfile(TOKENIZERS / "llama2" / "tokenizer_config.json", folder / "tokenizer_config.json")
    process, url = start_server(folder / "workspace", "--student", str(folder), "--teacher", "demo:llama2")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_hostile_token_strings_render_as_text(page: Page, hostile_server: str, artifacts: Path) -> None:
    text = "Look: " + " ".join(PAYLOADS)
    page.goto(f"{hostile_server}/#/pair?text={quote(text)}")
    expect(page.locator(".tokens.student .tok", has_text="<script>")).to_have_count(1)
    page.screenshot(path=artifacts / "hostile-pair.png")
    page.goto(f"{hostile_server}/#/vocab?q=onerror")
    expect(page.locator("table.vocab tbody tr")).to_have_count(1)
    page.locator("table.vocab tbody tr").click()
    expect(page.locator("h1 code")).to_contain_text("onerror")
    page.screenshot(path=artifacts / "hostile-token.png")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img, svg[onload], script:not([src])").count() == 0
