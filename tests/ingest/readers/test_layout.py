"""Structure recovery from lines (shared by the PDF and plain-text readers), on synthetic lines."""

from __future__ import annotations

import pytest

from sopforge.ingest.document import Block
from sopforge.ingest.readers.common import Heading, assemble, decode_text, flatten_item, slugify
from sopforge.ingest.readers.layout import (
    Line,
    drop_toc,
    heading_number,
    join_lines,
    lines_to_elements,
    match_marker,
)
from sopforge.ingest.readers.pdf import (
    _collapse_letterspacing,
    _collapse_overprint,
    _drop_page_furniture,
)


@pytest.mark.parametrize(
    ("text", "kind", "rest"),
    [
        ("1. Call security", "ordered", "Call security"),
        ("2) Sign the log", "ordered", "Sign the log"),
        ("a) Check tyres", "ordered", "Check tyres"),
        ("(iv) Report it", "ordered", "Report it"),
        ("ii. Escalate", "ordered", "Escalate"),
        ("4.1.2 Users must rotate keys", "ordered", "Users must rotate keys"),
        ("Step 3: Restart the service", "ordered", "Restart the service"),
        ("B12 - Isolate the host", "ordered", "Isolate the host"),
        ("• Wear goggles", "unordered", "Wear goggles"),
        ("•Form a team", "unordered", "Form a team"),
        ("\uf0b7 Wingdings bullet", "unordered", "Wingdings bullet"),
        ("\uf0a7 Square bullet", "unordered", "Square bullet"),
        ("\uf0d8 Arrow bullet", "unordered", "Arrow bullet"),
        ("▪ Small square", "unordered", "Small square"),
        ("– Dash item", "unordered", "Dash item"),
        ("o Courier sub-bullet", "unordered", "Courier sub-bullet"),
    ],
)
def test_list_markers(text: str, kind: str, rest: str) -> None:
    marker = match_marker(text)
    assert marker is not None and marker.kind == kind and marker.text == rest


@pytest.mark.parametrize(
    "text", ["e.g. this is prose", "2012 was a year", "o no marker", "-5 degrees", "Plain text"]
)
def test_not_list_markers(text: str) -> None:
    assert match_marker(text) is None


def test_symbol_font_letter_is_a_bullet() -> None:
    assert match_marker("x Access is permitted", symbol_lead=True).kind == "unordered"
    assert match_marker("x Access is permitted") is None


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("3.2 Detection", 2),
        ("1.0 Overview", 1),
        ("Section 4 Roles", 1),
        ("Appendix B", 1),
        ("A.1 Scenarios", 2),
        ("7 TRAINING", 1),
    ],
)
def test_heading_numbers(text: str, depth: int) -> None:
    number = heading_number(text)
    assert number is not None and number[0] == depth


def _lines(*specs: tuple) -> list[Line]:
    """(text, size, bold, x) tuples, one line each, 14 points apart, all on page 0."""
    y = 700.0
    out = []
    for spec in specs:
        if spec == "":
            out.append(Line(""))
            continue
        text, size, bold, x = spec
        out.append(Line(text, size=size, bold=bold, x=x, y=y))
        y -= 14
    gap = True
    marked = []
    for line in out:
        if not line.text:
            gap = True
            continue
        line.gap_before = gap
        gap = False
        marked.append(line)
    return marked


def _headings(elements) -> list[str]:
    return [e.text for e in elements if isinstance(e, Heading)]


def test_font_size_bold_and_numbering_make_headings() -> None:
    elements = lines_to_elements(
        _lines(
            ("1. Overview", 14, True, 72),
            (
                "Passwords protect our systems and must be kept secret at all times by",
                11,
                False,
                72,
            ),
            ("every member of staff.", 11, False, 72),
            "",
            ("1.1 Creation", 11, False, 72),
            ("1.1.1 Passwords must be at least twelve characters long and must not", 11, False, 72),
            ("be reused.", 11, False, 108),
            ("1.1.2 Passwords are stored only in the approved manager.", 11, False, 72),
            "",
            ("Exceptions", 11, True, 72),
            ("The Infosec team approves exceptions in advance.", 11, False, 72),
        )
    )
    assert _headings(elements) == ["1. Overview", "1.1 Creation", "Exceptions"]
    doc = assemble(elements, doc_id="d", fmt="pdf", title="Password policy", fallback_title="x")
    overview = doc.sections[0]
    assert overview.blocks[0].text.endswith("at all times by every member of staff.")
    creation = overview.children[0]
    assert creation.blocks[0].kind == "ordered"
    assert creation.blocks[0].items == [
        "Passwords must be at least twelve characters long and must not be reused.",
        "Passwords are stored only in the approved manager.",
    ]
    # Bold outranks regular type of the same size, so "Exceptions" is 1.1's sibling.
    assert [c.title for c in overview.children] == ["1.1 Creation", "Exceptions"]


