"""`sopforge ingest` and `sopforge dataset`: parse arguments, call the stage, print the report.

Nothing here imports torch: ingest runs on machines without a training stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ingest" / "default.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="read SOP documents and build a validated instruction dataset",
        description="Read documents (PDF, DOCX, Markdown, text, HTML; folders are searched), version "
        "them in the workspace, generate format-validated instruction pairs and write the dataset.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="PATH|key=value",
        help="files or folders, then optional key=value overrides",
    )
    p.add_argument(
        "--config", default=None, help=f"ingest config YAML (default: {DEFAULT_CONFIG.name})"
    )
    p.add_argument(
        "--json", dest="json_out", default=None, help="also write the full report as JSON here"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ingest, trailing="inputs")

    d = sub.add_parser("dataset", help="inspect, export or import datasets")
    dsub = d.add_subparsers(dest="dataset_cmd", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="datasets in the workspace, newest first")
    ls.set_defaults(func=cmd_dataset_list)
    ex = dsub.add_parser(
        "export", help="export a dataset as Alpaca-style JSONL (instruction, input, output)"
    )
    ex.add_argument("out", help="output .jsonl file")
    ex.add_argument("--dataset", default=None, help="dataset id (default: the newest)")
    ex.add_argument("--split", choices=["train", "eval", "all"], default="all")
    ex.set_defaults(func=cmd_dataset_export)
    im = dsub.add_parser(
        "import", help="import Alpaca-style pairs (JSON list or JSONL) into the workspace"
    )
    im.add_argument("file", help="file with instruction/input/output records")
    im.add_argument("--contract", default="plain", help="format contract every output must satisfy")
    im.add_argument("--config", default=None, help="ingest config YAML used to rebuild the dataset")
    im.set_defaults(func=cmd_dataset_import)


def _split_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """Arguments with '=' that are not existing paths are config overrides."""
    paths, overrides = [], []
    for item in items:
        (overrides if "=" in item and not Path(item).exists() else paths).append(item)
    return paths, overrides


def _workspace(args: argparse.Namespace):
    from sopforge.workspace import Workspace

    return Workspace(args.workspace)


def load_ingest_config(path: str | None, overrides: list[str]):
    from sopforge.config import load_config
    from sopforge.ingest.pipeline import IngestConfig

    return load_config(IngestConfig, path or DEFAULT_CONFIG, overrides)


def cmd_ingest(args: argparse.Namespace) -> int:
    from sopforge.errors import UserError
    from sopforge.ingest.pipeline import ingest_paths

    paths, overrides = _split_inputs(args.inputs)
    if not paths:
        raise UserError("no documents given: name files or folders to ingest")
    cfg = load_ingest_config(args.config, overrides)
    ws = _workspace(args)
    report = ingest_paths(ws, paths, cfg, progress=not args.no_progress and sys.stderr.isatty())
    print_report(report)
    if args.json_out:
        from sopforge.workspace import atomic_write_text

        atomic_write_text(
            Path(args.json_out), json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
        )
    ok = [f for f in report.files if f.status != "error"]
    return 0 if ok or not report.files else 1


def print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(title="sopforge ingest", show_lines=False)
    for col in (
        "document",
        "status",
        "pages",
        "sections",
        "new pairs",
        "rejects",
        "changes / error",
    ):
        table.add_column(col, overflow="fold")
    for f in report.files:
        if f.status == "error":
            table.add_row(
                Path(f.path).name, "[red]error[/red]", "", "", "", "", f"[red]{f.error}[/red]"
            )
            continue
        changes = ", ".join(f"{v} {k}" for k, v in f.changes.items() if v)
        notes = [getattr(f, "note", ""), *getattr(f, "warnings", [])]
        changes = "; ".join(x for x in (changes, *notes) if x)
        style = {"new": "green", "updated": "yellow", "unchanged": "dim", "duplicate": "dim"}.get(
            f.status, ""
        )
        table.add_row(
            Path(f.path).name,
            f"[{style}]{f.status}[/{style}]" if style else f.status,
            str(f.pages or ""),
            str(f.sections),
            str(f.pairs),
            str(f.rejects),
            changes,
        )
    console.print(table)
    for f in report.files:
        for d in f.diffs:
            if d["kind"] == "changed":
                console.print(f"[yellow]changed[/yellow] {f.doc_id} § {d['section_id']}")
                console.print(d["diff"], markup=False, highlight=False)
    card = report.card
    if card:
        per_task = ", ".join(
            f"{t}: {c['train']}+{c['eval']}" for t, c in sorted(card["per_task"].items())
        )
        console.print(
            f"dataset [bold]{report.dataset_id}[/bold]: {card['counts']['train']} train / "
            f"{card['counts']['eval']} eval pairs ({per_task}); rejects: {card['rejects']['total']}"
        )
        console.print(f"written to {report.dataset_dir}")
    if report.errors:
        console.print(f"[red]{len(report.errors)} file(s) failed[/red]; the others were ingested.")


def _dataset_dir(ws, dataset_id: str | None) -> Path:
    from sopforge.errors import UserError

    if dataset_id:
        row = ws.db.execute(
            "SELECT path FROM datasets WHERE dataset_id=?", (dataset_id,)
        ).fetchone()
    else:
        row = ws.db.execute("SELECT path FROM datasets ORDER BY created_at DESC LIMIT 1").fetchone()
    if not row:
        raise UserError(
            f"no dataset {dataset_id!r} in {ws.root}"
            if dataset_id
            else f"no dataset in {ws.root}: run `sopforge ingest` first"
        )
    return Path(row["path"])


def cmd_dataset_list(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    for row in ws.db.execute(
        "SELECT dataset_id, created_at, n_train, n_eval, path FROM datasets ORDER BY created_at DESC"
    ):
        print(
            f"{row['dataset_id']}  train={row['n_train']:<6} eval={row['n_eval']:<6} {row['path']}"
        )
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from sopforge.ingest.alpaca import export_alpaca

    ws = _workspace(args)
    n = export_alpaca(_dataset_dir(ws, args.dataset), Path(args.out), split=args.split)
    print(f"wrote {n} records to {args.out}")
    return 0


def cmd_dataset_import(args: argparse.Namespace) -> int:
    from sopforge.ingest.alpaca import import_alpaca

    cfg = load_ingest_config(args.config, [])
    ws = _workspace(args)
    report = import_alpaca(ws, Path(args.file), contract=args.contract, cfg=cfg)
    print_report(report)
    return 0 if not report.errors else 1
