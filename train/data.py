"""Datasets as the train stage reads them: a folder with train.jsonl, eval.jsonl and card.json.

Records (see `sopforge.records`) become TRL's conversational prompt-completion form:
``{"prompt": messages[:-1], "completion": [messages[-1]]}``. SFTTrainer then tokenizes the prompt
with the chat template's generation prompt and the prompt+completion, and sets the labels of the
prompt tokens to -100 (`completion_only_loss`, on by default for prompt-completion data): the loss
is on the assistant answer only.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.records import RecordError, check_record
from sopforge.workspace import Workspace


class DatasetError(UserError):
    pass


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run trains on: its id, folder and content hash."""

    dataset_id: str
    path: Path
    hash: str


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read and shape-check a JSONL file of records; errors name the file and line."""
    records: list[dict[str, Any]] = []
    if not path.is_file():
        raise DatasetError(f"{path} not found; a dataset folder needs train.jsonl and eval.jsonl")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                check_record(rec)
            except (json.JSONDecodeError, RecordError) as e:
                raise DatasetError(f"{path}:{lineno}: not a valid record ({e})") from e
            records.append(rec)
    return records


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    from sopforge.workspace import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def folder_hash(path: Path) -> str:
    """sha256 over train.jsonl and eval.jsonl, for datasets not registered in the workspace DB."""
    h = hashlib.sha256()
    for name in ("train.jsonl", "eval.jsonl"):
        f = path / name
        h.update(name.encode())
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()


def resolve_dataset(spec: str, workspace: Workspace) -> DatasetRef:
    """'' = the newest dataset in the workspace; else a dataset id or a dataset folder."""
    db = workspace.db
    if not spec:
        row = db.execute(
            "SELECT dataset_id, path, hash FROM datasets ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise DatasetError(
                f"no dataset in workspace {workspace.root}; run `sopforge ingest` first, or set "
                "dataset=<folder> in the train config"
            )
        return DatasetRef(row["dataset_id"], _dataset_path(workspace, row), row["hash"])
    row = db.execute("SELECT dataset_id, path, hash FROM datasets WHERE dataset_id = ?", (spec,))
    found = row.fetchone()
    if found is not None:
        return DatasetRef(found["dataset_id"], _dataset_path(workspace, found), found["hash"])
    path = Path(spec).expanduser()
    if not path.is_dir():
        path = workspace.path("datasets", spec)
    if not (path / "train.jsonl").is_file():
        raise DatasetError(
            f"dataset {spec!r} is neither a dataset id in {workspace.root} nor a folder with "
            "train.jsonl; list datasets with `sopforge ingest --help` or give a folder"
        )
    path = path.resolve()
    return DatasetRef(path.name, path, folder_hash(path))


def _dataset_path(workspace: Workspace, row: Any) -> Path:
    # The canonical place is <workspace>/datasets/<id>; the stored path may be relative to the
    # directory the ingest ran from, so it is only the fallback.
    canonical = workspace.path("datasets", row["dataset_id"])
    return (canonical if canonical.is_dir() else Path(row["path"])).resolve()


def spread_by_task(records: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """At most `limit` records, round-robin over tasks, so a small limit still covers each."""
    if limit is None or limit >= len(records):
        return list(records)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    out: list[dict[str, Any]] = []
    queues = [list(v) for _, v in sorted(by_task.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def current_changes(workspace: Workspace, kinds: tuple[str, ...]) -> list[Any]:
    """Rows (doc_id, section_id, old_version, new_version) of the section changes of `kinds`
    whose new version is its document's current one, oldest first."""
    marks = ", ".join("?" * len(kinds))
    return workspace.db.execute(
        "SELECT c.doc_id, c.section_id, c.old_version, c.new_version FROM changes c"
        " JOIN versions v ON v.doc_id=c.doc_id AND v.version=c.new_version AND v.status='current'"
        f" WHERE c.kind IN ({marks}) ORDER BY c.id",
        kinds,
    ).fetchall()


def changed_sections(workspace: Workspace) -> set[tuple[str, str, str]]:
    """(doc_id, version, section_id) of every section added or changed by the update that made
    its document's current version: what a retrain must teach, as opposed to replay."""
    rows = current_changes(workspace, ("changed", "added"))
    return {(r["doc_id"], r["new_version"], r["section_id"]) for r in rows}


def emphasize(
    records: list[dict[str, Any]], sections: set[tuple[str, str, str]], weight: int
) -> tuple[list[dict[str, Any]], int]:
    """`records` with every record of `sections` present `weight` times in all (the copies
    are appended; the trainer shuffles). Returns the records and the number of copies added."""
    if weight <= 1 or not sections:
        return list(records), 0
    chosen = [
        r
        for r in records
        if (
            (p := r.get("provenance") or {}).get("doc_id"),
            p.get("version"),
            p.get("section_id"),
        )
        in sections
    ]
    extra = [r for _ in range(weight - 1) for r in chosen]
    return list(records) + extra, len(extra)


def to_prompt_completion(rec: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """A record as TRL's conversational prompt-completion example (answer-only loss)."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def to_hf_dataset(records: list[dict[str, Any]]) -> Any:
    """A `datasets.Dataset` with only prompt/completion columns (provenance etc. stay behind)."""
    from datasets import Dataset

    return Dataset.from_list([to_prompt_completion(r) for r in records])
