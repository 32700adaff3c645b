"""CLI of the train stage: `sopforge train`, `sopforge eval`, `sopforge models ...`.

Only argument parsing here; torch/transformers are imported inside the commands, so
`sopforge --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless the user chose otherwise.

    On a CPU shared with other work (the chat server, other jobs), libgomp's default spin-wait
    makes torch's threads fight for the cores: measured here under load, 3 LoRA steps of the
    real model took 50 s with the default and 15 s with PASSIVE. Only effective before torch
    starts its thread pool, i.e. before torch is imported, as in a fresh `sopforge` process.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _workspace(args: argparse.Namespace) -> Any:
    from sopforge.workspace import Workspace

    return Workspace(args.workspace)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="LoRA-tune the base model on a dataset (TRL SFTTrainer + PEFT)",
        description="Train a LoRA adapter on the newest dataset (or dataset=...). Runs go to "
        "<workspace>/runs/<id>/. Works under `accelerate launch -m sopforge.cli train ...`.",
    )
    p.add_argument("--config", default=None, help="train config YAML (default: smollm2-cpu.yaml)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN_ID",
        help="continue a run from its last checkpoint (default: the newest unfinished run)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. lora.r=8 sft.max_steps=50"
    )
    p.set_defaults(func=cmd_train, trailing="overrides")

    p = subparsers.add_parser(
        "eval",
        help="compare the base and tuned models on held-out data; write the report",
        description="Base vs tuned on the run's held-out eval set and held-out general prompts: "
        "format compliance, ROUGE-L, token F1, grounding, citations, general-ability retention. "
        "Writes runs/<id>/report/report.{md,html}.",
    )
    p.add_argument("--run", default=None, help="run id (default: the newest finished run)")
    p.add_argument(
        "--limit", type=int, default=None, help="at most N eval records (spread over tasks)"
    )
    p.add_argument("--max-new-tokens", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-general", action="store_true", help="skip the general-prompt check")
    p.add_argument(
        "--no-guard",
        "--no-loop-guard",
        dest="no_loop_guard",
        action="store_true",
        help="raw greedy decoding: no format grammars, no loop protection (what the model itself "
        "writes; by default answers are decoded exactly as the chat decodes them)",
    )
    p.add_argument(
        "--serve-config",
        default=None,
        help="serve YAML whose engine: section decodes the answers (default: the shipped one)",
    )
    p.add_argument(
        "--tasks",
        default="",
        metavar="TASK[,TASK]",
        help="only these tasks' records, e.g. summary (report in report-<tasks>/; the run's "
        "stored evaluation is kept)",
    )
    p.set_defaults(func=cmd_eval)

    from sopforge.train.retrain import CHANGED_WEIGHT  # light: no torch at import

    p = subparsers.add_parser(
        "retrain",
        help="after procedures change: train on the current dataset, gate against the promoted "
        "model and the stale-procedure probes, promote if it passes",
        description="Train on the newest dataset (warm-started from the promoted adapter), evaluate "
        "against the promoted model on the same held-out records, ask the stale-procedure probes of "
        "every changed section, and promote only if nothing regresses beyond the tolerance and the "
        "probes pass. Writes runs/<id>/retrain.md.",
    )
    p.add_argument("--config", default=None, help="train config YAML (default: smollm2-cpu.yaml)")
    p.add_argument(
        "--cold", action="store_true", help="start from a fresh LoRA, not the promoted adapter"
    )
    p.add_argument("--force", action="store_true", help="promote even if the gate fails (logged)")
    p.add_argument(
        "--limit", type=int, default=60, help="held-out records compared (spread over tasks)"
    )
    p.add_argument(
        "--tolerance", type=float, default=0.02, help="allowed drop in compliance / ROUGE-L"
    )
    p.add_argument(
        "--changed-weight",
        type=int,
        default=CHANGED_WEIGHT,
        help="times each record of an added or changed section is seen per epoch (1 = like the "
        f"unchanged ones; default {CHANGED_WEIGHT})",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train config overrides")
    p.set_defaults(func=cmd_retrain, trailing="overrides")

    p = subparsers.add_parser("models", help="list, import, promote and roll back models")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = sub.add_parser("import", help="import a base model (default: the embedded SmolLM2-135M)")
    q.add_argument("source", nargs="?", default="", help="HF folder, .gguf file or hub id")
    q.add_argument("--name", default=None, help="folder name under <workspace>/models")
    q.set_defaults(func=cmd_models_import)
    q = sub.add_parser("add", help="register an adapter trained elsewhere (copied in)")
    q.add_argument("adapter", help="PEFT adapter folder (adapter_config.json)")
    q.add_argument("--base", default="", help="its base model (default: the embedded SmolLM2)")
    q.add_argument("--id", default="", help="model id (default: <time>-<folder name>)")
    q.set_defaults(func=cmd_models_add)
    q = sub.add_parser(
        "average",
        help="a model between two runs: (1-W) x run A's update + W x run B's (no training)",
        description="Interpolate two trained runs' LoRA updates (e.g. a first stage and a second, "
        "more specialised one) into a new model, exactly (PEFT's `cat` combination). It is "
        "registered with run B's dataset and config; evaluate it with `sopforge eval --run ID`.",
    )
    q.add_argument("first", metavar="A", help="run/model id, 'latest' or 'promoted'")
    q.add_argument("second", metavar="B", help="run/model id, 'latest' or 'promoted'")
    q.add_argument(
        "--weight", type=float, default=0.5, help="share of B, between 0 and 1 (default 0.5)"
    )
    q.add_argument("--id", default="", help="model id (default: <time>-avg<percent of B>)")
    q.set_defaults(func=cmd_models_average)
    q = sub.add_parser("list", help="all models, the promoted one marked")
    q.set_defaults(func=cmd_models_list)
    q = sub.add_parser("show", help="one model's details as JSON")
    q.add_argument("model", help="model id, 'latest' or 'promoted'")
    q.set_defaults(func=cmd_models_show)
    q = sub.add_parser("promote", help="serve this model (gated on its evaluation)")
    q.add_argument("model", help="model id or 'latest'")
    q.add_argument("--force", action="store_true", help="promote despite failed checks (logged)")
    q.add_argument("--reason", default="")
    q.set_defaults(func=cmd_models_promote)
    q = sub.add_parser("rollback", help="re-promote the previously promoted model")
    q.add_argument("--reason", default="")
    q.set_defaults(func=cmd_models_rollback)


def cmd_retrain(args: argparse.Namespace) -> int:
    from sopforge.train.retrain import retrain, retrain_markdown

    result = retrain(
        _workspace(args),
        config=args.config,
        overrides=args.overrides,
        warm_start=not args.cold,
        force=args.force,
        eval_limit=args.limit,
        tolerance=args.tolerance,
        changed_weight=args.changed_weight,
    )
    print(retrain_markdown(result))
    return 0 if result["promoted"] else 3


def cmd_train(args: argparse.Namespace) -> int:
    _passive_openmp()
    from sopforge.train.config import load_train_config
    from sopforge.train.run import resume_run, run_dir, train

    ws = _workspace(args)
    if args.resume is not None:
        if args.config:
            print("note: --resume uses the config the run was started with; --config is ignored")
        run_id = resume_run(ws, args.resume or None, args.overrides)
    else:
        run_id = train(load_train_config(args.config, args.overrides), ws)
    row = ws.db.execute("SELECT status, metrics FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    status = row["status"] if row else "unknown"
    print(f"run {run_id}: {status} ({run_dir(ws, run_id)})")
    if row and status == "finished":
        m = json.loads(row["metrics"]).get("train", {})
        print(
            f"  train_loss {m.get('train_loss', float('nan')):.4f}  eval_loss "
            f"{m.get('eval_loss', float('nan')):.4f}  {m.get('tokens_per_second')} tokens/s"
        )
        print(f"  next: sopforge eval --run {run_id}")
    return 0 if status in ("finished", "interrupted") else 1


def cmd_eval(args: argparse.Namespace) -> int:
    _passive_openmp()
    from sopforge.train.evaluate import EvalOptions, evaluate_run
    from sopforge.train.report import metric_rows

    ws = _workspace(args)
    opts = EvalOptions(
        limit=args.limit or None,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        general=not args.no_general,
        loop_guard=not args.no_loop_guard,
        serve_config=args.serve_config,
        tasks=tuple(filter(None, map(str.strip, args.tasks.split(",")))),
    )
    summary = evaluate_run(ws, args.run, opts)
    print(f"{'group':<18} {'metric':<28} {'base':>8} {'tuned':>8}")
    for group, metric, base, tuned in metric_rows(summary):
        print(f"{group:<18} {metric:<28} {base:>8} {tuned:>8}")
    verdict = "no regression" if summary["passed"] else "; ".join(summary["regressions"])
    print(f"verdict: {verdict}")
    print(f"report: {Path(summary['report_dir']) / 'report.html'}")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    _passive_openmp()
    from sopforge.train.models import import_model

    path = import_model(args.source, _workspace(args), name=args.name)
    print(f"imported: {path}")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    from sopforge.train.models import resolve_base_model
    from sopforge.train.registry import add_adapter

    ws = _workspace(args)
    model_id = add_adapter(ws, Path(args.adapter), resolve_base_model(args.base, ws), args.id)
    print(f"added {model_id}: evaluate it with `sopforge eval --run {model_id}`, then promote it")
    return 0


def cmd_models_average(args: argparse.Namespace) -> int:
    _passive_openmp()
    from sopforge.train.average import average_runs

    model_id = average_runs(_workspace(args), args.first, args.second, args.weight, args.id)
    print(
        f"averaged {model_id}: evaluate it with `sopforge eval --run {model_id}`, then promote it"
    )
    return 0


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def cmd_models_list(args: argparse.Namespace) -> int:
    from sopforge.train.registry import list_models

    models = list_models(_workspace(args))
    if not models:
        print("no models yet: `sopforge models import` or `sopforge train`")
        return 0
    print(f"   {'model':<28} {'created':<17} {'kind':<8} {'compliance base→tuned':<22} gate")
    for m in models:
        ev = m["metrics"].get("eval")
        comp = "-"
        gate = "-"
        if ev:
            b, t = ev["base"]["overall"]["compliance"], ev["tuned"]["overall"]["compliance"]
            comp = f"{b:.2f} → {t:.2f}"
            gate = "pass" if ev["passed"] else "fail"
        kind = "adapter" if m["adapter_path"] else "base"
        mark = "*" if m["promoted"] else " "
        print(
            f"{mark}  {m['model_id']:<28} {_when(m['created_at']):<17} {kind:<8} {comp:<22} {gate}"
        )
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from sopforge.train.registry import show_model

    print(json.dumps(show_model(_workspace(args), args.model), indent=2, default=str))
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    from sopforge.train.registry import promote

    model_id = promote(_workspace(args), args.model, force=args.force, reason=args.reason)
    print(f"promoted: {model_id}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from sopforge.train.registry import rollback

    print(f"rolled back to: {rollback(_workspace(args), reason=args.reason)}")
    return 0
