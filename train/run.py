"""`sopforge train`: LoRA supervised fine-tuning with TRL's SFTTrainer + PEFT, recorded in the workspace.

Reads top to bottom: resolve the base model and dataset -> mix in the replay set -> build the
trainer (prompt-completion data, so the loss is on the answers only) -> train (resumable from
runs/<id>/checkpoints) -> save the adapter atomically -> record the run and the model in the DB.

The same function runs under `accelerate launch -m sopforge.cli train ...` (DDP/FSDP/DeepSpeed):
the run id is broadcast from the main process, and only the main process writes the workspace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopforge.config import dump_resolved, load_config, to_dict
from sopforge.errors import UserError
from sopforge.train.config import DEFAULT_INSTRUCTIONS, TrainConfig
from sopforge.train.data import (
    DatasetRef,
    changed_sections,
    emphasize,
    read_records,
    resolve_dataset,
    spread_by_task,
    to_hf_dataset,
)
from sopforge.workspace import Workspace, atomic_write_text

log = logging.getLogger(__name__)


class RunError(UserError):
    pass


@dataclass
class Prepared:
    """Everything a run trains on, resolved (paths absolute, records loaded)."""

    base_model: Path
    dataset: DatasetRef
    train_records: list[dict[str, Any]]
    eval_records: list[dict[str, Any]]
    n_replay: int = 0
    n_emphasized: int = 0  # copies of changed sections' records added (changed_weight)

    @property
    def n_pairs(self) -> int:
        """The dataset's own records, without the replay set and the changed sections' copies."""
        return len(self.train_records) - self.n_replay - self.n_emphasized


# ---- run ids and folders -------------------------------------------------------------------


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def run_dir(workspace: Workspace, run_id: str) -> Path:
    return workspace.path("runs", run_id)


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest whole `checkpoint-<step>` folder, or None.

    transformers writes a checkpoint's trainer_state.json last, so a folder whose state is
    missing or unreadable was cut off mid-save (the process was killed): it is skipped, and the
    run resumes from the one before."""
    if not checkpoints.is_dir():
        return None
    found = [
        p
        for p in checkpoints.iterdir()
        if p.is_dir() and p.name.startswith("checkpoint-") and checkpoint_step(p) is not None
    ]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def checkpoint_step(checkpoint: Path) -> int | None:
    """The global step a checkpoint holds, or None when its trainer state is missing or cut off."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- run liveness --------------------------------------------------------------------------
# A run's row says 'running' while it trains. A process that is killed (SIGKILL, OOM, power)
# cannot change that, so each training process holds an exclusive lock on runs/<id>/.lock;
# the OS drops it when the process dies, however it dies. A 'running' run whose lock is free
# belongs to no process: `mark_interrupted_runs` (called by the server at start) says so.

LOCK_FILE = ".lock"


def _try_lock(path: Path) -> Any:
    """The open lock file of run folder `path` (created if need be), held exclusively; None if
    another process (or another thread of this one) holds it."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    f = (path / LOCK_FILE).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the run's lock while training it; refuse when another process is training it."""
    f = _try_lock(path)
    if f is None:
        raise RunError(
            f"run {path.name} is being trained by another process; wait for it to finish "
            "(or stop that process) before resuming it"
        )
    try:
        yield
    finally:
        f.close()  # closing the file releases the lock


def mark_interrupted_runs(workspace: Workspace) -> list[str]:
    """Mark runs left 'running' by a process that is gone as 'interrupted'; returns their ids.

    Each run is checked and updated while holding its lock, so a run that another process
    starts or resumes meanwhile is never marked. Interrupted runs continue with
    `sopforge train --resume RUN_ID`."""
    rows = workspace.db.execute(
        "SELECT run_id, path FROM runs WHERE status = 'running' ORDER BY created_at"
    ).fetchall()
    marked = []
    for row in rows:
        path = Path(row["path"])
        held = _try_lock(path) if path.is_dir() else None  # no folder: nothing can train it
        if held is None and path.is_dir():  # a live process trains it
            continue
        try:
            with workspace.transaction() as db:
                cur = db.execute(
                    "UPDATE runs SET status = 'interrupted' WHERE run_id = ? AND status = 'running'",
                    (row["run_id"],),
                )
            if cur.rowcount:
                marked.append(str(row["run_id"]))
        finally:
            if held is not None:
                held.close()
    if marked:
        log.warning("runs left running by a stopped process, now interrupted: %s", marked)
    return marked


