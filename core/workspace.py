"""The workspace: one folder holding all of sopforge's state.

    <root>/sopforge.db     SQLite (WAL): documents, versions, sections, pairs, datasets, runs, models,
                           audit log, feedback, API keys
    <root>/docs/           uploaded originals, content-addressed by sha256, never overwritten
    <root>/datasets/<id>/  train.jsonl, eval.jsonl, card.json
    <root>/runs/<id>/      adapter, resolved config, metrics, checkpoints, reports
    <root>/models/         imported base models

Every file write goes through a temp file + rename and every multi-row DB change through one
transaction, so a crash at any point leaves the workspace usable and re-running a command is safe.
The stages share this schema; each keeps its own queries next to its own code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from sopforge.errors import UserError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    version TEXT NOT NULL,              -- sha256 of the original bytes
    status TEXT NOT NULL CHECK (status IN ('current', 'superseded')),
    filename TEXT NOT NULL, format TEXT NOT NULL, title TEXT NOT NULL,
    pages INTEGER NOT NULL DEFAULT 0, blob TEXT NOT NULL, text TEXT NOT NULL,
    ingested_at REAL NOT NULL, superseded_at REAL,
    PRIMARY KEY (doc_id, version)
);
CREATE TABLE IF NOT EXISTS sections (
    doc_id TEXT NOT NULL, version TEXT NOT NULL, section_id TEXT NOT NULL,
    ord INTEGER NOT NULL, title TEXT NOT NULL, level INTEGER NOT NULL,
    content_hash TEXT NOT NULL, body TEXT NOT NULL,
    span_start INTEGER NOT NULL, span_end INTEGER NOT NULL,
    PRIMARY KEY (doc_id, version, section_id)
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL, old_version TEXT, new_version TEXT NOT NULL,
    section_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('added', 'changed', 'removed')),
    diff TEXT NOT NULL DEFAULT '', at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY,           -- hash of the record's content
    doc_id TEXT NOT NULL, version TEXT NOT NULL, section_id TEXT NOT NULL,
    content_hash TEXT NOT NULL, task TEXT NOT NULL, contract TEXT NOT NULL,
    generator TEXT NOT NULL, record TEXT NOT NULL,
    gen_key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at REAL NOT NULL, retired_at REAL
);
CREATE INDEX IF NOT EXISTS pairs_section ON pairs (doc_id, content_hash, status);
CREATE TABLE IF NOT EXISTS generated (      -- a section's pairs were generated (even if zero)
    doc_id TEXT NOT NULL, content_hash TEXT NOT NULL, gen_key TEXT NOT NULL,
    n_pairs INTEGER NOT NULL, n_rejects INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (doc_id, content_hash, gen_key)
);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL, version TEXT NOT NULL, section_id TEXT NOT NULL,
    content_hash TEXT NOT NULL DEFAULT '', gen_key TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL, contract TEXT NOT NULL, generator TEXT NOT NULL,
    reason TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT PRIMARY KEY, created_at REAL NOT NULL, hash TEXT NOT NULL,
    path TEXT NOT NULL, n_train INTEGER NOT NULL, n_eval INTEGER NOT NULL, card TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, kind TEXT NOT NULL,
    base_model TEXT NOT NULL, dataset_id TEXT, dataset_hash TEXT, config TEXT NOT NULL,
    status TEXT NOT NULL, path TEXT NOT NULL, metrics TEXT NOT NULL DEFAULT '{}',
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY, run_id TEXT, base_model TEXT NOT NULL, adapter_path TEXT,
    created_at REAL NOT NULL, promoted INTEGER NOT NULL DEFAULT 0, promoted_at REAL
);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL, action TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, user TEXT NOT NULL,
    channel TEXT NOT NULL, model_id TEXT, question TEXT NOT NULL, answer TEXT NOT NULL,
    format TEXT, valid INTEGER, citations TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, audit_id INTEGER NOT NULL, user TEXT NOT NULL,
    rating INTEGER NOT NULL, comment TEXT NOT NULL DEFAULT '', at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, user TEXT NOT NULL,
    created_at REAL NOT NULL, revoked_at REAL
);
"""


class WorkspaceError(UserError):
    pass


def default_root() -> Path:
    return Path(os.environ.get("SOPFORGE_WORKSPACE", "workspace"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class Workspace:
    """Handle on a workspace folder. Safe to share across threads (one connection per thread)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("docs", "datasets", "runs", "models"):
            (self.root / sub).mkdir(exist_ok=True)
        self._local = threading.local()
        self.db.executescript(SCHEMA)  # idempotent (IF NOT EXISTS); executescript commits itself
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @property
    def db_path(self) -> Path:
        return self.root / "sopforge.db"

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.db_path, timeout=30, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as e:
                raise WorkspaceError(
                    f"{self.db_path}: cannot open the workspace database ({e})"
                ) from e
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        db = self.db
        if db.in_transaction:  # nested use joins the outer transaction
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- content-addressed originals -------------------------------------------------------
    def store_blob(self, data: bytes, suffix: str = "") -> tuple[str, Path]:
        """Store original bytes under docs/<sha256><suffix>; never overwrites. Returns (sha, path)."""
        digest = sha256_bytes(data)
        safe_suffix = "".join(c for c in suffix.lower() if c.isalnum() or c == ".")[:10]
        path = self.root / "docs" / f"{digest}{safe_suffix}"
        if not path.exists():
            atomic_write_bytes(path, data)
        return digest, path

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)
