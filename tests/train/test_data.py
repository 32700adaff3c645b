"""Datasets: records become answer-only prompt-completion examples; datasets resolve by id/folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sopforge.train.data import (
    DatasetError,
    read_records,
    resolve_dataset,
    spread_by_task,
    to_prompt_completion,
)


def test_record_becomes_prompt_and_completion(tiny_dataset_dir: Path):
    rec = read_records(tiny_dataset_dir / "train.jsonl")[0]
    ex = to_prompt_completion(rec)
    assert ex["prompt"] == rec["messages"][:-1]
    assert ex["completion"] == [rec["messages"][-1]]
    assert [m["role"] for m in ex["prompt"]] == ["system", "user"]


def test_bad_records_are_reported_with_file_and_line(tmp_path: Path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(DatasetError, match=r"train.jsonl:1"):
        read_records(bad)


def test_resolve_newest_by_id_and_by_folder(workspace, tiny_dataset_dir: Path):
    with pytest.raises(DatasetError, match="sopforge ingest"):
        resolve_dataset("", workspace)
    by_folder = resolve_dataset(str(tiny_dataset_dir), workspace)
    assert by_folder.path == tiny_dataset_dir.resolve() and len(by_folder.hash) == 64
    for i, name in enumerate(("old", "new")):
        folder = workspace.path("datasets", name)
        folder.mkdir()
        (folder / "train.jsonl").write_text((tiny_dataset_dir / "train.jsonl").read_text())
        with workspace.transaction() as db:
            db.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, 1, 1, '{}')",
                (name, time.time() + i, f"hash-{name}", f"relative/elsewhere/{name}"),
            )
    newest = resolve_dataset("", workspace)
    assert newest.dataset_id == "new" and newest.hash == "hash-new"
    assert newest.path == workspace.path("datasets", "new").resolve()  # canonical place wins
    assert resolve_dataset("old", workspace).hash == "hash-old"
    with pytest.raises(DatasetError, match="nope"):
        resolve_dataset("nope", workspace)


def test_spread_by_task_covers_every_task_first(tiny_dataset_dir: Path):
    recs = read_records(tiny_dataset_dir / "train.jsonl")
    picked = spread_by_task(recs, 3)
    assert sorted(r["task"] for r in picked) == ["json", "qa", "summary"]
    assert spread_by_task(recs, None) == recs
    assert json.dumps(spread_by_task(recs, 100)) == json.dumps(recs)
