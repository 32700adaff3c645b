"""The Northwind Logistics sample SOPs in examples/ parse into complete procedures."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "northwind"
FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".md", ".docx", ".pdf", ".txt"))


def test_the_demo_has_markdown_docx_and_pdf_samples() -> None:
    suffixes = [p.suffix for p in FILES]
    assert len(FILES) >= 6
    assert suffixes.count(".md") >= 3 and ".docx" in suffixes and ".pdf" in suffixes


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_example_is_a_structured_sop(path: Path, read_doc, blocks, headed) -> None:
    doc = read_doc(path)
    titles = [s.title.lower() for s in headed(doc)]
    assert any("purpose" in t for t in titles) and any("scope" in t for t in titles)
    assert sum(1 for s in headed(doc) if s.body()) >= 4
    kinds = {b.kind for b in blocks(doc)}
    assert {"ordered", "unordered"} <= kinds
    assert not doc.warnings


def _steps(doc, section_fn, title: str) -> list[str]:
    _, sec = section_fn(doc, title)
    return [i for b in sec.blocks if b.kind == "ordered" for i in b.items]


def _table(doc, section_fn, title: str) -> list[list[str]]:
    _, sec = section_fn(doc, title)
    (table,) = [b for b in sec.blocks if b.kind == "table"]
    return table.rows


def test_expense_thresholds(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "expense-claims.md")
    assert _table(doc, section, "Approval limits")[1] == [
        "Up to £250",
        "Line manager",
        "3 working days",
    ]
    steps = _steps(doc, section, "Procedure")
    assert len(steps) == 7 and "within 30 days" in steps[0] and "over £10" in steps[1]


def test_lost_badge_steps(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "lost-badge-building-access.md")
    assert doc.title == "Lost Badge and Building Access"
    steps = _steps(doc, section, "reporting a lost or stolen badge")
    assert steps[0].startswith("The badge holder calls the Security Desk on extension 4400")
    assert "within 1 hour" in steps[0]
    assert "temporary badge valid for 5 working days" in steps[4]


def test_incident_response_deadlines(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "incident-response.md")
    steps = _steps(doc, section, "Procedure")
    assert len(steps) == 10
    assert "within 4 hours" in steps[6] and "within 72 hours" in steps[6]
    assert _table(doc, section, "Severity levels")[1][2] == "15 minutes"
    assert "Owner: Head of IT Security. Review" not in doc.render()[0]  # HTML comment


def test_forklift_docx(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "forklift-safety.docx")
    assert doc.format == "docx" and doc.title == "Forklift Truck Safety"
    steps = _steps(doc, section, "Daily pre-use check")
    assert len(steps) == 6 and steps[4].startswith("Check the battery charge is above 30%")
    path, _ = section(doc, "6.1 Speed and driving")
    assert path == ("6. Operating rules", "6.1 Speed and driving")
    assert _table(doc, section, "Inspection and maintenance")[2] == [
        "Planned service",
        "Every 500 operating hours",
        "Maintenance team",
    ]


def test_backup_pdf(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "data-backup-restore.pdf")
    assert doc.format == "pdf" and doc.title == "Data Backup and Restore"
    assert [s.title for s in doc.sections][:3] == ["1. Purpose", "2. Scope", "3. Roles"]
    steps = _steps(doc, section, "Requesting a restore")
    assert len(steps) == 5 and steps[2].startswith(
        "The backup operator restores the data to a separate"
    )
    assert _table(doc, section, "Backup tiers")[1] == [
        "Tier 1",
        "WMS, route planner",
        "Every 4 hours",
        "4 hours",
    ]
    path, _ = section(doc, "5.2 Retention")
    assert path == ("5. Backup schedule and retention", "5.2 Retention")
    text, _ = doc.render()
    assert "Page 1 of" not in text and "Northwind Logistics - Data Backup" not in text


def test_visitor_plain_text(read_doc, section) -> None:
    doc = read_doc(EXAMPLES / "visitor-sign-in.txt")
    assert doc.title == "VISITOR SIGN-IN PROCEDURE"
    steps = _steps(doc, section, "PROCEDURE")
    assert len(steps) == 5 and steps[3].endswith("escorts them at all times on site.")