# ---- precision -----------------------------------------------------------------------------


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX tiles or AVX512-BF16)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def device_defaults(sft: dict[str, Any]) -> dict[str, Any]:
    """SFTConfig values that depend on the hardware, unless the config sets them.

    TRL turns bf16 on by default, which transformers refuses on a machine without a GPU unless
    `use_cpu` is set, and which is slow where the CPU has no bf16 units; so we decide here.
    """
    import torch

    out: dict[str, Any] = {}
    has_gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    if not has_gpu:
        out["use_cpu"] = True
        out["dataloader_pin_memory"] = False
    if "bf16" not in sft and "fp16" not in sft:
        if torch.cuda.is_available():
            bf16 = torch.cuda.is_bf16_supported()
            out.update(bf16=bf16, fp16=not bf16)
        else:
            out["bf16"] = has_gpu or cpu_has_bf16()
    return {k: v for k, v in out.items() if k not in sft}


# ---- data ----------------------------------------------------------------------------------


def prepare(cfg: TrainConfig, workspace: Workspace) -> Prepared:
    """Resolve the base model and dataset; add the replay records (generated once, cached)."""
    from sopforge.train.models import resolve_base_model
    from sopforge.train.replay import base_answers, replay_count, replay_records

    base = resolve_base_model(cfg.base_model, workspace)
    ds = resolve_dataset(cfg.dataset, workspace)
    train = read_records(ds.path / "train.jsonl")
    evals = read_records(ds.path / "eval.jsonl") if (ds.path / "eval.jsonl").is_file() else []
    if cfg.max_eval_records:
        evals = spread_by_task(evals, cfg.max_eval_records)
    if not train:
        raise RunError(f"{ds.path / 'train.jsonl'} has no records; nothing to train on")
    n_pairs = len(train)
    train, n_emphasized = emphasize(train, changed_sections(workspace), cfg.changed_weight)
    n_replay = 0
    if cfg.replay.enabled and cfg.replay.ratio > 0:
        instructions = (
            Path(cfg.replay.instructions) if cfg.replay.instructions else DEFAULT_INSTRUCTIONS
        )
        rows = base_answers(workspace, base, instructions, cfg.replay.max_new_tokens)
        replay = replay_records(rows, replay_count(n_pairs, cfg.replay.ratio))
        n_replay = len(replay)
        train = train + replay
    return Prepared(base, ds, train, evals, n_replay, n_emphasized)


# ---- trainer -------------------------------------------------------------------------------


def metrics_callback(path: Path) -> Any:
    """A TrainerCallback appending every log (loss per step, eval loss) to metrics.jsonl."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    return MetricsLog()


def trim_metrics(path: Path, max_step: int) -> None:
    """Drop log lines past a checkpoint's step, so a resumed run doesn't log those steps twice."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut off when the process was killed mid-write
            continue
        if isinstance(row, dict) and row.get("step", 0) <= max_step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _strategy_value(key: str, value: Any) -> Any:
    # YAML reads a bare `no` as false: `save_strategy: no` / `sft.save_strategy=no` mean "no".
    return "no" if key.endswith("_strategy") and value is False else value


def sft_args(cfg: TrainConfig, output_dir: Path) -> Any:
    from trl import SFTConfig

    sft = {k: _strategy_value(k, v) for k, v in cfg.sft.items()}
    sft.pop("model_init_kwargs", None)  # used to load the model, below
    kwargs = {"report_to": "none", "logging_steps": 1, **sft, **device_defaults(sft)}
    return SFTConfig(output_dir=str(output_dir), **kwargs)


def load_base(cfg: TrainConfig, base_model: Path, workspace: Workspace) -> Any:
    """The base model to put the adapter on (QLoRA: quantized; warm start: with its adapter)."""
    from trl.trainer.utils import create_model_from_path

    kwargs = dict(cfg.sft.get("model_init_kwargs") or {})
    if cfg.quantization != "none":
        import torch
        from transformers import BitsAndBytesConfig

        if not torch.cuda.is_available():
            raise RunError("quantization (QLoRA) needs a CUDA GPU; set quantization=none on CPU")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=cfg.quantization == "4bit",
            load_in_8bit=cfg.quantization == "8bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = create_model_from_path(str(base_model), **kwargs)
    if cfg.init_adapter:
        from peft import PeftModel

        adapter = resolve_init_adapter(cfg.init_adapter, workspace)
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return model


