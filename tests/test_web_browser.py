"""The UI in a real headless Chromium (Debian's package, driven by Playwright) against a real server.

Screenshots go to $XTOKEN_ALIGN_ARTIFACTS (CI sets it to ./artifacts), else to pytest's tmp dir.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from browser_fixtures import api_row, student_id
from conftest import TOKENIZERS
from playwright.sync_api import Page, expect
from web_fixtures import start_server

from xtoken_align.tokenizer_folder import save_tokenizer_folder

pytestmark = pytest.mark.slow

PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("demo") / "workspace", "--demo")
    yield server.url
    server.stop()


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
    expect(weights.first).to_have_value("0.9009")  # rounded; the full value on focus
    weights.first.focus()
    expect(weights.first).to_have_value("0.9009009003639221")
    weights.first.blur()
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


def rule_cells(page: Page) -> list[str]:
    return page.locator("form.editor tbody tr td:nth-child(3)").all_inner_texts()


def test_only_the_changed_entry_is_marked_edit(page: Page, demo_server: str, artifacts: Path) -> None:
    sid = student_id(page, demo_server, "678")
    before = api_row(page, demo_server, sid)["row"]
    assert len(before) == 3 and "edit" not in {e["rule"] for e in before}
    page.goto(f"{demo_server}/#/token/student/{sid}?teacher=qwen3")
    weights = page.locator("form.editor input[data-teacher-id]")
    expect(weights).to_have_count(3)
    weights.first.fill("0.6")
    assert rule_cells(page) == [f"{before[0]['rule']} → edit", before[1]["rule"], before[2]["rule"]]
    page.once("dialog", lambda dialog: dialog.dismiss())  # the unsaved-changes guard asks; stay
    page.locator("a", has_text="student vocabulary").click()
    expect(page).to_have_url(f"{demo_server}/#/token/student/{sid}?teacher=qwen3")
    expect(weights.first).to_have_value("0.6")
    weights.first.press("Enter")  # Enter saves
    expect(page.locator("[data-status]")).to_contain_text("saved: version 1")
    assert rule_cells(page) == ["edit", before[1]["rule"], before[2]["rule"]]
    after = api_row(page, demo_server, sid)["row"]
    assert [(e["rule"], e["score"]) for e in after[1:]] == [(e["rule"], e["score"]) for e in before[1:]]
    weights.first.press("Enter")  # nothing changed: no new version, no history entry
    expect(page.locator("[data-status]")).to_contain_text("nothing changed")
    weights.nth(1).fill("0.5")
    weights.nth(1).press("Escape")  # Esc reverts
    expect(weights.nth(1)).to_have_value(f"{after[1]['weight']:.4f}")
    page.screenshot(path=artifacts / "token-row-editor-one-edit.png", full_page=True)


def test_add_an_entry_by_typing_a_piece(page: Page, demo_server: str, artifacts: Path) -> None:
    sid = student_id(page, demo_server, "679")
    page.goto(f"{demo_server}/#/token/student/{sid}?teacher=qwen3")
    editor = page.locator("form.editor")
    expect(editor.locator("input[data-teacher-id]")).to_have_count(3)
    search = editor.get_by_label("search the teacher vocabulary to add an entry")
    search.press_sequentially("ello")
    options = editor.locator(".typeahead button[data-add-id]")
    expect(options.first).to_contain_text("ello")
    expect(options.first.locator(".hex")).to_have_text(" 65 6c 6c 6f")  # canonical bytes of `ello`
    page.screenshot(path=artifacts / "token-add-typeahead.png", full_page=True)
    search.press("ArrowDown")  # the keyboard walks the suggestions: down twice, up once is the first
    expect(options.first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(options.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    added = int(options.first.get_attribute("data-add-id"))
    page.keyboard.press("Enter")
    expect(editor.locator(f"input[data-teacher-id='{added}']")).to_be_focused()
    search.fill("9")  # the digit 9 is in the row already: merged, with a notice
    expect(editor.locator(".typeahead button[data-add-id]").first).to_contain_text("9")
    search.press("Enter")
    expect(editor.locator(".notice")).to_contain_text("already in the row: merged")
    expect(editor.locator("input[data-teacher-id]")).to_have_count(4)
    page.screenshot(path=artifacts / "token-add-merged.png", full_page=True)
    editor.get_by_role("button", name="Save row").click()
    expect(editor.locator("[data-status]")).to_contain_text("saved: version 1")
    page.reload()
    row = page.locator(f"form.editor tr[data-teacher-id='{added}']")
    expect(row.locator("td").nth(2)).to_have_text("edit")
    assert added in [e["teacher_id"] for e in api_row(page, demo_server, sid)["row"]]


def test_row_undo_leaves_another_rows_edit_intact(page: Page, demo_server: str, artifacts: Path) -> None:
    a, b = student_id(page, demo_server, "123"), student_id(page, demo_server, "234")
    base_a, base_b = api_row(page, demo_server, a), api_row(page, demo_server, b)
    for sid, base in ((a, base_a), (b, base_b)):  # a first, so b holds the teacher's latest edit
        body = {"entries": [{"teacher_id": base["row"][-1]["teacher_id"], "weight": 1}], "version": 0, "note": "x"}
        assert page.request.put(f"{demo_server}/api/teachers/qwen3/rows/{sid}", data=body).ok
    page.goto(f"{demo_server}/#/token/student/{a}?teacher=qwen3")
    expect(page.locator("form.editor input[data-teacher-id]")).to_have_count(1)
    page.get_by_role("button", name="Undo row").click()
    expect(page.locator("form.editor input[data-teacher-id]")).to_have_count(len(base_a["row"]))
    expect(page.locator("[data-status]")).to_contain_text("undo of this row's last edit: version 2")
    assert api_row(page, demo_server, a)["row"] == base_a["row"]
    assert len(base_a["row"]) > 1 and len(api_row(page, demo_server, b)["row"]) == 1  # b's edit is intact
    page.screenshot(path=artifacts / "token-row-undo.png", full_page=True)
    page.goto(f"{demo_server}/#/history?teacher=qwen3")
    history = page.locator("table.history tbody tr")
    expect(history.first.locator("td").nth(2)).to_contain_text("234")  # names the piece, not just the id
    expect(page.locator("table.history tr.undone").first.locator("td").nth(2)).to_contain_text("123")
    assert page.locator("table.history tr.undone .state").first.get_attribute("title").startswith("undone:")
    expect(history.first.locator("time")).to_be_visible()
    page.screenshot(path=artifacts / "edits-page.png", full_page=True)


def test_teacher_column_is_paged(page: Page, demo_server: str, artifacts: Path) -> None:
    teacher = page.request.get(f"{demo_server}/api/vocab/teacher", params={"teacher": "qwen3", "q": "1", "limit": 50})
    tid = next(t["id"] for t in teacher.json()["data"] if t["piece"] == "1")
    page.goto(f"{demo_server}/#/token/teacher/{tid}?teacher=qwen3")
    rows = page.locator("section.column tbody tr")
    expect(rows).to_have_count(50)
    first = rows.first.inner_text()
    page.get_by_role("button", name="next page of student tokens").click()
    expect(page.locator("section.column .pager .count")).to_contain_text("51–100 of")
    assert rows.first.inner_text() != first
    page.screenshot(path=artifacts / "token-teacher-column.png", full_page=True)


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


def test_diagnosis_links_critical_categories_to_the_impact_order(page: Page, demo_server: str, artifacts: Path) -> None:
    """A critical category on the diagnosis page opens the student vocabulary filtered by it, highest
    impact (corpus frequency × risk) first: Llama-3's three-digit numerals under Qwen3, `100` leading."""
    page.goto(f"{demo_server}/#/diagnosis")
    link = page.locator("a[data-impact-link='digits:3']")
    expect(link).to_be_visible(timeout=60_000)
    expect(page.locator("tr[data-category='digits:3'] .tag")).to_have_text("critical")
    expect(page.locator("a[data-impact-link]")).to_have_count(3)  # digits:1 to digits:3; Llama-3 has no digits:4+
    expect(page.locator("tr[data-category='letters:latin'] a")).to_have_count(0)  # not critical: no link
    page.screenshot(path=artifacts / "diagnosis-impact-links.png", full_page=True)
    link.click()
    expect(page).to_have_url(f"{demo_server}/#/vocab?teacher=qwen3&category=digits%3A3&sort=impact")
    expect(page.locator("select[aria-label='sort ']")).to_have_value("impact")
    expect(page.locator("select[aria-label='order ']")).to_have_value("desc")  # impact reads highest first
    rows = page.locator("table.vocab tbody tr")
    expect(rows).to_have_count(50, timeout=60_000)
    params = {"teacher": "qwen3", "category": "digits:3", "sort": "impact", "limit": 50}
    expected = page.request.get(f"{demo_server}/api/vocab/student", params=params).json()["data"]
    assert rows.evaluate_all("(rows) => rows.map((r) => Number(r.dataset.id))") == [t["id"] for t in expected]
    impacts = page.locator("td.impact").evaluate_all("(cells) => cells.map((c) => Number(c.dataset.impact))")
    assert impacts == sorted(impacts, reverse=True) and impacts[0] > 0
    first = rows.first
    expect(first.locator("td").nth(1)).to_have_text("100")
    expect(first.locator("td.impact")).to_have_attribute("title", re.compile(r"^frequency \d+ × risk 0\.67 = impact"))
    no_horizontal_overflow(page)
    page.screenshot(path=artifacts / "vocab-impact-digits3.png", full_page=True)
    page.locator("select[aria-label='sort ']").select_option("id")  # another key starts in its own order
    expect(page).to_have_url(re.compile(r"#/vocab\?(?!.*order=).*category=digits%3A3&sort=id"))
    expect(page.locator("select[aria-label='order ']")).to_have_value("asc")


