"""Generate the binary sample SOPs of the fictional company Northwind Logistics.

    .venv/bin/python examples/make_examples.py

writes examples/northwind/forklift-safety.docx (python-docx) and
examples/northwind/data-backup-restore.pdf (fpdf2, a `dev` extra). Both files are committed, so
the demo never needs to run this; re-run it only after editing the text below. Timestamps are
fixed so that re-running without edits gives the same files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

OUT = Path(__file__).resolve().parent / "northwind"
FIXED_TIME = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)

# Each SOP is a list of (kind, payload): title, meta, h1, h2, p, steps, bullets, table.
FORKLIFT = [
    ("title", "Forklift Truck Safety"),
    ("meta", "Document ID: NW-OPS-015 · Owner: Depot Health and Safety Lead · Version 5.0"),
    ("h1", "1. Purpose"),
    (
        "p",
        "This procedure keeps people safe around forklift trucks in Northwind Logistics "
        "depots. Forklifts cause more serious injuries in our industry than any other "
        "equipment, almost always through collisions with people on foot or through "
        "overturned loads.",
    ),
    ("h1", "2. Scope"),
    (
        "p",
        "All counterbalance and reach trucks at the Doncaster, Wakefield and Hull depots, and "
        "everyone who drives them or works near them, including agency staff and visiting "
        "drivers.",
    ),
    ("h1", "3. Roles and responsibilities"),
    (
        "bullets",
        [
            "Forklift operator: holds a valid licence, does the daily pre-use check and drives "
            "within the site rules.",
            "Shift supervisor: checks licences at the start of each shift and takes trucks out "
            "of use when a check fails.",
            "Depot Health and Safety Lead: books training and refresher courses, investigates "
            "accidents and near misses.",
            "Maintenance team: repairs trucks and signs them back into service.",
        ],
    ),
    ("h1", "4. Licences and training"),
    (
        "p",
        "Only people with a Northwind forklift licence for that type of truck may drive it. "
        "A licence is issued after an accredited 5-day novice course or a 3-day course for "
        "experienced operators, followed by a practical assessment on site.",
    ),
    (
        "bullets",
        [
            "Refresher training and reassessment every 3 years.",
            "Immediate reassessment after any accident or two near misses in 12 months.",
            "Agency operators show their licence to the shift supervisor before their first "
            "shift; the supervisor copies it into the training record.",
        ],
    ),
    ("h1", "5. Daily pre-use check"),
    (
        "p",
        "The operator checks the truck at the start of every shift, before the first lift, "
        "using the checklist on the truck's handheld scanner.",
    ),
    (
        "steps",
        [
            "Walk around the truck and look for damage, leaks and worn or damaged tyres.",
            "Check the forks, mast chains and carriage for cracks, bends and missing pins.",
            "Test the horn, lights, reversing alarm and blue spot light.",
            "Test the service brake and parking brake on the test ramp.",
            "Check the battery charge is above 30% or the gas bottle is secure and not leaking.",
            'Record the result on the scanner. If any item fails, tag the truck "DO NOT USE", '
            "remove the key and tell the shift supervisor.",
        ],
    ),
    ("h1", "6. Operating rules"),
    ("h2", "6.1 Speed and driving"),
    (
        "bullets",
        [
            "Maximum speed 8 km/h inside the warehouse and 5 km/h in loading bays and "
            "pedestrian crossings.",
            "Travel with the forks lowered to 15 cm above the floor, and drive in reverse when "
            "a load blocks the view ahead.",
            "Sound the horn at blind corners, doorways and racking ends.",
            "Never carry passengers or lift people on the forks.",
        ],
    ),
    ("h2", "6.2 Loads"),
    (
        "bullets",
        [
            "Never lift more than the capacity shown on the truck's data plate for that load "
            "centre and lift height.",
            "Stop and ask the shift supervisor when a load is damaged, unstable or wider than "
            "the pallet.",
            "Do not lift loads above 6 metres while anyone is within 3 metres of the truck.",
        ],
    ),
    ("h2", "6.3 Parking"),
    (
        "steps",
        [
            "Park only in the marked forklift bays, never in front of fire exits or extinguishers.",
            "Lower the forks to the floor and tilt them forward.",
            "Apply the parking brake, switch off and remove the key.",
            "Put electric trucks on charge when the battery is below 30%.",
        ],
    ),
    ("h1", "7. Accidents and near misses"),
    (
        "steps",
        [
            "Stop the truck, make the area safe and give first aid if needed; call 999 for "
            "serious injuries.",
            "Tell the shift supervisor at once. The supervisor takes the truck out of use.",
            "Report the accident or near miss in the Safety app before the end of the shift.",
            "The Depot Health and Safety Lead investigates within 2 working days and reports "
            "RIDDOR-reportable injuries to the HSE within 10 days.",
        ],
    ),
    ("h1", "8. Inspection and maintenance"),
    (
        "table",
        [
            ["Check", "How often", "Done by"],
            ["Pre-use check", "Every shift", "Operator"],
            ["Planned service", "Every 500 operating hours", "Maintenance team"],
            ["Thorough examination (LOLER)", "Every 12 months", "Insurer's engineer"],
            ["Licence audit", "Every 3 months", "Depot Health and Safety Lead"],
        ],
    ),
    ("h1", "9. Records"),
    (
        "p",
        "Pre-use checks are kept for 12 months, training records for the length of employment "
        "plus 3 years, and accident reports for 7 years.",
    ),
]

BACKUP = [
    ("title", "Data Backup and Restore"),
    ("meta", "Document ID: NW-IT-010 · Owner: Infrastructure Manager · Version 3.2"),
    ("h1", "1. Purpose"),
    (
        "p",
        "This procedure makes sure Northwind Logistics can recover its systems and data after "
        "a failure, a mistake or an attack such as ransomware. It says what is backed up, how "
        "often, how long copies are kept, and how a restore is requested and tested.",
    ),
    ("h1", "2. Scope"),
    (
        "p",
        "All production systems run by Northwind IT: the warehouse management system (WMS), the "
        "route planner, the customer tracking portal, finance and HR databases, file shares and "
        "Microsoft 365 mailboxes. Laptops are not backed up; staff store work on OneDrive.",
    ),
    ("h1", "3. Roles"),
    (
        "bullets",
        [
            "Infrastructure Manager: owns this procedure and the backup platform.",
            "Backup operator (Infrastructure team, on rota): checks backup jobs every working "
            "day and runs restores.",
            "System owner: agrees the tier of each system and approves restores of its data.",
            "Service Desk: logs restore requests and keeps the requester informed.",
        ],
    ),
    ("h1", "4. Backup tiers"),
    (
        "p",
        "Each system is in one of three tiers, agreed with its system owner. The tier sets how "
        "often it is backed up and how quickly it must be running again after a failure.",
    ),
    (
        "table",
        [
            ["Tier", "Systems", "Backups", "Recovery time"],
            ["Tier 1", "WMS, route planner", "Every 4 hours", "4 hours"],
            ["Tier 2", "Finance, HR, portal", "Nightly 01:00", "1 working day"],
            ["Tier 3", "File shares", "Nightly 01:00", "3 working days"],
        ],
    ),
    (
        "bullets",
        [
            "Tier 1 systems may lose at most 4 hours of data (recovery point objective).",
            "Tier 2 and Tier 3 systems may lose at most 24 hours of data.",
        ],
    ),
    ("h1", "5. Backup schedule and retention"),
    ("h2", "5.1 Schedule"),
    (
        "bullets",
        [
            "Incremental backups nightly at 01:00, and every 4 hours for Tier 1 systems.",
            "A full backup every Sunday at 02:00.",
            "A monthly full backup on the first Sunday of the month, copied to immutable cloud "
            "storage in a second region.",
        ],
    ),
    ("h2", "5.2 Retention"),
    (
        "bullets",
        [
            "Daily and 4-hourly backups are kept for 35 days.",
            "Weekly full backups are kept for 13 weeks.",
            "Monthly full backups are kept for 12 months; finance month-end backups for 7 years.",
        ],
    ),
    ("h1", "6. Daily checks"),
    (
        "steps",
        [
            "By 09:30 each working day the backup operator reviews the overnight job report in "
            "the backup console.",
            "The backup operator reruns any failed job before 12:00 the same day.",
            "If a Tier 1 backup fails twice in a row, the backup operator raises a Severity 2 "
            "incident and tells the Infrastructure Manager.",
            "The backup operator records the result in the daily checks log.",
        ],
    ),
    ("h1", "7. Requesting a restore"),
    (
        "steps",
        [
            "The requester logs a Restore request with the Service Desk, giving the system, the "
            "files or records, and the date and time to restore to.",
            "The Service Desk asks the system owner to approve the request; restores of HR or "
            "finance data also need the Data Protection Officer's approval.",
            "The backup operator restores the data to a separate location first, never over "
            "live data, and asks the requester to check it.",
            "After the requester confirms the data is correct, the backup operator moves it into "
            "place and closes the request.",
            "Single files are restored within 1 working day; a whole Tier 1 system within 4 hours.",
        ],
    ),
    ("h1", "8. Restore testing"),
    (
        "p",
        "Backups are only useful if they restore. The Infrastructure Manager schedules restore "
        "tests and reports the results to the IT Director.",
    ),
    (
        "bullets",
        [
            "Every quarter: a full restore of one Tier 1 system into the test environment, "
            "timed against its recovery time.",
            "Every month: a sample of 10 random files from the file shares.",
            "Every year: a disaster recovery exercise restoring all Tier 1 systems in the "
            "second region.",
        ],
    ),
    ("h1", "9. Ransomware"),
    (
        "p",
        "If ransomware is suspected, the backup operator pauses all backup jobs at once so that "
        "encrypted files do not overwrite good copies, and follows the IT Security Incident "
        "Response procedure (NW-IT-007). Restores after ransomware use the immutable cloud "
        "copies and need the Head of IT Security's approval.",
    ),
    ("h1", "10. Records"),
    (
        "p",
        "Job reports and daily check logs are kept for 12 months; restore test reports for 3 "
        "years.",
    ),
]


def write_docx(sop: list, path: Path) -> None:
    from docx import Document
    from docx.shared import Pt

    doc = Document()
    for kind, payload in sop:
        if kind == "title":
            doc.add_paragraph(payload, style="Title")
            doc.core_properties.title = payload
        elif kind == "meta":
            run = doc.add_paragraph().add_run(payload)
            run.italic = True
            run.font.size = Pt(9)
        elif kind in ("h1", "h2"):
            doc.add_heading(payload, level=1 if kind == "h1" else 2)
        elif kind == "p":
            doc.add_paragraph(payload)
        elif kind == "steps":
            for step in payload:
                doc.add_paragraph(step, style="List Number")
        elif kind == "bullets":
            for item in payload:
                head, _, rest = item.partition(": ")
                p = doc.add_paragraph(style="List Bullet")
                if rest:
                    p.add_run(head + ": ").bold = True
                    p.add_run(rest)
                else:
                    p.add_run(item)
        elif kind == "table":
            table = doc.add_table(rows=0, cols=len(payload[0]), style="Table Grid")
            for r, row in enumerate(payload):
                cells = table.add_row().cells
                for c, value in enumerate(row):
                    cells[c].text = value
                    if r == 0:
                        cells[c].paragraphs[0].runs[0].bold = True
    props = doc.core_properties
    props.author = "Northwind Logistics"
    props.last_modified_by = "Northwind Logistics"
    props.created = props.modified = FIXED_TIME.replace(tzinfo=None)
    props.revision = 1
    doc.save(str(path))
    _fix_zip_times(path)


def _fix_zip_times(path: Path) -> None:
    """Rewrite the DOCX archive with fixed entry timestamps, so the output is reproducible."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    stamp = FIXED_TIME.timetuple()[:6]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def write_pdf(sop: list, path: Path) -> None:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    doc_title = next(p for k, p in sop if k == "title")
    meta = next(p for k, p in sop if k == "meta")

    class SopPDF(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "", 8)
            self.set_text_color(110)
            self.cell(0, 5, f"Northwind Logistics - {doc_title}", align="R")
            self.ln(9)
            self.set_text_color(0)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(110)
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")
            self.set_text_color(0)

    pdf = SopPDF(format="A4")
    pdf.core_fonts_encoding = "windows-1252"  # so "•" and "–" exist in the core fonts
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(doc_title)
    pdf.set_author("Northwind Logistics")
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_margins(20, 15, 20)
    pdf.add_page()
    left = pdf.l_margin
    line = 5.5

    def listed(marker: str, text: str, indent: float = 5) -> None:
        pdf.set_x(left + indent)
        pdf.cell(7, line, marker)
        pdf.set_left_margin(left + indent + 7)
        pdf.multi_cell(0, line, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_left_margin(left)
        pdf.ln(1.5)

    for kind, payload in sop:
        if kind == "title":
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        elif kind == "meta":
            pdf.set_font("Helvetica", "I", 9)
            pdf.multi_cell(0, 5, meta.replace("·", "-"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(4)
        elif kind == "h1":
            pdf.ln(3)
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
        elif kind == "h2":
            pdf.ln(1)
            pdf.set_font("Helvetica", "B", 12)
            pdf.multi_cell(0, 7, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, line, payload, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(3)
        elif kind == "steps":
            pdf.set_font("Helvetica", "", 11)
            for n, step in enumerate(payload, 1):
                listed(f"{n}.", step)
            pdf.ln(1.5)
        elif kind == "bullets":
            pdf.set_font("Helvetica", "", 11)
            for item in payload:
                listed("•", item)
            pdf.ln(1.5)
        elif kind == "table":
            pdf.set_font("Helvetica", "", 10)
            widths = (15, 35, 25, 25)[: len(payload[0])]
            with pdf.table(text_align="LEFT", line_height=6, col_widths=widths) as table:
                for row in payload:
                    table.row(row)
            pdf.ln(4)
    pdf.output(str(path))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_docx(FORKLIFT, OUT / "forklift-safety.docx")
    write_pdf(BACKUP, OUT / "data-backup-restore.pdf")
    print(f"wrote {OUT / 'forklift-safety.docx'} and {OUT / 'data-backup-restore.pdf'}")


if __name__ == "__main__":
    main()
