"""The audit log read back: each answer's model, and the document version each citation names,
with that version's status now (after an update: which answers cited the superseded version)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sopforge.records import citation
from sopforge.serve.audit import AuditEntry, log_answer, logged_answers, resolve_citation
from sopforge.workspace import Workspace


def test_logged_answers_resolve_cited_versions(tmp_path: Path, helpers: SimpleNamespace) -> None:
    ws = Workspace(tmp_path / "ws")
    old = helpers.add_document(ws, "exp", "Expense Policy", [("Approval", "The manager approves.")])
    old_cite = citation("Expense Policy", "Approval", old)
    with ws.transaction() as db:  # the update: v1 superseded, v2 current
        db.execute("UPDATE versions SET status='superseded' WHERE doc_id='exp'")
    new = helpers.add_document(
        ws, "exp", "Expense Policy", [("Approval", "The director approves.")]
    )
    new_cite = citation("Expense Policy", "Approval", new)
    made_up = "[Expense Policy § Nowhere, v00000000]"

    def log(user: str, model: str, cites: list[dict]) -> int:
        return log_answer(
            ws, AuditEntry(user, "api", model, "Who approves?", "…", "plain", True, cites)
        )

    log("eve", "run-1", [{"citation": old_cite, "cited": False, "valid": True, "retrieved": True}])
    second = log("eve", "run-2", [
        {"citation": new_cite, "cited": True, "valid": True, "retrieved": True},
        {"citation": made_up, "cited": True, "valid": False, "retrieved": False},
    ])  # fmt: skip
    log("bob", "run-2", [])

    entries = logged_answers(ws, user="eve")
    assert [(e["model_id"], e["user"]) for e in entries] == [("run-1", "eve"), ("run-2", "eve")]
    assert [(c["doc_id"], c["version"], c["status"]) for c in entries[0]["citations"]] == [
        ("exp", old, "superseded")
    ]
    assert [(c["version"], c["status"], c["valid"]) for c in entries[1]["citations"]] == [
        (new, "current", True),
        (None, None, False),
    ]
    assert [e["user"] for e in logged_answers(ws, after_id=second)] == ["bob"]
    assert resolve_citation(ws, "not a citation") == {
        "doc_id": None,
        "version": None,
        "status": None,
    }