VIEWS = {  # name -> (URL hash, what the view shows once it has rendered)
    "overview": ("#/", "table.coverage-matrix tbody tr"),
    "pair": (f"#/pair?text={quote('Natalia sold 48 clips in April, and 12345 in May.')}", ".tokens.student .tok"),
    "vocab": ("#/vocab?q=the", "table.vocab tbody tr"),
    "token": ("#/token/student/1000", "form.editor"),
    "teacher-token": ("#/token/teacher/18", "table.entries tbody tr"),
    "diagnosis": ("#/diagnosis", ".chart .main-svg"),
    "export": ("#/export", "ul.exports li"),
    "history": ("#/history", "table.history"),
    "rules": ("#/rules", ".rules-list li"),
    "diff-without-compare": ("#/diff", "main h1 + p.muted"),  # says how to give a W to compare with
}


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders(page: Page, demo_server: str, artifacts: Path, view: str) -> None:
    """Each view renders without a page error (the `page` fixture checks), an error message or stray text."""
    location, shown = VIEWS[view]
    page.goto(f"{demo_server}/{location}")
    expect(page.locator(shown).first).to_be_visible(timeout=60_000)
    expect(page.locator(".error")).to_have_count(0)
    stray = "[...document.getElementById('main').childNodes].filter((n) => n.nodeType === 3).map((n) => n.data)"
    assert page.evaluate(stray) == []  # e.g. a "null" that replaceChildren wrote as text
    page.screenshot(path=artifacts / f"view-{view}.png", full_page=True)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    """A student tokenizer whose pieces are HTML/JS payloads."""
    from tokenizers import AddedToken, Tokenizer

    folder = tmp_path_factory.mktemp("hostile")
    tokenizer = Tokenizer.from_file(str(TOKENIZERS / "llama2" / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken(p, special=False, normalized=False) for p in PAYLOADS])
    config = json.loads((TOKENIZERS / "llama2" / "tokenizer_config.json").read_text(encoding="utf-8"))
    save_tokenizer_folder(folder, tokenizer, config)
    server = start_server(folder / "workspace", "--student", str(folder), "--teacher", "demo:llama2")
    yield server.url
    server.stop()


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


