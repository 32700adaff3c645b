"""Crash safety of training: a run killed with SIGKILL resumes from its last whole checkpoint.

Fast tests cover the pieces (cut-off checkpoints and metrics lines, the run lock, marking runs
whose process is gone); one integration test kills a real `sopforge train` process after its
first checkpoint and resumes it with `--resume`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sopforge.train.run import (
    RunError,
    last_checkpoint,
    mark_interrupted_runs,
    run_lock,
    trim_metrics,
)
from sopforge.workspace import Workspace


def write_checkpoint(checkpoints: Path, step: int, state: str | None) -> Path:
    folder = checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_a_checkpoint_cut_off_mid_save_is_skipped(tmp_path: Path) -> None:
    whole = write_checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    write_checkpoint(tmp_path, 8, '{"global_step": 8, "log_hist')  # killed while writing
    write_checkpoint(tmp_path, 12, None)  # killed before the trainer state
    assert last_checkpoint(tmp_path) == whole
    assert last_checkpoint(tmp_path / "missing") is None


def test_metrics_trimmed_past_the_checkpoint_and_a_cut_off_line_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "lo')
    trim_metrics(path, 4)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def add_run(ws: Workspace, run_id: str, status: str = "running") -> Path:
    path = ws.path("runs", run_id)
    path.mkdir(parents=True, exist_ok=True)
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, kind, base_model, config, status, path)"
            " VALUES (?, ?, 'train', 'tiny', '{}', ?, ?)",
            (run_id, time.time(), status, str(path)),
        )
    return path


def status_of(ws: Workspace, run_id: str) -> str:
    return ws.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]


def test_only_runs_whose_process_is_gone_are_marked_interrupted(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    live = add_run(ws, "live")
    add_run(ws, "dead")  # its process was killed: nobody holds its lock
    add_run(ws, "done", status="finished")
    holding, release = threading.Event(), threading.Event()

    def trainer() -> None:  # stands in for a training process holding its run's lock
        with run_lock(live):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=trainer)
    t.start()
    assert holding.wait(10)
    try:
        assert mark_interrupted_runs(ws) == ["dead"]
        assert [status_of(ws, r) for r in ("live", "dead", "done")] == [
            "running",
            "interrupted",
            "finished",
        ]
        with pytest.raises(RunError, match="another process"):  # no second trainer on it
            with run_lock(live):
                pass
    finally:
        release.set()
        t.join()
    assert mark_interrupted_runs(ws) == ["live"]  # its trainer is gone now
    assert mark_interrupted_runs(ws) == []


# ---- a real process, killed --------------------------------------------------------------

MAX_STEPS = 40
SAVE_STEPS = 4


def sopforge(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sopforge.cli", "-w", str(ws), *args]


def child_env() -> dict[str, str]:
    # One thread each: the tiny model gains nothing from more, and the machine is shared.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def whole_checkpoint(ws: Path) -> Path | None:
    found = [last_checkpoint(d / "checkpoints") for d in ws.joinpath("runs").glob("*")]
    return max((c for c in found if c), key=lambda c: int(c.name.split("-")[1]), default=None)


@pytest.mark.integration
def test_sigkilled_training_resumes_from_its_checkpoint(overrides, tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    args = overrides(
        f"sft.max_steps={MAX_STEPS}",
        "sft.save_strategy=steps",
        f"sft.save_steps={SAVE_STEPS}",
    )
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        sopforge(ws_dir, "train", *args), stdout=log, stderr=log, env=child_env()
    )
    deadline = time.time() + 120
    while proc.poll() is None and whole_checkpoint(ws_dir) is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.time()

    ws = Workspace(ws_dir)
    (run,) = ws.db.execute("SELECT run_id, status FROM runs").fetchall()
    run_id = run["run_id"]
    assert run["status"] == "running"  # nobody could record the kill
    checkpoint = whole_checkpoint(ws_dir)
    assert checkpoint is not None
    step = int(checkpoint.name.split("-")[1])
    assert SAVE_STEPS <= step < MAX_STEPS

    done = subprocess.run(
        sopforge(ws_dir, "train", "--resume"),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run {run_id}: finished" in done.stdout

    # Continued from the checkpoint's step, not from 0, and every step logged exactly once.
    lines = [
        json.loads(x) for x in ws.path("runs", run_id, "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r for r in lines if "loss" in r]
    assert [r["step"] for r in losses] == list(range(1, MAX_STEPS + 1))
    resumed = [r["step"] for r in losses if r["time"] > killed_at]
    assert resumed == list(range(step + 1, MAX_STEPS + 1))

    runs = ws.db.execute("SELECT run_id, status, metrics FROM runs").fetchall()
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "finished")]
    assert json.loads(runs[0]["metrics"])["train"]["global_step"] == MAX_STEPS
    models = ws.db.execute("SELECT model_id, adapter_path FROM models WHERE run_id=?", (run_id,))
    ((model_id, adapter),) = [tuple(m) for m in models]
    assert model_id == run_id and (Path(adapter) / "adapter_config.json").is_file()
    assert ws.db.execute("SELECT count(*) FROM models").fetchone()[0] == 1
    leftovers = [p.name for p in ws.path("runs", run_id).iterdir() if p.name.startswith(".adapter")]
    assert leftovers == []  # no half-written adapter folder
