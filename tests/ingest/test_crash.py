"""Crash safety: ingest killed with SIGKILL midway, then run again, equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sopforge.ingest.pipeline import IngestConfig, ingest_paths
from sopforge.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
INPUTS = [CORPUS / "md", CORPUS / "pdf" / "nist_sp800-61r2_incident_handling_guide.pdf"]


def _count(db: Path, sql: str) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_midway_then_rerun_equals_clean_run(tmp_path):
    clean = ingest_paths(Workspace(tmp_path / "clean"), INPUTS, IngestConfig())

    ws_dir = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "sopforge.cli",
        "-w",
        str(ws_dir),
        "ingest",
        *map(str, INPUTS),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    db = ws_dir / "sopforge.db"
    deadline = time.time() + 120
    # kill once some sections have their pairs but before the dataset exists
    while time.time() < deadline and proc.poll() is None:
        if _count(db, "SELECT COUNT(*) FROM generated") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; make the input bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _count(db, "SELECT COUNT(*) FROM datasets") == 0

    ws = Workspace(ws_dir)
    assert ws.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rerun = ingest_paths(ws, INPUTS, IngestConfig())
    assert not rerun.errors
    assert rerun.dataset_id == clean.dataset_id
    assert (Path(rerun.dataset_dir) / "train.jsonl").read_bytes() == (
        Path(clean.dataset_dir) / "train.jsonl"
    ).read_bytes()
    # no temp files left behind in the dataset folder
    assert not [p for p in (ws_dir / "datasets").iterdir() if p.name.startswith(".")]