@pytest.fixture(scope="module")
def diff_server(tmp_path_factory):
    """The demo pair, compared with a copy of its W that has a digit row reweighted and two rows moved."""
    from conftest import vocab

    from xtoken_align.edits import apply_rows
    from xtoken_align.formats import save_projection
    from xtoken_align.projection import RowEntry, build_projection

    folder = tmp_path_factory.mktemp("diff")
    student, teacher = vocab("llama3"), vocab("qwen3")
    base = save_projection(build_projection(student, teacher, progress=False), folder / "W.safetensors")
    projection = build_projection(student, teacher, progress=False)
    sid, word = student.pieces.index("345"), student.pieces.index("Ġthe")
    rows = {
        sid: [RowEntry(e.teacher, w, "edit", w) for e, w in zip(projection.row(sid), [0.5, 0.3, 0.2], strict=True)],
        word: [RowEntry(teacher.pieces.index("Ġa"), 1.0, "edit", 1.0)],
        student.pieces.index("Ġcat"): [RowEntry(teacher.pieces.index("Ġdog"), 0.6, "edit", 0.6),
                                      RowEntry(teacher.pieces.index("Ġcat"), 0.4, "edit", 0.4)],
    }  # fmt: skip
    learned = save_projection(apply_rows(projection, rows), folder / "learned.safetensors")
    server = start_server(folder / "workspace", "--demo", "--projection", str(base), "--compare", f"learned={learned}")
    yield server.url, sid, word
    server.stop()


