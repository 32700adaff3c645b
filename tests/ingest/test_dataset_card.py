"""The dataset card after a procedure update (issue #5): with several documents ingested, changing
one fact in one document gives a new dataset whose card moves only for that document, and only by
its regenerated and retired pairs; everything of the other documents is carried over as it was.

(tests/ingest/test_pipeline.py::test_changed_section_regenerates_only_its_pairs checks the same
update at the level of the pairs table and the dataset records; this test reads the card.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sopforge.ingest.pipeline import IngestConfig, IngestReport, ingest_paths
from sopforge.workspace import Workspace

DOCS = {
    "expenses.md": """# Expense claims

## Approval

Claims over 500 pounds need approval from your line manager. Submit the claim within 30 days of
purchase, with the receipt attached.

## Receipts

1. Photograph the receipt.
2. Attach it to the claim in the finance portal.
3. Keep the paper copy for 90 days.
""",
    "badges.md": """# Building badges

## Lost badge

Report a lost badge to the security desk within one hour. Security disables the badge at once.

## Replacement

1. Ask the facilities desk for a replacement badge.
2. Bring photo ID when you collect it.
""",
    "incidents.md": """# Security incidents

## Reporting

Call the on-call security engineer as soon as you suspect an incident. Do not switch off the
affected machine.

## Follow-up

The incident lead writes a review within five working days and shares it with the team.
""",
}
CHANGED = ("expenses.md", "your line manager", "the finance director")


def card(report: IngestReport) -> dict[str, Any]:
    return json.loads((Path(report.dataset_dir) / "card.json").read_text(encoding="utf-8"))


def records(report: IngestReport) -> list[dict[str, Any]]:
    out = []
    for split in ("train", "eval"):
        lines = (Path(report.dataset_dir) / f"{split}.jsonl").read_text(encoding="utf-8")
        out += [json.loads(line) for line in lines.splitlines()]
    return out


def update_one_fact(tmp_path: Path) -> tuple[Workspace, IngestReport, IngestReport]:
    """Ingest DOCS, change one fact in one section of expenses.md, ingest again."""
    folder = tmp_path / "docs"
    folder.mkdir(parents=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    ws = Workspace(tmp_path / "ws")
    cfg = IngestConfig(eval_fraction=0.3)
    first = ingest_paths(ws, [folder], cfg)
    name, old, new = CHANGED
    (folder / name).write_text(DOCS[name].replace(old, new), encoding="utf-8")
    return ws, first, ingest_paths(ws, [folder], cfg)


def test_new_card_moves_only_for_the_changed_document(tmp_path: Path) -> None:
    ws, first, second = update_one_fact(tmp_path)
    before, after = card(first), card(second)
    assert after["dataset_id"] == second.dataset_id != before["dataset_id"]
    assert set(after["per_doc"]) == set(before["per_doc"]) == {"expenses", "badges", "incidents"}
    moved = {d for d in after["per_doc"] if after["per_doc"][d] != before["per_doc"][d]}
    assert moved == {"expenses"}  # the other documents' entries are exactly as they were

    current = dict(ws.db.execute("SELECT doc_id, version FROM versions WHERE status='current'"))
    superseded = dict(
        ws.db.execute("SELECT doc_id, version FROM versions WHERE status='superseded'")
    )
    assert superseded == {"expenses": before["per_doc"]["expenses"]["version"]}
    assert after["per_doc"]["expenses"]["version"] == current["expenses"]

    # Regenerated: only the changed section of the changed document got pairs in this ingest,
    # and only its old pairs were retired; the card counts the active pairs of current versions.
    by_file = {f.doc_id: f for f in second.files}
    assert [(d, f.status, f.pairs) for d, f in sorted(by_file.items()) if d != "expenses"] == [
        ("badges", "unchanged", 0),
        ("incidents", "unchanged", 0),
    ]
    assert by_file["expenses"].status == "updated" and by_file["expenses"].pairs > 0
    changed = [d["section_id"] for d in by_file["expenses"].diffs]
    assert changed == ["Approval"]
    made_now = ws.db.execute(
        "SELECT DISTINCT doc_id, section_id FROM pairs WHERE created_at > ?",
        (before["created_at"],),
    ).fetchall()
    assert [tuple(r) for r in made_now] == [("expenses", "Approval")]
    retired = ws.db.execute("SELECT DISTINCT doc_id, section_id FROM pairs WHERE status='retired'")
    assert [tuple(r) for r in retired] == [("expenses", "Approval")]
    active = ws.db.execute(
        "SELECT COUNT(*) FROM pairs p JOIN sections s USING (doc_id, content_hash)"
        " JOIN versions v ON v.doc_id = s.doc_id AND v.version = s.version"
        " WHERE p.status='active' AND v.status='current' AND p.doc_id='expenses'"
    ).fetchone()[0]
    assert after["per_doc"]["expenses"]["pairs"] == active
    assert after["counts"]["train"] + after["counts"]["eval"] == len(records(second))

    # The other documents' records are carried over as they were, except open-book records that
    # show the changed document as a distractor source: those now show its current version.
    old_ids = {r["id"] for r in records(first)}
    redone = [
        r
        for r in records(second)
        if r["id"] not in old_ids and r["provenance"]["doc_id"] != "expenses"
    ]
    new_cite = f", v{current['expenses'][:8]}]"
    assert all(r["task"] == "open_book" and new_cite in r["messages"][1]["content"] for r in redone)
    assert all(
        r["provenance"]["version"] == current["expenses"]
        for r in records(second)
        if r["provenance"]["doc_id"] == "expenses"
    )


def closed_book(report: IngestReport, section_id: str) -> set[tuple[str, str, str]]:
    """(task, question, answer) of a section's closed-book records in a dataset."""
    return {
        (r["task"], r["messages"][1]["content"], r["messages"][-1]["content"])
        for r in records(report)
        if r["provenance"]["section_id"] == section_id and r["task"] != "open_book"
    }


def test_updated_section_gets_the_pairs_a_fresh_ingest_gives(tmp_path: Path) -> None:
    _, _, updated = update_one_fact(tmp_path / "updated")
    folder = tmp_path / "fresh-docs"
    folder.mkdir()
    name, old, new = CHANGED
    (folder / name).write_text(DOCS[name].replace(old, new), encoding="utf-8")
    fresh = ingest_paths(Workspace(tmp_path / "fresh"), [folder], IngestConfig(eval_fraction=0.3))
    expected = closed_book(fresh, "Approval")
    # e.g. ("qa", "What are the deadlines for Approval?", "Submit the claim within 30 days ...")
    assert any(new in answer for _, _, answer in expected)
    assert closed_book(updated, "Approval") == expected
