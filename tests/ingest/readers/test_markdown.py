"""Markdown reader: corpus documents and the site-generator noise real handbooks carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sopforge.ingest.readers import read_document

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus"
MDS = sorted((CORPUS / "md").glob("*.md")) if (CORPUS / "md").is_dir() else []
needs_corpus = pytest.mark.skipif(not MDS, reason="shared corpus not available")

# Checked by hand: these files have fewer than three headings (so many headed sections), or
# no list outside an HTML table.
FEW_SECTIONS = {"18f_travel_reimbursement": 1, "pagerduty_severity_levels": 0}
NO_LISTS = {"basecamp_managing_work_devices", "pagerduty_severity_levels"}


def _md(text: str, name: str = "doc.md"):
    return read_document(name, data=text.encode())


@needs_corpus
@pytest.mark.parametrize("path", MDS, ids=[p.stem for p in MDS])
def test_every_corpus_markdown_file(path: Path, read_doc, blocks, headed) -> None:
    doc = read_doc(path)
    with_body = [s for s in headed(doc) if s.body().strip()]
    if path.stem in FEW_SECTIONS:
        assert len(with_body) == FEW_SECTIONS[path.stem]
        assert sum(len(b.plain_text()) for b in blocks(doc)) > 1000
    else:
        assert len(with_body) >= 3
    has_list = any(b.kind in ("ordered", "unordered") for b in blocks(doc))
    assert has_list == (path.stem not in NO_LISTS)
    text, _ = doc.render()
    for noise in ("{%", "{{", "<!--", "](", "![", "---\ntitle"):
        assert noise not in text, noise


@needs_corpus
def test_front_matter_title_and_liquid_links(read_doc, section) -> None:
    doc = read_doc(CORPUS / "md" / "18f_travel_reimbursement.md")
    assert doc.title == "Get reimbursed"
    _, overview = section(doc, "Brief overview of vouchers")
    assert "by creating a voucher in Concur." in overview.body()
    (choices,) = [b for b in overview.blocks if b.kind == "unordered"]
    assert choices.items[1].startswith("For any local travel choose the Local voucher option.")


@needs_corpus
def test_html_table_and_admonitions_in_markdown(read_doc, blocks) -> None:
    doc = read_doc(CORPUS / "md" / "pagerduty_severity_levels.md")
    (table,) = [b for b in blocks(doc) if b.kind == "table"]
    assert table.rows[0] == ["Severity", "Description", "Typical Response"]
    assert table.rows[1][0] == "SEV-1"
    text = doc.render()[0]
    assert "Always Assume The Worst: If you are unsure which level" in text
    assert "!!!" not in text


@needs_corpus
def test_pandoc_heading_attributes_and_images(read_doc) -> None:
    doc = read_doc(CORPUS / "md" / "faylab_offboarding.md")
    assert doc.title == "Offboarding"
    assert "adventure.jpg" not in doc.render()[0]


def test_structure_of_a_small_document() -> None:
    doc = _md(
        """---
title: Lost badge
owner: Security
---

Intro paragraph with a [link](https://example.com) and ![logo](logo.png) image.

<!-- reviewers: remove before publishing -->

## Report it

1. Call **security** on `4400`.
2. Get a temporary badge:
   - bring photo ID
   - sign the log
3. Collect the new badge.

### Fees

| Loss | Fee |
|------|-----|
| First | none |
| Second | £15 |

## Notes {#notes}

{% include "banner.html" %}
Wear the badge at all times.

```
badge --deactivate 123
```
"""
    )
    assert doc.title == "Lost badge"
    assert doc.preamble[0].text == "Intro paragraph with a link and image."
    report, notes = doc.sections
    assert (report.title, report.level, notes.title) == ("Report it", 1, "Notes")
    assert report.blocks[0].items == [
        "Call security on `4400`.",
        "Get a temporary badge: bring photo ID; sign the log",
        "Collect the new badge.",
    ]
    fees = report.children[0]
    assert fees.level == 2 and fees.blocks[0].rows == [
        ["Loss", "Fee"],
        ["First", "none"],
        ["Second", "£15"],
    ]
    assert notes.blocks[0].text == "Wear the badge at all times."
    assert notes.blocks[1].kind == "code" and notes.blocks[1].text == "badge --deactivate 123"
    assert "reviewers" not in doc.render()[0]


def test_single_h1_becomes_title_and_h2s_sections() -> None:
    doc = _md(
        "# Expense claims\n\nLead text.\n\n## Limits\n\nUp to £250.\n\n## Deadlines\n\n30 days.\n"
    )
    assert doc.title == "Expense claims"
    assert [b.text for b in doc.preamble] == ["Lead text."]
    assert [(s.title, s.level) for s in doc.sections] == [("Limits", 1), ("Deadlines", 1)]


def test_document_without_headings_is_all_preamble() -> None:
    doc = _md("Just a paragraph.\n\n- and a list\n", name="quick-note.md")
    assert doc.title == "Quick note" and doc.sections == []
    assert doc.preamble[1].items == ["and a list"]
    assert [path for path, _ in doc.iter_sections()] == [("Overview",)]


def test_empty_sections_are_dropped_but_parents_with_children_kept() -> None:
    doc = _md("# T\n\n## Empty\n\n## Parent\n\n### Child\n\nText.\n")
    assert [s.title for s in doc.sections] == ["Parent"]
    assert doc.sections[0].children[0].title == "Child"