def test_diff_view(page: Page, diff_server, artifacts: Path) -> None:
    url, sid, word = diff_server
    page.goto(f"{url}/#/diff")
    rows = page.locator("table.diff-rows tbody tr")
    expect(rows).to_have_count(3, timeout=60_000)
    expect(page.locator(".card .recommendation").first).to_have_text("3 of 128,256")
    expect(page.locator(".diff-chart .main-svg").first).to_be_visible(timeout=30_000)  # plotly drew
    expect(rows.first.locator("td").first).to_contain_text("·the")  # moved all its mass: first
    expect(rows.first.locator("td").nth(2)).to_contain_text("exact")
    expect(rows.first.locator("td").nth(3)).to_contain_text("·a")
    page.screenshot(path=artifacts / "diff.png", full_page=True)
    rows.first.locator("a").click()
    expect(page).to_have_url(f"{url}/#/token/student/{word}?teacher=qwen3")
    expect(page.locator("form.editor")).to_be_visible()


def watch_errors(page: Page) -> list[str]:
    """The page errors of `page`, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def no_horizontal_overflow(page: Page) -> None:
    """Nothing sticks out of the viewport sideways (the page does not scroll horizontally)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )


@pytest.fixture(scope="module")
def two_teacher_server(tmp_path_factory):
    """Llama-3 student with the Qwen3 and o200k teachers: the multi-teacher choice of the paper."""
    folder = tmp_path_factory.mktemp("two-teachers") / "workspace"
    server = start_server(folder, "--student", "demo:llama3", "--teacher", "demo:qwen3", "--teacher", "demo:o200k")
    yield server.url
    server.stop()


