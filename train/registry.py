"""Model registry: which models exist (imported bases, trained adapters) and which one is served.

The `models` table holds one row per model; exactly one may have `promoted = 1`. Every promotion
and rollback is logged in `promotions`, and that log is a stack: promote pushes, rollback pops
back to the model promoted before. Serve loads `promoted_model()`: `base_model` is the absolute
path of the HF base folder, `adapter_path` the absolute path of the PEFT adapter (None = base).

Promotion is gated: a trained model must have been evaluated (`sopforge eval`) without
regressions vs its base, and may not be less format-compliant than the model it replaces on the
same dataset; `force=True` overrides, and is logged as forced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)

TOLERANCE = 0.02


class RegistryError(UserError):
    pass


def _row(workspace: Workspace, model_id: str) -> dict[str, Any]:
    row = workspace.db.execute(
        "SELECT m.*, r.status AS run_status, r.metrics AS run_metrics, r.dataset_id"
        " FROM models m LEFT JOIN runs r ON r.run_id = m.run_id WHERE m.model_id = ?",
        (model_id,),
    ).fetchone()
    if row is None:
        raise RegistryError(
            f"model {model_id!r} not found; see `sopforge models list` for the known ones"
        )
    out = dict(row)
    out["metrics"] = json.loads(out.pop("run_metrics") or "{}")
    return out


def resolve_model_id(workspace: Workspace, spec: str) -> str:
    """A model id, or 'latest' (newest trained model) or 'promoted' (the one being served)."""
    db = workspace.db
    if spec == "latest":
        row = db.execute(
            "SELECT model_id FROM models WHERE adapter_path IS NOT NULL"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise RegistryError("no trained model yet; run `sopforge train` first")
        return str(row["model_id"])
    if spec in ("promoted", "current"):
        row = db.execute("SELECT model_id FROM models WHERE promoted = 1").fetchone()
        if row is None:
            raise RegistryError("no model is promoted yet; use `sopforge models promote ID`")
        return str(row["model_id"])
    return spec


def add_adapter(workspace: Workspace, adapter: Path, base_model: Path, model_id: str = "") -> str:
    """Register a PEFT adapter trained elsewhere (another machine, a GPU box) on `base_model`.

    The adapter folder is copied to runs/<id>/adapter (registered models never change under the
    server's feet) and recorded as a finished run of kind `import`, so it can be evaluated,
    promoted and rolled back like a trained one. Returns the model id.
    """
    adapter, base_model = Path(adapter), Path(base_model)
    if not (adapter / "adapter_config.json").is_file():
        raise RegistryError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    if not (base_model / "config.json").is_file():
        raise RegistryError(f"base model {base_model} is not a model folder (no config.json)")
    model_id = claim_model_id(
        workspace, model_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{adapter.resolve().name}"
    )
    with staged_run(workspace, model_id) as tmp:
        shutil.copytree(adapter, tmp / "adapter")
        register_run(workspace, model_id, tmp, "import", base_model, {"source": str(adapter)})
    return model_id


@contextlib.contextmanager
def staged_run(workspace: Workspace, model_id: str) -> Iterator[Path]:
    """A fresh folder (runs/.<id>.tmp) to build a new run's files in; `register_run` moves it
    into place, and whatever is left of it when the block ends (an error) is removed."""
    tmp = workspace.path("runs", f".{model_id}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def claim_model_id(workspace: Workspace, model_id: str) -> str:
    """`model_id` if it is a valid, unused model id and its run folder is free; else a clear error."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", model_id):
        raise RegistryError(f"model id {model_id!r}: use letters, digits, '.', '_' and '-'")
    if workspace.db.execute("SELECT 1 FROM models WHERE model_id=?", (model_id,)).fetchone():
        raise RegistryError(f"model {model_id!r} exists already; pass another id")
    run = workspace.path("runs", model_id)
    if run.exists():
        raise RegistryError(f"{run} exists already; pass another id")
    return model_id


def register_run(
    workspace: Workspace,
    model_id: str,
    folder: Path,
    kind: str,
    base_model: Path,
    config: dict[str, Any],
    dataset: tuple[str | None, str | None] = (None, None),
    metrics: dict[str, Any] | None = None,
) -> None:
    """Move `folder` (holding adapter/) to runs/<model_id> and record it as a finished run of
    `kind` and as a model, in one transaction."""
    run = workspace.path("runs", model_id)
    folder.rename(run)
    now = time.time()
    with workspace.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, kind, base_model, dataset_id, dataset_hash,"
            " config, status, path, metrics, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'finished', ?, ?, ?)",
            (
                model_id,
                now,
                kind,
                str(base_model.resolve()),
                *dataset,
                json.dumps(config),
                str(run),
                json.dumps(metrics or {}),
                now,
            ),
        )
        db.execute(
            "INSERT INTO models (model_id, run_id, base_model, adapter_path, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (model_id, model_id, str(base_model.resolve()), str(run / "adapter"), now),
        )


