"""Curation in a real headless Chromium against a real `serve --demo` (Llama-3 student, Qwen3 teacher):
a bulk edit on the unmatched three-digit numerals (preview, apply, undo) and a rules-panel change
(score preview, then a rebuild that keeps a hand edit). The two touch different rows, so they hold in
either order on the one server."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_fixtures import api_row, student_id
from playwright.sync_api import Page, expect
from web_fixtures import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("curation") / "workspace", "--demo")
    yield running.url
    running.stop()


def test_bulk_first_digit_on_unmatched_three_digit_numerals(page: Page, server: str, artifacts: Path) -> None:
    numeral = student_id(page, server, "201")
    before = api_row(page, server, numeral)["row"]
    assert len(before) == 3
    page.goto(f"{server}/#/vocab?teacher=qwen3&category=digits:3&matched=false")
    expect(page.locator("p.count")).to_have_text("1,000 tokens")
    page.locator("[data-bulk] summary").click()
    page.locator("[data-bulk-action]").select_option("leading")
    page.locator("[data-param=beta]").fill("1")
    page.locator("[data-param=gamma]").fill("0")
    page.locator("[data-bulk-preview]").click()
    expect(page.locator("[data-bulk-summary]")).to_contain_text("990 of 1,000 selected rows change")
    expect(page.locator(".bulk-sample tbody tr")).to_have_count(20)
    assert api_row(page, server, numeral)["row"] == before  # a preview writes nothing
    page.screenshot(path=artifacts / "bulk-preview.png", full_page=True)

    page.locator("[data-bulk-apply]").click()
    expect(page.locator("[data-bulk-applied]")).to_contain_text("990 rows changed as one edit")
    after = api_row(page, server, numeral)["row"]
    assert [(e["display"], e["weight"]) for e in after] == [("2", 1.0)]
    page.screenshot(path=artifacts / "bulk-applied.png", full_page=True)

    page.locator("[data-bulk-undo]").click()
    expect(page.locator("[data-bulk-undone]")).to_contain_text("990 rows are back")
    assert api_row(page, server, numeral)["row"] == before
    page.screenshot(path=artifacts / "bulk-undone.png", full_page=True)


def test_rules_panel_preview_and_a_rebuild_that_keeps_a_hand_edit(page: Page, server: str, artifacts: Path) -> None:
    word = student_id(page, server, "Hello")
    row = api_row(page, server, word)
    body = {"entries": [{"teacher_id": row["row"][0]["teacher_id"], "weight": 3}, {"teacher_id": 100, "weight": 1}],
            "version": row["version"], "note": "hand edit"}  # fmt: skip
    assert page.request.put(f"{server}/api/teachers/qwen3/rows/{word}", data=body).ok
    page.goto(f"{server}/#/rules?teacher=qwen3")
    expect(page.locator(".rules-list li")).to_have_count(7)  # the five default rules, fuzzy and reverse off
    page.locator("[data-param='multitoken.gamma']").fill("0")
    page.locator("[data-param='multitoken.beta']").fill("1")
    page.locator("[data-rebuild-preview]").click()
    summary = page.locator("[data-rebuild-summary]")
    expect(summary).to_contain_text("· 1 hand edits carried over · 0 no longer apply", timeout=60_000)
    expect(page.locator("[data-score-preview] [data-metric='mass@1']")).to_be_visible()
    expect(page.locator("[data-score-preview] [data-category='mixed']")).to_be_visible()  # multitoken rows moved
    page.screenshot(path=artifacts / "rules-preview.png", full_page=True)
    assert page.request.get(f"{server}/api/teachers/qwen3/rules").json()["rebuilds"] == []  # nothing yet

    page.locator("[data-rebuild]").click()
    expect(page.locator("[data-rebuilt]")).to_contain_text("Rebuild 1 done", timeout=60_000)
    rules = page.request.get(f"{server}/api/teachers/qwen3/rules").json()
    multitoken = next(r for r in rules["config"]["rules"] if r["name"] == "multitoken")
    assert (multitoken["beta"], multitoken["gamma"]) == (1.0, 0.0) and len(rules["rebuilds"]) == 1
    kept = api_row(page, server, word)["row"]
    assert [e["weight"] for e in kept] == pytest.approx([0.75, 0.25])  # the hand edit survived the rebuild
    page.screenshot(path=artifacts / "rules-rebuilt.png", full_page=True)
