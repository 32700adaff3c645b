"""DOCX reader: Word heading styles, list numbering, tables, and bold lines used as headings."""

from __future__ import annotations

import io

import docx
from docx.shared import Pt

from sopforge.ingest.readers import read_document


def _save(document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _sample() -> bytes:
    d = docx.Document()
    d.core_properties.title = ""
    d.add_paragraph("Vehicle Inspection", style="Title")
    d.add_paragraph("Applies to all depot vans.")
    d.add_heading("Before driving", level=1)
    d.add_paragraph("Walk around the van.", style="List Number")
    d.add_paragraph("Check the tyres:", style="List Number")
    d.add_paragraph("tread at least 3 mm", style="List Number 2")
    d.add_paragraph("no cuts or bulges", style="List Number 2")
    d.add_paragraph("Test the lights.", style="List Number")
    d.add_heading("Faults", level=2)
    d.add_paragraph("Tag the van.", style="List Bullet")
    d.add_paragraph("Tell the supervisor.", style="List Bullet")
    bold = d.add_paragraph()
    bold.add_run("Contacts").bold = True
    d.add_paragraph("1. Fleet desk on extension 3100")
    d.add_paragraph("2. Out of hours: the duty manager")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Fault", "Action"
    table.cell(1, 0).text, table.cell(1, 1).text = "Flat tyre", "Do not drive"
    d.add_heading("Records", level=1)
    p = d.add_paragraph("Keep the checklist for ")
    p.add_run("12 months").font.size = Pt(14)
    p.add_run(".")
    return _save(d)


def test_headings_lists_and_tables_in_order() -> None:
    doc = read_document("vehicle-inspection.docx", data=_sample())
    assert doc.format == "docx"
    assert doc.title == "Vehicle Inspection"
    assert doc.preamble[0].text == "Applies to all depot vans."
    before, records = doc.sections
    assert before.title == "Before driving" and records.title == "Records"
    (steps,) = before.blocks
    assert steps.kind == "ordered"
    assert steps.items == [
        "Walk around the van.",
        "Check the tyres: tread at least 3 mm; no cuts or bulges",
        "Test the lights.",
    ]
    faults = before.children[0]
    assert (faults.title, faults.level) == ("Faults", 2)
    assert faults.blocks[0].kind == "unordered"
    assert faults.blocks[0].items == ["Tag the van.", "Tell the supervisor."]
    contacts = faults.children[0]
    assert contacts.title == "Contacts"  # a bold paragraph standing in for a heading
    assert contacts.blocks[0].kind == "ordered"  # numbers typed by hand
    assert contacts.blocks[0].items == [
        "Fleet desk on extension 3100",
        "Out of hours: the duty manager",
    ]
    assert contacts.blocks[1].rows == [["Fault", "Action"], ["Flat tyre", "Do not drive"]]
    assert records.blocks[0].text == "Keep the checklist for 12 months."


def test_core_properties_title_wins_and_merged_cells_appear_once() -> None:
    d = docx.Document()
    d.core_properties.title = "Cold Store Access"
    d.add_heading("Scope", level=1)
    table = d.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Freezer rooms"
    for col, value in enumerate(["A", "B", "C"]):
        table.cell(1, col).text = value
    doc = read_document("x.docx", data=_save(d))
    assert doc.title == "Cold Store Access"
    assert doc.sections[0].blocks[0].rows == [["Freezer rooms"], ["A", "B", "C"]]


def test_outline_level_makes_a_heading_without_a_heading_style() -> None:
    d = docx.Document()
    p = d.add_paragraph("Emergency stops")
    p._p.get_or_add_pPr().get_or_add_outlineLvl().val = 0
    d.add_paragraph("Press the red button.")
    d.add_heading("Restart", level=1)
    d.add_paragraph("Turn the key.")
    doc = read_document("x.docx", data=_save(d))
    assert [s.title for s in doc.sections] == ["Emergency stops", "Restart"]
    assert doc.sections[0].blocks[0].text == "Press the red button."
