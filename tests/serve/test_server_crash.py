"""A server killed (SIGKILL) while it retrains: after a restart it serves the model that was
promoted, the interrupted run says so instead of 'running' forever, and a new retrain works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sopforge.workspace import Workspace

PROMOTED = "tiny-base"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """`sopforge serve` in a child process."""

    def __init__(self, ws: Path, port: int, train_config: Path, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [
            sys.executable,
            "-m",
            "sopforge.cli",
            "-w",
            str(ws),
            "serve",
            "--port",
            str(port),
            f"train_config={train_config}",
            "engine.dtype=float32",
            "engine.threads=1",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, env=env)
        wait_for(self.ready, "the server to start")

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        return httpx.get(self.url + "/healthz", timeout=2).status_code == 200

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def workspace(
    tmp_path: Path, tiny_model_dir: Path, tiny_dataset_dir: Path, helpers: Any
) -> tuple[Workspace, Path, str]:
    """Procedures, a promoted model (the tiny base), an admin with an API key, and a train
    config for the tiny model (long enough to be killed midway, short enough to finish)."""
    from sopforge.config import dump_resolved
    from sopforge.serve.auth import UserStore, create_key
    from sopforge.train.config import load_train_config

    ws = Workspace(tmp_path / "ws")
    helpers.fill_workspace(ws)
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO models (model_id, base_model, created_at, promoted, promoted_at)"
            " VALUES (?, ?, ?, 1, ?)",
            (PROMOTED, str(tiny_model_dir), time.time(), time.time()),
        )
    UserStore(ws.path("users.yaml")).add("ada", "admin", "admin-pass-1")
    _, key = create_key(ws, "ada")
    cfg = load_train_config(
        None,
        [
            f"base_model={tiny_model_dir}",
            f"dataset={tiny_dataset_dir}",
            "replay.enabled=false",
            "sft.max_steps=16",
            "sft.per_device_train_batch_size=4",
            "sft.learning_rate=0.01",
            "sft.warmup_steps=0",
            "sft.save_strategy=no",
            "sft.max_length=256",
        ],
    )
    train_config = tmp_path / "train.yaml"
    dump_resolved(cfg, train_config)
    return ws, train_config, key


@pytest.fixture
def server(tmp_path: Path, workspace: tuple[Workspace, Path, str]) -> Iterator[Server]:
    ws, train_config, _ = workspace
    s = Server(ws.root, free_port(), train_config, tmp_path / "server.log")
    try:
        yield s
    finally:
        s.kill()


def runs(ws: Workspace) -> list[tuple[str, str]]:
    rows = ws.db.execute("SELECT run_id, status FROM runs ORDER BY created_at").fetchall()
    return [(r["run_id"], r["status"]) for r in rows]


@pytest.mark.integration
def test_server_killed_during_a_retrain_recovers(
    server: Server, workspace: tuple[Workspace, Path, str]
) -> None:
    ws, _, key = workspace
    bearer = {"Authorization": f"Bearer {key}"}

    def retrain_status() -> dict[str, Any]:
        return httpx.get(server.url + "/admin/api/retrain", headers=bearer, timeout=10).json()

    server.start()
    r = httpx.post(server.url + "/admin/api/retrain", headers=bearer, timeout=30)
    assert r.json() == {"state": "running"}
    wait_for(lambda: retrain_status()["step"] >= 1, "the retrain's first step")
    server.kill()
    ((interrupted, status),) = runs(ws)
    assert status == "running"  # the killed process could not record anything

    server.start()
    models = httpx.get(server.url + "/v1/models", headers=bearer, timeout=10).json()
    assert PROMOTED in [m["id"] for m in models["data"]]
    assert httpx.get(server.url + "/healthz").json()["model"] == PROMOTED
    assert runs(ws) == [(interrupted, "interrupted")]
    shown = retrain_status()
    assert shown["state"] == "idle" and interrupted in shown["message"]

    r = httpx.post(server.url + "/admin/api/retrain", headers=bearer, timeout=30)
    assert r.json() == {"state": "running"}
    done = wait_for(
        lambda: (s := retrain_status())["state"] in ("done", "failed") and s, "the new retrain"
    )
    assert done["state"] == "done", done["message"]
    (old, new) = runs(ws)
    assert old == (interrupted, "interrupted") and new[1] == "finished"
    promoted = ws.db.execute("SELECT model_id FROM models WHERE promoted=1").fetchall()
    assert [p[0] for p in promoted] == [PROMOTED]  # a retrain alone promotes nothing
    assert ws.db.execute("SELECT count(*) FROM models WHERE run_id=?", (new[0],)).fetchone()[0] == 1