def resolve_init_adapter(spec: str, workspace: Workspace) -> Path:
    if spec == "promoted":
        row = workspace.db.execute(
            "SELECT adapter_path FROM models WHERE promoted = 1 AND adapter_path IS NOT NULL"
        ).fetchone()
        if row is None:
            raise RunError("init_adapter=promoted, but no promoted model has an adapter")
        return Path(row["adapter_path"])
    path = Path(spec).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise RunError(f"init_adapter {spec!r} is not an adapter folder (no adapter_config.json)")
    return path


def build_trainer(
    cfg: TrainConfig,
    prepared: Prepared,
    output_dir: Path,
    workspace: Workspace,
    callbacks: Sequence[Any] = (),
) -> Any:
    """An SFTTrainer on prompt-completion data with a LoRA adapter (or a warm-started one)."""
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from sopforge.train.sampling import sft_trainer_class

    args = sft_args(cfg, output_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(prepared.base_model))
    if not tokenizer.chat_template:
        raise RunError(f"{prepared.base_model}: the tokenizer has no chat template")
    model = load_base(cfg, prepared.base_model, workspace)
    peft_config = None if cfg.init_adapter else LoraConfig(**{"task_type": "CAUSAL_LM", **cfg.lora})
    return sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=to_hf_dataset(prepared.train_records),
        eval_dataset=to_hf_dataset(prepared.eval_records) if prepared.eval_records else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )


# ---- the run -------------------------------------------------------------------------------


def _distributed() -> Any:
    from accelerate import PartialState

    return PartialState()


def _shared_run_id(state: Any, run_id: str | None) -> str:
    """One run id on every process: made on the main one and broadcast."""
    rid = run_id or new_run_id()
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        box = [rid]
        broadcast_object_list(box, from_process=0)
        rid = box[0]
    return rid


def _record_start(
    workspace: Workspace, run_id: str, cfg: TrainConfig, prepared: Prepared, path: Path
) -> None:
    with workspace.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, kind, base_model, dataset_id, dataset_hash,"
            " config, status, path) VALUES (?, ?, 'train', ?, ?, ?, ?, 'running', ?)"
            " ON CONFLICT(run_id) DO UPDATE SET status = 'running', config = excluded.config",
            (
                run_id,
                time.time(),
                str(prepared.base_model),
                prepared.dataset.dataset_id,
                prepared.dataset.hash,
                json.dumps(to_dict(cfg), default=str),
                str(path.resolve()),
            ),
        )


def _set_status(workspace: Workspace, run_id: str, status: str) -> None:
    with workspace.transaction() as db:
        db.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))