def list_models(workspace: Workspace) -> list[dict[str, Any]]:
    rows = workspace.db.execute("SELECT model_id FROM models ORDER BY created_at").fetchall()
    return [_row(workspace, r["model_id"]) for r in rows]


def show_model(workspace: Workspace, spec: str) -> dict[str, Any]:
    model = _row(workspace, resolve_model_id(workspace, spec))
    model["promotions"] = [
        dict(r)
        for r in workspace.db.execute(
            "SELECT action, forced, reason, at FROM promotions WHERE model_id = ? ORDER BY id",
            (model["model_id"],),
        )
    ]
    return model


def promoted_model(workspace: Workspace) -> dict[str, Any] | None:
    """The served model: {model_id, base_model, adapter_path, run_id, ...}, or None."""
    row = workspace.db.execute("SELECT model_id FROM models WHERE promoted = 1").fetchone()
    return _row(workspace, row["model_id"]) if row else None


def gate(candidate: dict[str, Any], current: dict[str, Any] | None) -> list[str]:
    """Reasons not to promote `candidate` over `current` (empty = ok)."""
    if candidate["adapter_path"] is None:  # a base model is the reference point itself
        return []
    ev = candidate["metrics"].get("eval")
    if not ev:
        return [
            f"{candidate['model_id']} has not been evaluated; run "
            f"`sopforge eval --run {candidate['run_id']}` first"
        ]
    problems = list(ev.get("regressions", []))
    cur_ev = (current or {}).get("metrics", {}).get("eval")
    if cur_ev and cur_ev.get("dataset_id") == ev.get("dataset_id"):
        new = ev["tuned"]["overall"].get("compliance") or 0.0
        old = cur_ev["tuned"]["overall"].get("compliance") or 0.0
        if new < old - TOLERANCE:
            problems.append(
                f"format compliance {new:.2f} is below the promoted "
                f"{current['model_id']}'s {old:.2f} on the same eval set"  # type: ignore[index]
            )
    return problems


def _stack(workspace: Workspace) -> list[str]:
    """Promotion history as a stack (promote pushes, rollback pops)."""
    stack: list[str] = []
    for r in workspace.db.execute("SELECT model_id, action FROM promotions ORDER BY id"):
        if r["action"] == "promote":
            stack.append(r["model_id"])
        elif r["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _set_promoted(db: Any, model_id: str) -> None:
    db.execute("UPDATE models SET promoted = 0 WHERE promoted = 1")
    db.execute(
        "UPDATE models SET promoted = 1, promoted_at = ? WHERE model_id = ?",
        (time.time(), model_id),
    )


def serving_file(model: dict[str, Any]) -> Path | None:
    """The GGUF the llama.cpp engine serves for `model`, exported now if it is not yet (before
    the promotion is recorded): a running server that follows the registry then only loads it,
    and a rollback to it later finds it ready. None (with a warning) if it cannot be exported;
    the server then reports why when it tries."""
    from sopforge.train.export_gguf import cached_gguf
    from sopforge.train.generate import engine_config

    cfg = engine_config()
    if cfg.backend != "llamacpp":
        return None
    adapter = Path(model["adapter_path"]) if model["adapter_path"] else None
    try:
        return cached_gguf(Path(model["base_model"]), adapter, cfg.llamacpp_dtype, in_process=True)
    except (UserError, OSError, ValueError) as e:
        log.warning("could not export %s for the llama.cpp engine: %s", model["model_id"], e)
        return None


def promote(workspace: Workspace, spec: str, force: bool = False, reason: str = "") -> str:
    """Make `spec` the served model (gated unless `force`); returns its id."""
    model_id = resolve_model_id(workspace, spec)
    candidate = _row(workspace, model_id)
    if candidate["adapter_path"] is not None and candidate.get("run_status") != "finished":
        raise RegistryError(f"run {candidate['run_id']} is not finished; it cannot be promoted")
    current = promoted_model(workspace)
    if current and current["model_id"] == model_id:
        return model_id
    problems = gate(candidate, current)
    if problems and not force:
        raise RegistryError(
            f"not promoting {model_id}: " + "; ".join(problems) + " (use --force to override)"
        )
    serving_file(candidate)
    with workspace.transaction() as db:
        _set_promoted(db, model_id)
        db.execute(
            "INSERT INTO promotions (model_id, action, forced, reason, at) VALUES (?, 'promote', ?, ?, ?)",
            (model_id, int(bool(problems) and force), reason or "; ".join(problems), time.time()),
        )
    return model_id


def rollback(workspace: Workspace, reason: str = "") -> str:
    """Re-promote the model that was promoted before the current one; returns its id."""
    stack = _stack(workspace)
    if len(stack) < 2:
        raise RegistryError("nothing to roll back to: fewer than two promotions in the history")
    previous = stack[-2]
    serving_file(_row(workspace, previous))  # exported already when it was promoted, normally
    with workspace.transaction() as db:
        _set_promoted(db, previous)
        db.execute(
            "INSERT INTO promotions (model_id, action, forced, reason, at) VALUES (?, 'rollback', 0, ?, ?)",
            (previous, reason or f"rolled back from {stack[-1]}", time.time()),
        )
    return previous
