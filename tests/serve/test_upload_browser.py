"""The ingest report in a real browser shows markup in file names and titles as text.

Headless Debian Chromium (Playwright) against the live server, as in test_browser.py: the admin
uploads a document whose file name and title are HTML that would run script if rendered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000

HOSTILE_TITLE = '<img src=x onerror="window.__xss_title=1"> Visitor policy'
DOCUMENT = b"""# &lt;img src=x onerror="window.__xss_title=1"&gt; Visitor policy

## Signing in

Every visitor signs in at the reception desk and wears a visitor badge at all times.

## Escorts

1. Meet your visitor at reception.
2. Escort them in the building.
3. Return the visitor badge at the end of the visit.
"""


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
