"""Workspace store: atomic writes, content-addressed originals, transactions roll back."""

from __future__ import annotations

import os

import pytest

from sopforge.workspace import Workspace, atomic_write_text


def test_layout_and_blob_dedup(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for sub in ("docs", "datasets", "runs", "models"):
        assert (ws.root / sub).is_dir()
    d1, p1 = ws.store_blob(b"hello", ".md")
    d2, p2 = ws.store_blob(b"hello", ".md")
    assert d1 == d2 and p1 == p2 and p1.read_bytes() == b"hello"
    assert ws.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_blob_suffix_cannot_escape(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _, p = ws.store_blob(b"x", "/../../evil")
    assert p.parent == ws.root / "docs"


def test_transaction_rolls_back(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(RuntimeError):
        with ws.transaction() as db:
            db.execute("INSERT INTO documents VALUES ('a', 'a.md', 0)")
            raise RuntimeError("boom")
    assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_reopen_is_idempotent(tmp_path):
    Workspace(tmp_path / "ws").store_blob(b"a")
    ws = Workspace(tmp_path / "ws")
    assert ws.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
