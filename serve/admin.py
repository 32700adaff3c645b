"""What the admin tab and the admin API do: upload and ingest, dataset preview, retrain, evaluation
report, model versions with promote/rollback.

The other stages are reached only through the adapter functions here: `ingest_files`
(sopforge.ingest.pipeline), `run_training` and `recover_interrupted_runs` (sopforge.train.run),
and `promote` / `rollback` (sopforge.train.registry, which owns the promotion gate and history),
so the wiring is in one place. Every action takes the acting `User` and calls `require_admin`
first: the role is checked on the server for each call, whatever the UI shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.serve.auth import User
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)


class PermissionDenied(UserError):
    pass


def require_admin(user: User | None) -> User:
    if user is None:
        raise PermissionDenied("sign in first")
    if not user.is_admin:
        raise PermissionDenied(f"user {user.name!r} ({user.role}) may not use admin actions")
    return user


# ---- ingest ------------------------------------------------------------------------------------


Upload = tuple[str, bytes | Path]  # (file name as the browser sent it, content or temp file)


def ingest_files(
    ws: Workspace, files: Sequence[Path | str | Upload], ingest_config: str = ""
) -> Any:
    """Adapter to the ingest stage: returns its IngestReport (per-file status and errors).

    Every file is an upload: a bare path is a server temp file named after the original (how
    Gradio keeps uploads), a (name, content) pair comes from the admin API. Either way the
    name is cleaned by the ingest stage and only names the document; the temp path is never
    recorded, and the original is stored content-addressed inside the workspace."""
    from sopforge.config import load_config
    from sopforge.ingest.pipeline import IngestConfig, ingest_paths

    cfg = load_config(IngestConfig, ingest_config) if ingest_config else IngestConfig()
    uploads = [f if isinstance(f, tuple) else (Path(f).name, Path(f)) for f in files]
    return ingest_paths(ws, [], cfg, uploads=uploads)


def report_status(f: Any) -> str:
    return f"duplicate of {f.duplicate_of}" if f.status == "duplicate" else f.status


def report_details(f: Any) -> str:
    """The error, else what happened (duplicate, unchanged) and any warnings, in words."""
    if f.error:
        return f.error
    return "; ".join(x for x in (f.note, *f.warnings) if x)


def report_rows(report: Any) -> list[list[Any]]:
    """Ingest report as table rows: file, status, title, sections, pairs, rejects, details.

    Cells are plain text (the table's datatype is "str", which Gradio shows as text, never as
    HTML or Markdown); the file name is the cleaned one, without path parts or control
    characters."""
    return [
        [
            f.name or Path(f.path).name,
            report_status(f),
            f.title,
            f.sections,
            f.pairs,
            f.rejects,
            report_details(f),
        ]
        for f in report.files
    ]


REPORT_HEADERS = ["file", "status", "title", "sections", "pairs", "rejects", "details"]


def report_summary(report: Any) -> str:
    """One line of Markdown: counts only, no file names or titles (those go in the table)."""
    n_err = sum(1 for f in report.files if f.status == "error")
    parts = [f"{len(report.files)} file(s), {n_err} error(s)"]
    by_status: dict[str, int] = {}
    for f in report.files:
        by_status[f.status] = by_status.get(f.status, 0) + 1
    done = [
        f"{by_status[s]} {s}"
        for s in ("new", "updated", "unchanged", "duplicate")
        if s in by_status
    ]
    if done:
        parts.append(", ".join(done))
    if getattr(report, "dataset_id", ""):
        counts = (report.card or {}).get("counts", {})
        parts.append(
            f"dataset {report.dataset_id}: {counts.get('train', '?')} train / "
            f"{counts.get('eval', '?')} eval pairs"
        )
    return "; ".join(parts)


def ingest_uploads(
    user: User | None, ws: Workspace, files: Sequence[Path | str | Upload], ingest_config: str = ""
) -> Any:
    """An admin's upload: `files` are Gradio's temp files (named after the originals) or
    (original name, bytes) pairs. Names with path parts, NUL bytes, bidi overrides or markup are
    cleaned (or the file refused when nothing is left); nothing is written outside the workspace."""
    require_admin(user)
    if not files:
        raise UserError("choose one or more documents to upload")
    return ingest_files(ws, files, ingest_config)


# ---- dataset preview ---------------------------------------------------------------------------


def dataset_preview(
    user: User | None, ws: Workspace, limit: int = 25
) -> tuple[str, list[list[str]]]:
    """(caption, rows of task / contract / question / answer) from the newest dataset."""
    require_admin(user)
    row = ws.db.execute(
        "SELECT dataset_id, path, n_train, n_eval FROM datasets ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return "No dataset yet: upload documents first.", []
    path = Path(row["path"])
    if not path.is_absolute():
        path = ws.root / path
    rows = []
    train = path / "train.jsonl"
    if train.is_file():
        with train.open(encoding="utf-8") as f:
            for line in f:
                if len(rows) >= limit:
                    break
                rec = json.loads(line)
                question = rec["messages"][-2]["content"]
                rows.append(
                    [
                        rec["task"],
                        rec["contract"],
                        question[-300:],
                        rec["messages"][-1]["content"][:400],
                    ]
                )
    caption = f"Dataset {row['dataset_id']}: {row['n_train']} train / {row['n_eval']} eval pairs (first {len(rows)} shown)"
    return caption, rows


# ---- models ------------------------------------------------------------------------------------


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    rows = ws.db.execute(
        "SELECT m.model_id, m.run_id, m.base_model, m.adapter_path, m.created_at, m.promoted,"
        " m.promoted_at, r.metrics FROM models m LEFT JOIN runs r ON r.run_id = m.run_id"
        " ORDER BY m.created_at"
    ).fetchall()
    return [dict(r) for r in rows]


def model_rows(ws: Workspace) -> list[list[Any]]:
    out = []
    for m in list_models(ws):
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(m["created_at"]))
        out.append(
            [
                m["model_id"],
                "yes" if m["promoted"] else "",
                m["run_id"] or "",
                "adapter" if m["adapter_path"] else "base",
                created,
            ]
        )
    return out


MODEL_HEADERS = ["model", "promoted", "run", "kind", "created"]


def promote(user: User | None, ws: Workspace, model_id: str, force: bool = False) -> str:
    """Adapter to the train stage's model registry: promotion is gated on its evaluation (no
    regression) unless `force`; the registry records who did it and why."""
    user = require_admin(user)
    from sopforge.train.registry import promote as registry_promote

    return registry_promote(ws, model_id, force=force, reason=f"promoted by {user.name}")


def rollback(user: User | None, ws: Workspace) -> str:
    """Re-promote the model promoted before the current one (the registry's history); its id."""
    user = require_admin(user)
    from sopforge.train.registry import rollback as registry_rollback

    return registry_rollback(ws, reason=f"rolled back by {user.name}")


def evaluation_report(user: User | None, ws: Workspace, model_id: str | None = None) -> str:
    """The Markdown evaluation report of a model's run (default: the newest run that has one)."""
    require_admin(user)
    if model_id:
        rows = ws.db.execute(
            "SELECT r.path FROM runs r JOIN models m ON m.run_id = r.run_id WHERE m.model_id=?",
            (model_id,),
        ).fetchall()
    else:
        rows = ws.db.execute("SELECT path FROM runs ORDER BY created_at DESC").fetchall()
    for r in rows:
        run_dir = Path(r["path"]) if Path(r["path"]).is_absolute() else ws.root / r["path"]
        reports = sorted(run_dir.glob("*report*.md")) + sorted(run_dir.glob("*/*report*.md"))
        if reports:
            return reports[0].read_text(encoding="utf-8")
    return "No evaluation report yet: retrain to produce one."


# ---- retraining --------------------------------------------------------------------------------


@dataclass
class TrainingStatus:
    state: str = "idle"  # idle | running | done | failed
    step: int = 0
    max_steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    message: str = ""
    result: Any = None
    started_at: float = 0.0

    @property
    def fraction(self) -> float:
        return self.step / self.max_steps if self.max_steps else 0.0


def _progress_callback(status: TrainingStatus) -> Any:
    """A transformers TrainerCallback feeding the status (step, max_steps, loss)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            status.step, status.max_steps = state.global_step, state.max_steps

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs:
                status.losses.append((state.global_step, float(logs["loss"])))

    return Progress()


def run_training(ws: Workspace, train_config: str, status: TrainingStatus) -> Any:
    """Adapter to the train stage: one call of sopforge.train.run.train with a progress callback."""
    from sopforge.train.config import load_train_config
    from sopforge.train.run import train

    cfg = load_train_config(train_config or None)
    return train(cfg, ws, callbacks=[_progress_callback(status)])


TRAIN_NICE = 10  # the admin's retrain runs below the chat's priority


class _SentLosses(list):
    """status.losses in the training child: each appended (step, loss) also goes to the parent."""

    def __init__(self, events: Any):
        super().__init__()
        self.events = events

    def append(self, item: Any) -> None:
        super().append(item)
        self.events.put(("loss", *item))


class _RelayedStatus:
    """The TrainingStatus that `run_training`'s callback writes in the training child."""

    def __init__(self, events: Any):
        self.events, self.step, self._max_steps = events, 0, 0
        self.losses = _SentLosses(events)

    @property
    def max_steps(self) -> int:
        return self._max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:  # set right after step (see _progress_callback)
        self._max_steps = value
        self.events.put(("step", self.step, value))


def _die_with_parent() -> None:
    """A server killed mid-retrain takes its training child with it (Linux: PR_SET_PDEATHSIG),
    so the run stays 'running' for the restarted server to mark interrupted, as when training
    ran in the server's own process."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent was already gone before the call took effect
        os._exit(1)


def _train_in_child(root: str, train_config: str, events: Any, nice: int) -> None:
    """The child process of `run_training_process`: lower priority, idle OpenMP threads asleep,
    progress and the outcome sent back through `events`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(nice)
    try:
        run_id = run_training(Workspace(root), train_config, _RelayedStatus(events))  # type: ignore[arg-type]
        events.put(("done", run_id))
    except BaseException as e:  # the parent raises it as the retrain's error
        events.put(("error", f"{type(e).__name__}: {e}"))


def run_training_process(
    ws: Workspace, train_config: str, status: TrainingStatus, nice: int = TRAIN_NICE
) -> Any:
    """`run_training` in a process of its own, `nice` below the server: the chat keeps the cores
    it needs while a retrain runs, and torch's threads never share a process with the
    llama.cpp engine (they slow its decoding by ~30% once started). Progress is relayed into
    `status` as it comes."""
    import multiprocessing
    import queue as queue_module

    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    child = ctx.Process(
        target=_train_in_child,
        args=(str(ws.root), train_config, events, nice),
        name="sopforge-retrain",
        daemon=True,
    )
    child.start()
    try:
        while True:
            try:
                event = events.get(timeout=1.0)
            except queue_module.Empty:
                if not child.is_alive():
                    raise UserError(
                        f"the training process stopped (exit code {child.exitcode}) without a "
                        "result; see the server log"
                    ) from None
                continue
            kind, *rest = event
            if kind == "step":
                status.step, status.max_steps = rest
            elif kind == "loss":
                status.losses.append((int(rest[0]), float(rest[1])))
            elif kind == "done":
                return rest[0]
            else:
                raise UserError(f"retrain failed in its process: {rest[0]}")
    finally:
        child.join(timeout=30)


def recover_interrupted_runs(ws: Workspace) -> list[str]:
    """Adapter to the train stage, called when the server starts: runs left 'running' by a
    process that is gone (a server stopped mid-retrain, a killed `sopforge train`) are marked
    'interrupted'. Returns their ids."""
    from sopforge.train.run import mark_interrupted_runs

    return mark_interrupted_runs(ws)


class TrainingJob:
    """At most one retrain at a time, in a background thread; the UI polls `status`."""

    def __init__(
        self,
        ws: Workspace,
        train_config: str = "",
        runner: Callable[..., Any] = run_training_process,
        interrupted: Sequence[str] = (),
    ):
        self.ws = ws
        self.train_config = train_config
        self.runner = runner
        self.status = TrainingStatus()
        if interrupted:  # what the admin tab shows until the next retrain
            self.status.message = (
                f"run {', '.join(interrupted)} stopped unfinished (its process was stopped) and is "
                "marked interrupted; start a new retrain, or continue it with "
                "`sopforge train --resume RUN_ID`"
            )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, user: User | None) -> TrainingStatus:
        require_admin(user)
        with self._lock:
            if self.status.state == "running":
                raise UserError("a retrain is already running; wait for it to finish")
            self.status = TrainingStatus(
                state="running", started_at=time.time(), message="starting"
            )
            self._thread = threading.Thread(target=self._run, args=(self.status,), daemon=True)
            self._thread.start()
        return self.status

    def _run(self, status: TrainingStatus) -> None:
        try:
            status.result = self.runner(self.ws, self.train_config, status)
            status.state, status.message = "done", "training finished"
        except Exception as e:  # shown in the admin tab; the server keeps serving
            log.exception("retrain failed")
            status.state, status.message = "failed", f"retrain failed: {e}"

    def wait(self, timeout: float | None = None) -> TrainingStatus:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status
