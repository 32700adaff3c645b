"""`sopforge retrain` on the tiny model: probes of a changed fact gate the promotion."""

from __future__ import annotations

from pathlib import Path

from sopforge.ingest.pipeline import IngestConfig, ingest_paths
from sopforge.train import registry
from sopforge.train.retrain import retrain
from sopforge.workspace import Workspace

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


def test_retrain_gates_on_stale_probes(tmp_path: Path, tiny_model_dir: Path) -> None:
    doc = tmp_path / "expenses.md"
    doc.write_text(SOP)
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [doc], IngestConfig(eval_fraction=0.3))
    tiny = [
        f"base_model={tiny_model_dir}",
        "replay.enabled=false",
        "sft.max_steps=2",
        "sft.per_device_train_batch_size=4",
        "sft.save_strategy=no",
        "sft.max_length=256",
        "sft.learning_rate=0.01",
        "sft.warmup_steps=0",
    ]
    first = retrain(ws, overrides=tiny, eval_limit=4, force=True)
    assert first["promoted"] and not first["warm_start"]
    assert registry.promoted_model(ws)["model_id"] == first["run_id"]

    doc.write_text(
        SOP.replace("500 pounds", "1000 pounds").replace(
            "your line manager", "the finance director"
        )
    )
    report = ingest_paths(ws, [doc], IngestConfig(eval_fraction=0.3))
    assert report.files[0].changes["changed"] == 1

    second = retrain(ws, overrides=tiny, eval_limit=4)
    assert second["warm_start"] and second["previous_model"] == first["run_id"]
    assert first["changed_weight"] == second["changed_weight"] == 4
    probes = second["probes"]
    assert probes["probes"] >= 1
    facts = {f for r in probes["results"] for f in r["new_facts"]}
    assert "1000" in facts and "director" in facts
    # a 2-step random tiny model cannot state the new fact: the gate refuses, the old model serves
    assert probes["passed"] < probes["probes"]
    assert not second["promoted"] and any("stale-procedure probes" in r for r in second["reasons"])
    assert registry.promoted_model(ws)["model_id"] == first["run_id"]
    md = (Path(ws.path("runs", second["run_id"])) / "retrain.md").read_text()
    assert "Not promoted" in md and "1000" in md

    third = retrain(ws, overrides=tiny, eval_limit=4, force=True)
    assert third["promoted"] and third["forced"]
    row = ws.db.execute("SELECT forced, reason FROM promotions ORDER BY id DESC LIMIT 1").fetchone()
    assert row["forced"] == 1 and "forced" in row["reason"]
    assert registry.promoted_model(ws)["model_id"] == third["run_id"]


def test_retrain_weights_the_changed_sections_records(tmp_path: Path) -> None:
    from sopforge.train.data import changed_sections, emphasize, read_records, resolve_dataset

    doc = tmp_path / "expenses.md"
    doc.write_text(SOP)
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [doc], IngestConfig(eval_fraction=0.0))
    assert changed_sections(ws) == set()  # a first version changes nothing

    doc.write_text(SOP.replace("three\nhours", "four\nhours"))
    ingest_paths(ws, [doc], IngestConfig(eval_fraction=0.0))
    (changed,) = changed_sections(ws)
    current = ws.db.execute("SELECT version FROM versions WHERE status='current'").fetchone()
    assert changed[1] == current["version"]
    title = ws.db.execute(
        "SELECT title FROM sections WHERE doc_id=? AND version=? AND section_id=?", changed
    ).fetchone()["title"]
    assert title == "Travel"

    records = read_records(resolve_dataset("", ws).path / "train.jsonl")
    mine = [r for r in records if r["provenance"]["section_id"] == changed[2]]
    assert mine and len(mine) < len(records)
    weighted, added = emphasize(records, {changed}, 3)
    assert added == 2 * len(mine) and len(weighted) == len(records) + added
    # every record of the changed section three times, every other record once
    for r in records:
        n = sum(w is r for w in weighted)
        assert n == (3 if r in mine else 1)
    # weight 1 or an older version's key adds nothing
    assert emphasize(records, {changed}, 1)[1] == 0
    assert emphasize(records, {(changed[0], "v-old", changed[2])}, 3)[1] == 0
