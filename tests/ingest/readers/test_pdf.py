"""PDF reader on the real corpus: structure recovered from font sizes, numbering and glyphs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sopforge.ingest.errors import ScannedPDFError
from sopforge.ingest.readers import read_document

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus"
PDFS = sorted((CORPUS / "pdf").glob("*.pdf")) if (CORPUS / "pdf").is_dir() else []
# Parsing these takes more than a second or two each; they run with the integration tests.
HEAVY = {
    "nist_sp800-61r2_incident_handling_guide.pdf",
    "iiroc_cyber_incident_management_planning_guide.pdf",
}

needs_corpus = pytest.mark.skipif(not PDFS, reason="shared corpus not available")


def _params(paths: list[Path]) -> list:
    return [
        pytest.param(p, id=p.stem, marks=[pytest.mark.integration] if p.name in HEAVY else [])
        for p in paths
    ]


def _pdf(name: str) -> Path:
    return CORPUS / "pdf" / name


@needs_corpus
@pytest.mark.parametrize("path", _params(PDFS))
def test_every_corpus_pdf_has_sections_and_lists(path: Path, read_doc, blocks, headed) -> None:
    doc = read_doc(path)
    assert doc.format == "pdf" and doc.pages > 0
    with_body = [s for s in headed(doc) if s.body().strip()]
    assert len(with_body) >= 3, [s.title for s in headed(doc)]
    assert any(b.kind in ("ordered", "unordered") for b in blocks(doc))
    text, _ = doc.render()
    # Tables of contents are skipped: no dot leaders survive.
    assert not re.search(r"(?:\. ?){6,}\d", text)
    # Symbol-font glyphs never leak into the text.
    assert not re.search("[\ue000-\uf8ff]", text)


@needs_corpus
def test_wingdings_bullets_become_list_items_without_glyph(read_doc, section) -> None:
    doc = read_doc(_pdf("tsd1002_firewall_management_policy_procedures.pdf"))
    assert doc.title == "Firewall Management Policy"
    _, maintenance = section(doc, "Maintenance")
    (bullets,) = [b for b in maintenance.blocks if b.kind == "unordered"]
    assert len(bullets.items) == 6
    assert (
        "Audit logs shall be stored on clearly labeled media, and must be retained for at least 12 months."
        in bullets.items
    )
    # The \uf0d8 arrow bullets that introduce a bullet list became headings.
    titles = [s.title for s in doc.sections]
    assert titles == [
        "Preinstallation",
        "Installation",
        "Configuration Changes",
        "Maintenance",
        "Compliance",
    ]
    # Top-level \uf076 bullets before the first heading are a list in the preamble.
    assert doc.preamble[0].kind == "unordered"
    assert doc.preamble[0].items[0] == "Policy Title - Firewall Management"
    # Running footers (page number, date) are gone.
    assert "8/21/07" not in doc.render()[0]


@needs_corpus
def test_numbered_procedure_becomes_ordered_list_across_pages(read_doc, section) -> None:
    doc = read_doc(_pdf("yale_mukherjee_lab_website_sop.pdf"))
    _, members = section(doc, "Adding New Members")
    (steps,) = [b for b in members.blocks if b.kind == "ordered"]
    assert len(steps.items) == 9
    assert steps.items[0].startswith(
        "Send the “Lab Members” Qualtrics survey to the new lab member."
    )
    # Step 5 wraps over three lines and step 3 starts a new page: both stay whole.
    assert steps.items[4].endswith("“content/images/headshots-people” directories.")
    assert steps.items[2].startswith("Click the")
    _, structure = section(doc, "File Structure")
    assert structure.blocks[0].kind == "code" and "mukherjee-lab/" in structure.blocks[0].text


@needs_corpus
def test_lettered_items_under_numbered_subheading_with_nested_bullets(read_doc, section) -> None:
    doc = read_doc(_pdf("nhf_it_policy_and_procedure.pdf"))
    path, creation = section(doc, "Password Creation")
    assert path == ("Password Procedure", "1. Password Creation")
    (items,) = [b for b in creation.blocks if b.kind == "ordered"]
    assert items.items[0] == (
        "All user-level and system-level passwords must conform to: Contain at least 8 "
        "alphanumeric characters.; Contain both upper and lower case letters.; Contain at "
        "least one number or at least one special character."
    )
    assert len(items.items) == 3


@needs_corpus
def test_numbered_sections_nest_by_number(read_doc, section) -> None:
    doc = read_doc(_pdf("sans_password_protection_policy.pdf"))
    assert doc.title == "Password Protection Policy"
    path, _ = section(doc, "Password Creation")
    assert path == ("4. Policy", "4.1 Password Creation")
    _, change = section(doc, "4.2 Password Change")
    (steps,) = [b for b in change.blocks if b.kind == "ordered"]
    assert steps.items[0].startswith("Passwords should be changed only when there is reason")
    text, _ = doc.render()
    assert "Consensus Policy Resource Community" not in text  # running header
    assert "All Rights Reserved" not in text  # running footer with page number
    _, history = section(doc, "Revision History")
    assert any(b.kind == "table" and b.rows[1][0] == "June 2014" for b in history.blocks)


@needs_corpus
def test_bold_numbered_headings_and_courier_o_bullets(read_doc, section) -> None:
    doc = read_doc(_pdf("sthk_nhs_remote_access_policy.pdf"))
    path, third_party = section(doc, "5.5. Third Party Organisation")
    assert path[0] == "5 DUTIES ACCOUNTABILITIES AND RESPONSIBILITIES"
    (bullets,) = [b for b in third_party.blocks if b.kind == "unordered"]
    assert "Abide by the controls detailed within this document;" in bullets.items
    assert section(doc, "7 TRAINING")[0] == ("7 TRAINING",)


@needs_corpus
def test_toc_on_the_first_page_is_dropped_but_the_text_after_it_kept(read_doc) -> None:
    doc = read_doc(_pdf("uk_dwp_physical_security_policy.pdf"))
    titles = [s.title for s in doc.sections]
    assert titles == [
        "1. Audience",
        "2. Policy Objective",
        "3. Scope and Definition",
        "4. Context",
        "5. Responsibilities",
        "6. Policy Statements",
        "7. Compliance",
    ]
    assert doc.sections[0].blocks[0].items[0].startswith("This DWP Physical Security Policy")


@needs_corpus
def test_flowchart_page_titles_head_their_steps(read_doc, section) -> None:
    doc = read_doc(_pdf("ransomware_playbook_flowchart.pdf"))
    _, prepare = section(doc, "Prepare")
    steps = [i for b in prepare.blocks if b.kind == "ordered" for i in b.items]
    assert any(
        i.startswith("Identify and Document Defensive Measures Against Ransomware") for i in steps
    )


@needs_corpus
@pytest.mark.integration
def test_deeply_numbered_guide_keeps_its_hierarchy(read_doc, section) -> None:
    doc = read_doc(_pdf("nist_sp800-61r2_incident_handling_guide.pdf"))
    path, analysis = section(doc, "3.2.4 Incident Analysis")
    assert path == (
        "3. Handling an Incident",
        "3.2 Detection and Analysis",
        "3.2.4 Incident Analysis",
    )
    assert analysis.body().startswith("Incident detection and analysis would be easy")
    text, _ = doc.render()
    assert "COMPUTER SECURITY INCIDENT HANDLING GUIDE" not in text  # running header
    _, models = section(doc, "2.4.1 Team Models")
    (teams,) = [b for b in models.blocks if b.kind == "unordered"][:1]
    assert teams.items[0].startswith("Central Incident Response Team.")


@needs_corpus
def test_owner_password_only_aes_pdf_opens(read_doc, section, headed) -> None:
    doc = read_doc(CORPUS / "pdf_edge" / "edge_encrypted_aes_physical_security_procedures.pdf")
    path, construction = section(doc, "Construction")
    assert path[-2:] == ("1.0 Policy", "Construction")
    assert any(b.kind == "unordered" for b in construction.blocks)
    assert sum(1 for s in headed(doc) if s.body()) >= 10


@needs_corpus
@pytest.mark.integration
def test_second_aes_pdf_opens_with_real_sections(read_doc, section, headed) -> None:
    doc = read_doc(CORPUS / "pdf_edge" / "edge_encrypted_aes_mitre_cyber_exercise_playbook.pdf")
    assert doc.title == "Cyber Exercise Playbook"
    _, cycle = section(doc, "Exercise Planning Cycle")
    assert cycle.children and cycle.children[0].title == "Concept Development Meeting"
    assert sum(1 for s in headed(doc) if s.body()) >= 20


@needs_corpus
def test_image_only_pdf_is_reported_as_scanned() -> None:
    path = CORPUS / "pdf_edge" / "edge_scanned_no_text_fssa_security_policy.pdf"
    with pytest.raises(ScannedPDFError) as info:
        read_document(path)
    assert info.value.code == "scanned_no_text"
    assert "edge_scanned_no_text_fssa_security_policy.pdf" in str(info.value)
    assert "scanned / image-only" in info.value.message and "OCR" in info.value.message
