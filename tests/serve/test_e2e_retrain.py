"""Issue #5 end to end on a running `sopforge serve` (a subprocess, as users run it):

admin uploads an SOP -> admin retrain -> admin promotes -> the server serves the new model ->
employee asks -> admin uploads a changed version (one fact in one section) -> `sopforge retrain
--force` in another process -> the server hot-swaps to it by itself (its registry watcher), no
restart -> employee asks again. The audit log ties every answer to the model that gave it and the
document version it cites: before the update the old version, after it never the superseded one.

The model is the tiny random Llama: the test checks the wiring (which model, which version), not
answer quality.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sopforge.cli import main
from sopforge.serve.audit import logged_answers
from sopforge.serve.auth import UserStore, create_key
from sopforge.train import registry
from sopforge.workspace import Workspace

pytestmark = pytest.mark.integration

SOP = """# Expense claims

## Approval

Claims over 500 pounds need approval from your line manager. Submit the claim within 30 days of
purchase, with the receipt attached. Finance pays approved claims in the next payroll run.

## Receipts

1. Photograph the receipt.
2. Attach it to the claim in the finance portal.
3. Keep the paper copy for 90 days.

## Travel

Book rail travel through the travel desk. Standard class is the default for journeys under three
hours. First class needs approval from a director before booking.
"""
# One fact changed in one section (Approval); Receipts and Travel are untouched.
CHANGED_SOP = SOP.replace("your line manager", "the finance director")
QUESTIONS = ("Who approves expense claims over 500 pounds?", "How do I attach a receipt?")


def tiny_train_config(path: Path, tiny_model_dir: Path) -> Path:
    """Two optimizer steps on the tiny model: the admin retrain and `sopforge retrain` use it."""
    cfg = {
        "base_model": str(tiny_model_dir),
        "max_eval_records": 4,
        "replay": {"enabled": False},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
        "sft": {
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 0.01,
            "warmup_steps": 0,
            "max_length": 256,
            "save_strategy": "no",
            "logging_steps": 1,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    admin_key: str
    employee_key: str
    log: Path

    def get(self, path: str, key: str) -> Any:
        r = httpx.get(self.url + path, headers=_auth(key), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, key: str, **kw: Any) -> Any:
        r = httpx.post(self.url + path, headers=_auth(key), timeout=120, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def served_model(self) -> str:
        return httpx.get(self.url + "/healthz", timeout=10).json()["model"]

    def upload(self, name: str, text: str) -> dict[str, Any]:
        files = [("files", (name, text.encode(), "text/markdown"))]
        return self.post("/admin/api/documents", self.admin_key, files=files)

    def ask(self, question: str) -> dict[str, Any]:
        body = {
            "model": "sopforge",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 12,
        }
        return self.post("/v1/chat/completions", self.employee_key, json=body)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def server(tmp_path: Path, tiny_model_dir: Path, helpers: Any) -> Iterator[Server]:
    ws = Workspace(tmp_path / "ws")
    users = UserStore(ws.path("users.yaml"))
    users.add("ada", "admin", "admin-pass-1")
    users.add("eve", "employee", "employee-pass-1")
    _, admin_key = create_key(ws, "ada")
    _, employee_key = create_key(ws, "eve")
    ingest_cfg = tmp_path / "ingest.yaml"
    ingest_cfg.write_text("eval_fraction: 0.3\n")  # holds one of the three sections out
    port = helpers.free_port()
    cmd = [sys.executable, "-m", "sopforge.cli", "-w", str(ws.root), "serve", "--port", str(port)]
    cmd += [
        f"engine.base_model={tiny_model_dir}",  # served until a model is promoted
        "engine.dtype=float32",
        "engine.threads=1",
        "guard.max_attempts=1",
        f"train_config={tiny_train_config(tmp_path / 'tiny-train.yaml', tiny_model_dir)}",
        f"ingest_config={ingest_cfg}",
    ]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(f"http://127.0.0.1:{port}", proc, admin_key, employee_key, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, srv.output()
            try:
                srv.served_model()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (
                    "sopforge serve did not come up\n" + srv.output()
                )
                time.sleep(0.3)
        yield srv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def wait_for_model(srv: Server, model_id: str, timeout: float) -> float:
    """Seconds until /healthz reports `model_id` (fails after `timeout`)."""
    start = time.monotonic()
    while srv.served_model() != model_id:
        assert srv.proc.poll() is None, srv.output()
        assert time.monotonic() - start < timeout, (
            f"still serving {srv.served_model()}\n" + srv.output()
        )
        time.sleep(0.1)
    return time.monotonic() - start


def admin_retrain(srv: Server) -> dict[str, Any]:
    assert srv.post("/admin/api/retrain", srv.admin_key) == {"state": "running"}
    deadline = time.monotonic() + 180
    while (status := srv.get("/admin/api/retrain", srv.admin_key))["state"] == "running":
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.5)
    assert status["state"] == "done", status["message"] + "\n" + srv.output()
    return status


def doc_versions(answer: dict[str, Any], doc_id: str) -> set[str]:
    """Versions of `doc_id` among the sources an API answer was given and shows."""
    return {s["version"] for s in answer["sopforge"]["sources"] if s["doc_id"] == doc_id}


def cited_versions(entry: dict[str, Any], doc_id: str) -> set[str]:
    """Versions of `doc_id` an audit entry cites (sources shown, and valid model citations)."""
    return {c["version"] for c in entry["citations"] if c["valid"] and c["doc_id"] == doc_id}


def test_upload_train_promote_change_retrain_hot_swap_audit(
    server: Server, tiny_model_dir: Path, tmp_path: Path
) -> None:
    srv = server
    ws = Workspace(tmp_path / "ws")
    assert srv.served_model() == f"base:{tiny_model_dir.name}"

    # Admin: upload, train, promote. The promoted model is served at once.
    report = srv.upload("expenses.md", SOP)
    assert [f["status"] for f in report["files"]] == ["new"]
    doc_id = report["files"][0]["doc_id"]
    status = admin_retrain(srv)
    assert status["step"] == status["max_steps"] == 2 and status["losses"]
    models = srv.get("/admin/api/models", srv.admin_key)
    trained = [m["model_id"] for m in models["models"] if m["adapter_path"]]
    assert len(trained) == 1 and models["serving"] == f"base:{tiny_model_dir.name}"
    first = trained[0]
    # not evaluated, so the registry's gate refuses it unless forced
    refused = httpx.post(
        f"{srv.url}/admin/api/models/{first}/promote", headers=_auth(srv.admin_key), timeout=60
    )
    assert refused.status_code == 400 and "not been evaluated" in refused.text
    promoted = srv.post(f"/admin/api/models/{first}/promote?force=true", srv.admin_key)
    assert promoted == {"promoted": first, "serving": first}
    assert srv.served_model() == first

    # Employee: answers come from the promoted model, grounded in version 1.
    v1 = ws.db.execute("SELECT version FROM versions WHERE doc_id=?", (doc_id,)).fetchone()[0]
    before = [srv.ask(q) for q in QUESTIONS]
    assert [a["model"] for a in before] == [first, first]
    assert all(doc_versions(a, doc_id) == {v1} for a in before)

    # Admin: the procedure changes; the old version is superseded at once (retrieval follows).
    report = srv.upload("expenses.md", CHANGED_SOP)
    assert [f["status"] for f in report["files"]] == ["updated"]
    assert report["files"][0]["changes"] == {"added": 0, "changed": 1, "removed": 0}
    v2 = ws.db.execute(
        "SELECT version FROM versions WHERE doc_id=? AND status='current'", (doc_id,)
    ).fetchone()[0]
    assert v2 != v1
    meanwhile = srv.ask(QUESTIONS[0])  # old model still serving, but shown only current sources
    assert meanwhile["model"] == first and doc_versions(meanwhile, doc_id) == {v2}

    # `sopforge retrain --force` in another process (this one); the server follows the registry.
    started = time.monotonic()
    rc = main(
        ["-w", str(ws.root), "retrain", "--force", "--limit", "4"]
        + ["--config", str(tmp_path / "tiny-train.yaml")]
    )
    retrain_s = time.monotonic() - started
    assert rc == 0
    second = registry.promoted_model(ws)["model_id"]
    assert second != first
    run = ws.db.execute("SELECT config FROM runs WHERE run_id=?", (second,)).fetchone()
    assert '"init_adapter": "promoted"' in run["config"]  # warm-started from the served adapter
    swap_s = wait_for_model(srv, second, timeout=10)
    assert srv.proc.poll() is None  # the same server process all along: no restart
    log = srv.log.read_text(errors="replace")
    assert log.count("Started server process") == 1 and f"engine now serves {second}" in log

    after = [srv.ask(q) for q in QUESTIONS]
    assert [a["model"] for a in after] == [second, second]
    assert all(doc_versions(a, doc_id) == {v2} for a in after)

    # The audit log: every employee answer with its model and the version it cites.
    entries = logged_answers(ws, user="eve")
    assert [e["id"] for e in entries] == [
        a["sopforge"]["audit_id"] for a in [*before, meanwhile, *after]
    ]
    assert [e["model_id"] for e in entries] == [first, first, first, second, second]
    assert all(e["citations"] for e in entries)
    for e in entries[:2]:
        assert cited_versions(e, doc_id) == {v1}
    for e in entries[2:]:
        assert cited_versions(e, doc_id) == {v2}
        assert {c["status"] for c in e["citations"] if c["valid"]} == {"current"}
    for e in entries[3:]:  # after the swap: not even a removed (invalid) citation names v1
        assert all(c["version"] != v1 for c in e["citations"])
    # read back now, the versions the first answers cited show as superseded
    assert {c["status"] for e in entries[:2] for c in e["citations"] if c["valid"]} == {
        "superseded"
    }
    print(f"retrain {retrain_s:.1f} s, then served by the server {swap_s:.1f} s later")