def _save_adapter(trainer: Any, state: Any, target: Path) -> None:
    """Save the adapter (+ tokenizer) to a temp folder and swap it in, so `adapter/` is whole.

    Every process calls save_model (FSDP/DeepSpeed gather the weights collectively; only the
    main process writes); the main one then renames.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    state.wait_for_everyone()
    trainer.save_model(str(tmp))
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _train_metrics(
    trainer: Any, result: Any, prepared: Prepared, metrics_file: Path, resumed_at: int | None
) -> dict[str, Any]:
    out = dict(result.metrics)
    # TRL counts the (non-padding) tokens it trains on in this session, across processes.
    tokens = int(getattr(trainer, "_total_train_tokens", 0))
    runtime = out.get("train_runtime") or 0.0
    if resumed_at is not None:
        # the trainer's train_loss covers this session only: average the whole run's steps;
        # runtime and tokens/s stay this session's
        losses = [
            row["loss"]
            for row in map(json.loads, metrics_file.read_text(encoding="utf-8").splitlines())
            if "loss" in row
        ]
        if losses:
            out["train_loss"] = sum(losses) / len(losses)
        out["resumed_at_step"] = resumed_at
    out.update(
        global_step=trainer.state.global_step,
        num_tokens=tokens,
        tokens_per_second=round(tokens / runtime, 1) if runtime else None,
        n_train=prepared.n_pairs,
        n_emphasized=prepared.n_emphasized,
        n_replay=prepared.n_replay,
        n_eval=len(prepared.eval_records),
    )
    return out


def train(
    cfg: TrainConfig,
    workspace: Workspace,
    *,
    run_id: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
) -> str:
    """Train a LoRA adapter; return the run id. `resume=True` continues `run_id` from its last
    checkpoint. `callbacks` are extra transformers TrainerCallbacks (e.g. a UI progress bar)."""
    state = _distributed()
    run_id = _shared_run_id(state, run_id)
    path = run_dir(workspace, run_id)
    checkpoints = path / "checkpoints"
    with state.main_process_first():  # main imports the model / generates replay; others reuse
        prepared = prepare(cfg, workspace)
    with contextlib.ExitStack() as held:
        if state.is_main_process:  # held until the run ends: see mark_interrupted_runs
            held.enter_context(run_lock(path))
        resume_from = last_checkpoint(checkpoints) if resume else None
        if resume and resume_from is None:
            log.warning("run %s has no checkpoint yet; starting it from step 0", run_id)
        metrics_file = path / "metrics.jsonl"
        if state.is_main_process:
            path.mkdir(parents=True, exist_ok=True)
            dump_resolved(cfg, path / "config.yaml")
            if resume_from is not None:
                trim_metrics(metrics_file, int(resume_from.name.split("-")[-1]))
            elif metrics_file.exists():
                metrics_file.unlink()
            _record_start(workspace, run_id, cfg, prepared, path)
        log.info(
            "run %s: %s on %s (%d pairs + %d copies of changed sections' records + %d replay, %d eval)",
            run_id,
            prepared.base_model.name,
            prepared.dataset.dataset_id,
            prepared.n_pairs,
            prepared.n_emphasized,
            prepared.n_replay,
            len(prepared.eval_records),
        )
        try:
            trainer = build_trainer(
                cfg, prepared, checkpoints, workspace, [metrics_callback(metrics_file), *callbacks]
            )
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            if trainer.state.global_step < trainer.state.max_steps:  # stopped early by a callback
                if state.is_main_process:
                    trainer.save_state()
                    _set_status(workspace, run_id, "interrupted")
                return run_id
            metrics = _train_metrics(
                trainer,
                result,
                prepared,
                metrics_file,
                int(resume_from.name.split("-")[-1]) if resume_from else None,
            )
            if prepared.eval_records:
                metrics.update(trainer.evaluate())
            _save_adapter(trainer, state, path / "adapter")
            if state.is_main_process:
                _finish(workspace, run_id, prepared, path, metrics)
        except KeyboardInterrupt:
            if state.is_main_process:
                _set_status(workspace, run_id, "interrupted")
            raise
        except BaseException:
            if state.is_main_process:
                _set_status(workspace, run_id, "failed")
            raise
        return run_id


def _finish(
    workspace: Workspace, run_id: str, prepared: Prepared, path: Path, metrics: dict[str, Any]
) -> None:
    summary = {"train": metrics}
    atomic_write_text(path / "summary.json", json.dumps(summary, indent=2))
    with workspace.transaction() as db:
        db.execute(
            "UPDATE runs SET status = 'finished', metrics = ?, finished_at = ? WHERE run_id = ?",
            (json.dumps(summary), time.time(), run_id),
        )
        db.execute(
            "INSERT OR REPLACE INTO models (model_id, run_id, base_model, adapter_path, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                run_id,
                run_id,
                str(prepared.base_model),
                str((path / "adapter").resolve()),
                time.time(),
            ),
        )


# ---- resume --------------------------------------------------------------------------------


def latest_unfinished_run(workspace: Workspace) -> str:
    row = workspace.db.execute(
        "SELECT run_id FROM runs WHERE kind = 'train' AND status != 'finished'"
        " ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise RunError("no unfinished run to resume; start one with `sopforge train`")
    return str(row["run_id"])


def resume_run(
    workspace: Workspace,
    run_id: str | None = None,
    overrides: list[str] | None = None,
    callbacks: Sequence[Any] = (),
) -> str:
    """Continue a run (default: the newest unfinished one) with the config it was started with."""
    run_id = run_id or latest_unfinished_run(workspace)
    config_file = run_dir(workspace, run_id) / "config.yaml"
    if not config_file.is_file():
        raise RunError(f"run {run_id!r} not found in {workspace.root / 'runs'}")
    cfg = load_config(TrainConfig, config_file, overrides)
    return train(cfg, workspace, run_id=run_id, resume=True, callbacks=callbacks)


def on_step(fn: Callable[[int, int, dict[str, Any]], None]) -> Any:
    """A TrainerCallback calling fn(step, max_steps, logs) at every log: for progress UIs."""
    from transformers import TrainerCallback

    class OnStep(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if state.is_world_process_zero:
                fn(state.global_step, state.max_steps, dict(logs or {}))

    return OnStep()


def environment() -> dict[str, Any]:
    """Versions and hardware, for reports and benchmarks."""
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "cuda": torch.cuda.is_available(),
        "cpu_bf16": cpu_has_bf16(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