def test_overview_with_two_teachers(browser, two_teacher_server: str, artifacts: Path) -> None:
    url = two_teacher_server
    for width in (1280, 800):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(f"{url}/")  # the landing view
        cards = page.locator(".cards.overview .card")
        expect(cards).to_have_count(2, timeout=120_000)
        expect(page.locator("nav a.active")).to_have_text("Overview")
        expect(cards.nth(0).locator("h2")).to_contain_text("qwen3")
        expect(cards.nth(1).locator("h2")).to_contain_text("o200k")
        expect(cards.nth(0).locator(".recommendation")).to_have_text("P-KL")
        expect(cards.first.locator("[data-metric=agreement]")).to_contain_text("mass@1")
        expect(cards.first.locator("[data-metric=edits]")).to_have_text("none")
        expect(cards.first.locator(".sev.critical").first).to_be_visible()
        matrix = page.locator("table.coverage-matrix")
        expect(matrix.locator("thead th")).to_have_text(["category", "tokens", "qwen3", "o200k"])
        expect(matrix.locator("tr.critical-row")).to_have_count(3)  # Llama-3 has digits:1 to digits:3
        assert matrix.locator("td.num.critical").count() > 0 and matrix.locator("td.num.ok").count() > 0
        expect(page.locator("header a[href='/docs']")).to_be_visible()
        no_horizontal_overflow(page)
        page.screenshot(path=artifacts / f"overview-two-teachers-{width}.png", full_page=True)
        context.close()
        assert not errors, errors
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/")
    row = page.locator("table.coverage-matrix tr[data-category='digits:3']")
    row.locator("td a").nth(1).click()  # o200k's share of digits:3 opens its vocabulary filtered by it
    expect(page).to_have_url(f"{url}/#/vocab?teacher=o200k&category=digits%3A3")
    expect(page.locator("select[aria-label='category ']")).to_have_value("digits:3")
    expect(page.locator("table.vocab tbody tr").first).to_be_visible()
    page.goto(f"{url}/")
    page.locator(".card").nth(1).get_by_role("link", name="Diagnosis").click()
    expect(page).to_have_url(f"{url}/#/diagnosis?teacher=o200k")
    page.close()


@pytest.mark.parametrize("width", [1280, 800])
def test_vocab_and_pair_fit_the_width(browser, demo_server: str, artifacts: Path, width: int) -> None:
    """Readable at 1280 px, usable at 800 px: no sideways overflow; the glyph legend beside the tokens;
    the same colour for the same chunk on both sides of the pair view."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors = watch_errors(page)
    for name, query in [("longest", "sort=length&order=desc"), ("digits", "category=digits%3A3&q=20")]:
        page.goto(f"{demo_server}/#/vocab?{query}")  # the longest pieces; rows of three entries
        expect(page.locator("table.vocab tbody tr").first).to_be_visible(timeout=60_000)
        expect(page.locator("[data-legend=whitespace]")).to_contain_text("space")
        page.screenshot(path=artifacts / f"vocab-{name}-{width}.png", full_page=True)
        no_horizontal_overflow(page)
    page.goto(f"{demo_server}/#/pair?text={quote('She sold 201 clips.')}")
    teacher = page.locator(".tokens.teacher .tok")
    expect(teacher).to_have_count(8)
    expect(page.locator("[data-legend=whitespace]")).to_be_visible()
    colours = (
        "(side) => [...document.querySelectorAll(`.tokens.${side} .tok`)]"
        ".map((t) => [t.dataset.chunk, t.style.background])"
    )
    student, teacher = dict(page.evaluate(colours, "student")), page.evaluate(colours, "teacher")
    assert all(student[chunk] == background for chunk, background in teacher)  # '201' vs '2' '0' '1' too
    assert len(set(student.values())) == len(student)  # neighbouring chunks differ
    no_horizontal_overflow(page)
    page.screenshot(path=artifacts / f"pair-{width}.png", full_page=True)
    page.goto(f"{demo_server}/#/diagnosis")
    expect(page.locator(".chart .main-svg").first).to_be_visible(timeout=60_000)
    page.screenshot(path=artifacts / f"diagnosis-{width}.png", full_page=True)
    page.close()
    assert not errors, errors


def test_toasts_stay_on_their_page(page: Page, demo_server: str) -> None:
    page.goto(f"{demo_server}/#/pair")
    expect(page.locator(".tokens.student .tok").first).to_be_visible(timeout=60_000)
    page.evaluate("import('/static/dom.js').then((dom) => dom.toast('Row saved'))")
    expect(page.locator("#toast.show")).to_have_text("Row saved")
    page.locator("nav a[data-view=vocab]").click()
    expect(page.locator("table.vocab tbody tr").first).to_be_visible(timeout=60_000)
    expect(page.locator("#toast.show")).to_have_count(0)
