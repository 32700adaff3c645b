"""Duplicate uploads: no duplicate pairs, nothing lost, and the report says what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sopforge.ingest.pipeline import IngestConfig, IngestReport, ingest_paths
from sopforge.workspace import Workspace

BADGE = b"""# Badge Policy

## Lost badge

Report a lost badge to security within one hour. Security disables the badge at once and logs
the report in the access system.

## Replacement

1. Request a replacement badge from the facilities desk.
2. Bring photo ID to the desk.
3. Sign the badge register when you collect it.
"""
BADGE_V2 = BADGE.replace(b"within one hour", b"within thirty minutes")
EXPENSES = b"""# Expense Policy

## Approval

The department manager approves expenses over 500 dollars within five working days.

## Receipts

1. Scan every receipt.
2. Attach the scans to the expense claim.
3. Submit the claim before the end of the month.
"""


def ingest(ws: Workspace, *uploads: tuple[str, bytes]) -> IngestReport:
    return ingest_paths(ws, [], IngestConfig(), uploads=list(uploads))


def records(report: IngestReport) -> list[dict]:
    out = []
    for split in ("train", "eval"):
        text = (Path(report.dataset_dir) / f"{split}.jsonl").read_text(encoding="utf-8")
        out += [json.loads(line) for line in text.splitlines()]
    return out


def pair_texts(report: IngestReport) -> list[tuple[str, str]]:
    return [(r["messages"][1]["content"], r["messages"][-1]["content"]) for r in records(report)]


def statuses(report: IngestReport) -> list[tuple[str, str, str]]:
    return [(f.name, f.status, f.duplicate_of) for f in report.files]


def count(ws: Workspace, sql: str, *args: object) -> int:
    return ws.db.execute(sql, args).fetchone()[0]


@pytest.fixture
def alone(tmp_path: Path) -> IngestReport:
    """The badge policy ingested once, on its own: what every duplicate case must equal."""
    return ingest(Workspace(tmp_path / "alone"), ("badge.md", BADGE))


def test_the_same_file_twice_in_one_batch(tmp_path: Path, alone: IngestReport) -> None:
    ws = Workspace(tmp_path / "ws")
    report = ingest(ws, ("badge.md", BADGE), ("badge.md", BADGE))
    assert statuses(report) == [("badge.md", "new", ""), ("badge.md", "duplicate", "badge")]
    assert "earlier in this upload" in report.files[1].note
    assert report.files[0].pairs > 0 and report.files[1].pairs == 0
    assert count(ws, "SELECT count(*) FROM versions") == 1
    assert sorted(pair_texts(report)) == sorted(pair_texts(alone))
    assert report.dataset_id == alone.dataset_id  # the very same dataset


def test_the_same_content_under_two_names(tmp_path: Path, alone: IngestReport) -> None:
    ws = Workspace(tmp_path / "ws")
    report = ingest(ws, ("badge.md", BADGE), ("Copy of badge (1).md", BADGE))
    assert statuses(report) == [
        ("badge.md", "new", ""),
        ("Copy of badge (1).md", "duplicate", "badge"),
    ]
    assert "document badge" in report.files[1].note
    assert count(ws, "SELECT count(*) FROM documents") == 1
    texts = pair_texts(report)
    assert len(texts) == len(set(texts))  # no pair twice
    assert report.dataset_id == alone.dataset_id

    # Later, the copy's name alone: still a duplicate of the current badge document.
    again = ingest(ws, ("copy-of-badge-1.md", BADGE))
    assert statuses(again) == [("copy-of-badge-1.md", "duplicate", "badge")]
    assert "To replace badge" in again.files[0].note
    assert again.dataset_id == alone.dataset_id


def test_the_same_file_uploaded_again_later_is_unchanged(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    first = ingest(ws, ("badge.md", BADGE), ("expenses.md", EXPENSES))
    n_pairs = count(ws, "SELECT count(*) FROM pairs")
    again = ingest(ws, ("badge.md", BADGE))
    assert statuses(again) == [("badge.md", "unchanged", "")]
    assert "nothing to do" in again.files[0].note and again.files[0].pairs == 0
    assert count(ws, "SELECT count(*) FROM pairs") == n_pairs
    assert again.dataset_id == first.dataset_id  # the other document is still in the dataset


def test_two_versions_of_one_document_in_one_batch_keep_both(tmp_path: Path) -> None:
    """Nothing is lost: the later file is current, the earlier kept as superseded, both told."""
    ws = Workspace(tmp_path / "ws")
    report = ingest(ws, ("badge.md", BADGE), ("Badge.md", BADGE_V2))
    assert [(f.status, f.doc_id) for f in report.files] == [("new", "badge"), ("updated", "badge")]
    assert "superseded in this upload by Badge.md" in report.files[0].warnings[0]
    assert "now its current version" in report.files[1].warnings[0]
    versions = ws.db.execute("SELECT status, filename FROM versions ORDER BY ingested_at")
    assert [tuple(v) for v in versions] == [("superseded", "badge.md"), ("current", "Badge.md")]
    answers = " ".join(a for _, a in pair_texts(report))
    assert "thirty minutes" in answers and "within one hour" not in answers
    assert report.files[0].pairs == 0 and report.files[1].pairs > 0  # counted once


def test_a_folder_ingest_flags_a_copy_too(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "badge.md").write_bytes(BADGE)
    (folder / "badge-copy.md").write_bytes(BADGE)
    (folder / "expenses.md").write_bytes(EXPENSES)
    report = ingest_paths(Workspace(tmp_path / "ws"), [folder], IngestConfig())
    by_name = {f.name: (f.status, f.duplicate_of) for f in report.files}
    # Folder order is sorted: badge-copy.md comes first and is the one kept.
    assert by_name == {
        "badge-copy.md": ("new", ""),
        "badge.md": ("duplicate", "badge-copy"),
        "expenses.md": ("new", ""),
    }
    texts = pair_texts(report)
    assert len(texts) == len(set(texts))
