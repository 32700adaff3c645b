"""The UI as people use it: headless Debian Chromium driven by Playwright against a live server.

Employee: signs in, asks, watches the answer stream in with its source, sees no Admin tab, and the
admin API refuses their session. Admin: signs in, uploads a document and a broken one, and reads
the ingest report with the per-file error. With CI=true a missing Chromium fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Any:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def contexts(browser: Any) -> Any:
    """New browser contexts (one per person), closed before the server stops."""
    opened: list[Any] = []

    def new() -> Any:
        opened.append(browser.new_context())
        return opened[-1]

    yield new
    for c in opened:
        c.close()


def sign_in(contexts: Any, server: Any, name: str) -> Any:
    page = contexts().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url + "/")  # no session yet: sent to the sign-in form
    page.wait_for_url("**/login")
    page.fill("#username", name)
    page.fill("#password", server.passwords[name])
    page.click("#login")
    page.wait_for_url("**/ui/")
    page.wait_for_selector("#question textarea")
    page.wait_for_function("document.querySelector('#header')?.innerText.includes('Signed in as')")
    return page


def snapshot(page: Any, name: str) -> None:
    """Screenshots for a person to look at, when SOPFORGE_SCREENSHOTS names a folder."""
    if folder := os.environ.get("SOPFORGE_SCREENSHOTS"):
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


# Records every text length the chat shows while the answer arrives (streaming = many lengths).
WATCH_CHAT = """() => {
  window.__lengths = [];
  const target = document.querySelector('#chatbot');
  new MutationObserver(() => window.__lengths.push(target.innerText.length))
    .observe(target, {subtree: true, childList: true, characterData: true});
}"""


def test_employee_chats_and_cannot_reach_admin(contexts: Any, live_server: Any) -> None:
    page = sign_in(contexts, live_server, "eve")
    assert "eve" in page.inner_text("#header") and "employee" in page.inner_text("#header")
    assert page.get_by_role("tab", name="Admin").count() == 0
    assert page.locator("#ingest").count() == 0

    page.evaluate(WATCH_CHAT)
    page.fill("#question textarea", "I lost my badge, what do I do?")
    page.click("#ask")
    page.wait_for_function("document.querySelector('#chatbot').innerText.includes('Sources:')")
    chat = page.inner_text("#chatbot")
    assert "Report the lost badge" in chat
    assert "[Badge Policy § Lost badge, v" in chat  # the source, with section and version
    assert "Lost badge" in page.inner_text("#sources")
    lengths = page.evaluate("window.__lengths")
    assert len(set(lengths)) >= 3  # the answer grew on screen piece by piece

    snapshot(page, "employee-chat")
    page.locator("#chatbot").get_by_role("button", name="Like", exact=True).last.click()
    page.locator("#status").get_by_text("feedback was recorded").wait_for()
    rows = live_server.ws.db.execute("SELECT user, rating FROM feedback").fetchall()
    assert [tuple(r) for r in rows] == [("eve", 1)]
    status = page.evaluate("fetch('/admin/api/models').then(r => r.status)")
    assert status == 403
    audit = live_server.ws.db.execute("SELECT user, channel, valid FROM audit").fetchall()
    assert [tuple(r) for r in audit] == [("eve", "web", 1)]


def test_admin_uploads_a_document_and_sees_the_ingest_report(
    contexts: Any, live_server: Any, tmp_path: Path
) -> None:
    page = sign_in(contexts, live_server, "ada")
    page.get_by_role("tab", name="Admin").click()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 cut off")
    good = CORPUS / "md" / "18f_piv_card.md"
    with page.expect_response(lambda r: "/upload" in r.url and r.request.method == "POST") as sent:
        page.locator("#upload input[type=file]").set_input_files([str(good), str(broken)])
    assert sent.value.ok
    # Both files listed in the component (Gradio shows names as stem + extension).
    page.wait_for_function(
        "() => { const t = document.querySelector('#upload').textContent;"
        " return t.includes('18f_piv_card') && t.includes('broken'); }"
    )
    page.click("#ingest")
    page.wait_for_function(
        "document.querySelector('#ingest-summary').innerText.includes('2 file(s), 1 error(s)')"
    )
    snapshot(page, "admin-ingest")
    report = page.inner_text("#ingest-report")
    assert "18f_piv_card.md" in report and "new" in report
    assert "broken.pdf" in report and "truncated" in report
    summary = page.inner_text("#ingest-summary")
    assert "train /" in summary and "?" not in summary  # the new dataset's pair counts
    current = live_server.ws.db.execute(
        "SELECT count(*) FROM versions WHERE status='current' AND filename LIKE '%piv%'"
    ).fetchone()[0]
    assert current == 1
    status = page.evaluate("fetch('/admin/api/models').then(r => r.status)")
    assert status == 200


HOSTILE_TITLE = '<img src=x onerror="window.__xss_title=1"> Visitor policy'
DOCUMENT = b"""# &lt;img src=x onerror="window.__xss_title=1"&gt; Visitor policy

## Signing in

Every visitor signs in at the reception desk and wears a visitor badge at all times.

## Escorts

1. Meet your visitor at reception.
2. Escort them in the building.
3. Return the visitor badge at the end of the visit.
"""


def test_markup_in_names_and_titles_is_shown_as_text(
    browser: Any, live_server: Any, tmp_path: Path
) -> None:
    upload = tmp_path / '<img src=x onerror="window.__xss_name=1">.md'
    upload.write_bytes(DOCUMENT)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(live_server.url + "/login")
        page.fill("#username", "ada")
        page.fill("#password", live_server.passwords["ada"])
        page.click("#login")
        page.wait_for_url("**/ui/")
        page.get_by_role("tab", name="Admin").click()
        with page.expect_response(lambda r: "/upload" in r.url and r.request.method == "POST"):
            page.locator("#upload input[type=file]").set_input_files([str(upload)])
        page.click("#ingest")
        page.wait_for_function(
            "document.querySelector('#ingest-summary').innerText.includes('1 file(s), 0 error(s)')"
        )
        report = page.inner_text("#ingest-report")
        assert HOSTILE_TITLE in report  # the title, character for character, as text
        assert "onerror" in report and "new" in report  # the name row (Gradio drops < > in names)
        assert page.locator("#ingest-report img").count() == 0
        assert page.evaluate("[window.__xss_title, window.__xss_name]") == [None, None]
        assert dialogs == []
    finally:
        context.close()
