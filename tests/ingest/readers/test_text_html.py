"""Plain-text and HTML readers."""

from __future__ import annotations

from sopforge.ingest.readers import read_document

PLAIN = """\
FORKLIFT CHARGING

Purpose

This procedure covers charging electric forklift batteries in the
Doncaster depot charging bay.

1. Park the truck in a charging bay and switch it off.
2. Open the battery cover and check the electrolyte level, which
   must be above the plates.
3. Connect the charger and check the green light.

Safety rules

- Wear goggles and gloves.
- No naked flames within 5 metres.

2.1 Records
Log every charge in the charging book.
"""


def test_plain_text_structure() -> None:
    doc = read_document("charging.txt", data=PLAIN.encode())
    assert doc.format == "text"
    assert doc.title == "FORKLIFT CHARGING"
    assert doc.preamble == []
    titles = [s.title for _, s in doc.iter_sections()]
    assert titles == ["Purpose", "Safety rules", "2.1 Records"]
    purpose = doc.sections[0]
    assert purpose.blocks[0].text == (
        "This procedure covers charging electric forklift batteries in the Doncaster depot "
        "charging bay."
    )
    assert purpose.blocks[1].kind == "ordered"
    assert purpose.blocks[1].items[1] == (
        "Open the battery cover and check the electrolyte level, which must be above the plates."
    )
    assert doc.sections[1].blocks[0].items == [
        "Wear goggles and gloves.",
        "No naked flames within 5 metres.",
    ]


def test_markdown_looking_text_uses_the_markdown_reader() -> None:
    doc = read_document("notes.txt", data=b"# Notes\n\n## Steps\n\n1. one\n2. two\n")
    assert doc.format == "text"
    assert doc.sections[0].blocks[0].items == ["one", "two"]


def test_text_toc_lines_are_dropped() -> None:
    text = "Contents\n1 Scope ........ 2\n2 Steps ........ 3\n\n1 SCOPE\n\nAll depots.\n\n2 STEPS\n\nDo it.\n"
    doc = read_document("x.txt", data=text.encode())
    assert [s.title for s in doc.sections] == ["1 SCOPE", "2 STEPS"]


def test_html_nested_lists_definition_and_inline_markup() -> None:
    html = """<html><body><main>
    <h2>Returns</h2>
    <p>Goods come back to the <em>returns cage</em>.<br>Check them daily.</p>
    <ul><li>Damaged
          <ul><li>photograph</li><li>quarantine</li></ul></li>
        <li>Wrong item</li></ul>
    <div>Loose text in a div.</div>
    <pre>scan --returns</pre>
    <footer>Company footer</footer>
    </main></body></html>"""
    doc = read_document("returns.htm", data=html.encode())
    # The only heading of a page without <title> names the document.
    assert doc.title == "Returns" and doc.sections == []
    returns = doc.all_sections()[0]
    kinds = [b.kind for b in returns.blocks]
    assert kinds == ["paragraph", "unordered", "paragraph", "code", "paragraph"]
    assert returns.blocks[0].text == "Goods come back to the returns cage. Check them daily."
    assert returns.blocks[1].items == ["Damaged: photograph; quarantine", "Wrong item"]
    assert returns.blocks[3].text == "scan --returns"