def test_short_numbered_siblings_are_a_list_not_headings() -> None:
    elements = lines_to_elements(
        _lines(
            ("Devices covered by this procedure:", 11, False, 72),
            ("1. Smartphones", 11, False, 90),
            ("2. Tablets", 11, False, 90),
            ("3. Laptops", 11, False, 90),
        )
    )
    assert _headings(elements) == []
    assert elements[1] == Block("ordered", items=["Smartphones", "Tablets", "Laptops"])


def test_short_bullet_over_deeper_bullets_is_a_subheading() -> None:
    elements = lines_to_elements(
        _lines(
            ("\uf0d8 Installation", 12, False, 72),
            ("\uf0a7 Firewalls shall be configured per the guidelines.", 12, False, 90),
            ("\uf0a7 Logging shall be enabled on all devices which", 12, False, 90),
            ("support it.", 12, False, 108),
            ("\uf0d8 Maintenance", 12, False, 72),
            ("\uf0a7 Passwords are kept in the password safe.", 12, False, 90),
        )
    )
    assert _headings(elements) == ["Installation", "Maintenance"]
    assert elements[1].items == [
        "Firewalls shall be configured per the guidelines.",
        "Logging shall be enabled on all devices which support it.",
    ]


def test_nested_items_flatten_into_their_parent() -> None:
    elements = lines_to_elements(
        _lines(
            ("a) Passwords must contain:", 12, False, 139),
            ("• at least 8 characters", 12, False, 175),
            ("• a digit", 12, False, 175),
            ("b) Passwords must not be shared.", 12, False, 139),
        )
    )
    assert elements == [
        Block(
            "ordered",
            items=[
                "Passwords must contain: at least 8 characters; a digit",
                "Passwords must not be shared.",
            ],
        )
    ]


def test_multi_cell_lines_become_a_table_with_wrapped_cells() -> None:
    lines = _lines(
        ("Category Definition", 11, True, 72),
        ("None No effect on services.", 11, False, 72),
        ("High Organization can no longer provide", 11, False, 72),
        ("critical services.", 11, False, 160),
    )
    lines[0].cells, lines[0].cell_xs = ("Category", "Definition"), (72.0, 150.0)
    lines[1].cells, lines[1].cell_xs = ("None", "No effect on services."), (72.0, 150.0)
    lines[2].cells, lines[2].cell_xs = ("High", "Organization can no longer provide"), (72.0, 150.0)
    (table,) = lines_to_elements(lines)
    assert table.rows == [
        ["Category", "Definition"],
        ["None", "No effect on services."],
        ["High", "Organization can no longer provide critical services."],
    ]


def test_monospaced_lines_are_code() -> None:
    lines = _lines(
        ("Run:", 11, False, 72), ("git add .", 10, False, 90), ("git push", 10, False, 90)
    )
    lines[1].mono = lines[2].mono = True
    assert lines_to_elements(lines)[1] == Block("code", text="git add .\ngit push")


def test_toc_is_dropped() -> None:
    lines = [
        Line(t)
        for t in [
            "Contents",
            "Important Links 2",
            "File Structure . . . . . . 2",
            "Purpose",
            "Text.",
        ]
    ]
    assert [line.text for line in drop_toc(lines)] == ["Purpose", "Text."]
    assert (
        drop_toc([Line("1. Audience ............ 1"), Line("1. Audience")])[0].text == "1. Audience"
    )


def test_running_headers_footers_and_page_numbers_are_dropped() -> None:
    pages = []
    for n in range(1, 4):
        pages.append(
            [
                Line("ACME HANDBOOK", y=780),
                Line(f"Body text of page {n}.", y=400),
                Line(f"Page {n} of 3", y=30),
            ]
        )
    pages[2].append(Line("7", y=20))
    _drop_page_furniture(pages, [(0.0, 842.0)] * 3)
    assert [[line.text for line in p] for p in pages] == [
        [f"Body text of page {n}."] for n in (1, 2, 3)
    ]


def test_text_cleanups() -> None:
    assert join_lines("back-", "up copies") == "back-up copies"
    assert join_lines("end of line", "next") == "end of line next"
    assert _collapse_overprint("Jason KickJason KickJason Kick") == "Jason Kick"
    assert _collapse_letterspacing("S E C U R I T Y   G U I D E") == "SECURITY GUIDE"
    assert flatten_item("Bring:", ["ID", "the form"]) == "Bring: ID; the form"
    assert slugify("Über Policy v2.1") == "uber-policy-v2-1"
    assert decode_text("café".encode("cp1252")) == "café"
