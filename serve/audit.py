"""The audit log (every answer served) and feedback on answers, exported as review items.

audit.citations holds one object per citation shown or checked with the answer::

    {"citation": "[Doc § Section, v1a2b3c4]", "cited": true, "valid": true, "retrieved": true}

`cited`: the model wrote it; `valid`: it names a current section; `retrieved`: it was a source
given to the model. Review items (one JSON object a line) are what the next dataset build reads
to have a person review answers employees rated.

`logged_answers` reads the log back with each citation resolved to the document version it names
and that version's status now (current / superseded): after a procedure update, which answers
cited the old version, and which model gave them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.serve.retrieval import CITATION_RE
from sopforge.workspace import Workspace, atomic_write_text


@dataclass(frozen=True)
class AuditEntry:
    user: str
    channel: str  # web | api
    model_id: str
    question: str
    answer: str
    format: str
    valid: bool
    citations: list[dict[str, Any]]


def log_answer(ws: Workspace, entry: AuditEntry) -> int:
    with ws.transaction() as db:
        cur = db.execute(
            "INSERT INTO audit (at, user, channel, model_id, question, answer, format, valid, citations)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                entry.user,
                entry.channel,
                entry.model_id,
                entry.question,
                entry.answer,
                entry.format,
                int(entry.valid),
                json.dumps(entry.citations),
            ),
        )
        return int(cur.lastrowid)


def add_feedback(ws: Workspace, audit_id: int, user: str, rating: int, comment: str = "") -> int:
    """Store a rating (+1 / -1) on an answer the same user was given."""
    if rating not in (1, -1):
        raise UserError(f"rating must be 1 (thumbs up) or -1 (thumbs down), got {rating}")
    row = ws.db.execute("SELECT user FROM audit WHERE id=?", (audit_id,)).fetchone()
    if row is None or row["user"] != user:
        raise UserError(f"no answer {audit_id} for user {user!r} to give feedback on")
    with ws.transaction() as db:
        cur = db.execute(
            "INSERT INTO feedback (audit_id, user, rating, comment, at) VALUES (?, ?, ?, ?, ?)",
            (audit_id, user, rating, comment, time.time()),
        )
        return int(cur.lastrowid)


def review_items(ws: Workspace) -> list[dict[str, Any]]:
    """One item per feedback row, joined with the answer it rates, oldest first."""
    rows = ws.db.execute(
        "SELECT f.id AS feedback_id, f.audit_id, f.user AS rated_by, f.rating, f.comment,"
        " f.at AS rated_at, a.at AS answered_at, a.user, a.channel, a.model_id, a.question,"
        " a.answer, a.format, a.valid, a.citations FROM feedback f JOIN audit a ON a.id = f.audit_id"
        " ORDER BY f.id"
    ).fetchall()
    items = []
    for r in rows:
        item = dict(r)
        item["kind"] = "review"
        item["valid"] = bool(item["valid"]) if item["valid"] is not None else None
        item["citations"] = json.loads(item["citations"] or "[]")
        items.append(item)
    return items


def export_feedback(ws: Workspace, path: str | Path) -> int:
    """Write review items JSONL to `path` (atomically); returns how many."""
    items = review_items(ws)
    atomic_write_text(Path(path), "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    return len(items)


def resolve_citation(ws: Workspace, cite: str) -> dict[str, Any]:
    """The document version a citation names: {doc_id, version (full sha256), status}, all None
    when it names no version in the workspace (a made-up citation)."""
    found: dict[str, Any] = {"doc_id": None, "version": None, "status": None}
    m = CITATION_RE.fullmatch(cite.strip())
    if not m:
        return found
    doc_title, _, prefix = m.groups()
    row = ws.db.execute(
        "SELECT doc_id, version, status FROM versions WHERE title = ? AND version LIKE ?"
        " ORDER BY ingested_at DESC LIMIT 1",
        (doc_title.strip(), prefix.lower() + "%"),
    ).fetchone()
    return dict(row) if row else found


def logged_answers(
    ws: Workspace, *, user: str | None = None, after_id: int = 0
) -> list[dict[str, Any]]:
    """Audit rows after `after_id` (of `user`, or everyone's), oldest first; each citation carries
    the doc_id, full version and current status of the version it names."""
    sql = "SELECT * FROM audit WHERE id > ?" + (" AND user = ?" if user is not None else "")
    params: tuple[Any, ...] = (after_id, user) if user is not None else (after_id,)
    out = []
    for row in ws.db.execute(sql + " ORDER BY id", params).fetchall():
        entry = dict(row)
        entry["valid"] = bool(entry["valid"]) if entry["valid"] is not None else None
        entry["citations"] = [
            {**c, **resolve_citation(ws, c["citation"])}
            for c in json.loads(entry["citations"] or "[]")
        ]
        out.append(entry)
    return out
