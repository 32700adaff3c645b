"""Evaluation: per-answer scoring, the promotion evidence, and a full base-vs-tuned report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sopforge.contracts import default_registry
from sopforge.train.config import load_train_config
from sopforge.train.data import read_records
from sopforge.train.evaluate import (
    EvalError,
    EvalOptions,
    answer_caps,
    evaluate_run,
    regressions,
    score_answer,
    source_text,
)
from sopforge.train.run import train
from sopforge.workspace import Workspace


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory, tiny_model_dir: Path, tiny_dataset_dir: Path
) -> tuple[Workspace, str]:
    ws = Workspace(tmp_path_factory.mktemp("eval") / "ws")
    over = [
        f"base_model={tiny_model_dir}",
        f"dataset={tiny_dataset_dir}",
        "replay.max_new_tokens=8",
        "sft.max_steps=2",
        "sft.per_device_train_batch_size=4",
        "sft.gradient_accumulation_steps=1",
        "sft.save_strategy=no",
    ]
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread_for_tiny_models in conftest.py
    try:
        return ws, train(load_train_config(None, over), ws)
    finally:
        torch.set_num_threads(before)


def _rec(tiny_dataset_dir: Path, task: str) -> dict:
    return next(r for r in read_records(tiny_dataset_dir / "eval.jsonl") if r["task"] == task)


def test_score_answer_judges_the_contract_and_the_reference(tiny_dataset_dir):
    registry = default_registry()
    rec = _rec(tiny_dataset_dir, "json")
    reference = rec["messages"][-1]["content"]
    good = score_answer(rec, reference, reference, registry)
    assert good["valid"] and good["rouge_l"] == 1.0 and good["token_f1"] == 1.0
    assert good["grounding"] == 1.0 and good["citation_valid"] is None
    bad = score_answer(rec, '{"title": "x"}', reference, registry)
    assert not bad["valid"] and "required" in bad["errors"][0]
    bullets = _rec(tiny_dataset_dir, "summary")
    assert not score_answer(bullets, "- one\n- two", None, registry)["valid"]
    assert score_answer(bullets, "- a\n- b\n- c", None, registry)["grounding"] is None


def test_answer_caps_never_cut_an_answer_as_long_as_its_reference():
    from tests.conftest import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    short, long = "a b c", " ".join(["word"] * 400)
    n_short, n_long = (len(tok(t, add_special_tokens=False)["input_ids"]) for t in (short, long))
    caps = answer_caps(tok, [short, long], max_new_tokens=100)
    assert caps[0] == int(1.5 * n_short) + 32  # short references: 1.5x + 32
    assert caps[1] == n_long + 32 > 100  # past the ceiling: still room for the whole reference


def test_source_text_prefers_the_workspace_section(workspace, tiny_dataset_dir):
    rec = _rec(tiny_dataset_dir, "qa")
    assert source_text(workspace, rec) is None  # closed-book, section unknown
    p = rec["provenance"]
    with workspace.transaction() as db:
        db.execute(
            "INSERT INTO sections VALUES (?, ?, ?, 0, ?, 1, ?, ?, 0, 10)",
            (p["doc_id"], p["version"], p["section_id"], p["section_title"], "h", "Section body."),
        )
    assert source_text(workspace, rec) == "Section body."


def test_regressions_name_what_got_worse():
    def side(comp, acc):
        return {"overall": {"compliance": comp, "grounding": None}, "general": {"accuracy": acc}}

    assert regressions({"base": side(0.5, 0.8), "tuned": side(0.9, 0.75)}) == []
    found = regressions({"base": side(0.9, 0.8), "tuned": side(0.5, 0.5)})
    assert any("compliance fell" in f for f in found) and any("general" in f for f in found)


def test_evaluate_writes_the_report_and_stores_metrics(trained):
    ws, run_id = trained
    summary = evaluate_run(ws, None, EvalOptions(limit=4, max_new_tokens=24))
    assert summary["run_id"] == run_id and summary["n_eval"] == 4
    for side in ("base", "tuned"):
        overall = summary[side]["overall"]
        assert 0.0 <= overall["compliance"] <= 1.0 and overall["n"] == 4
        assert set(summary[side]["by_contract"]) == {"bullets:3", "json:procedure", "plain"}
        general = summary[side]["general"]
        assert general["n"] == 20 and general["n_with_expected"] == 16
        assert general["reference_nll"] > 0
    report = ws.path("runs", run_id, "report")
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "compliance" in html
    assert (report / "loss.png").stat().st_size > 1000
    assert "![loss](loss.png)" in (report / "report.md").read_text()
    samples = [json.loads(x) for x in (report / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"base", "tuned", "reference"} <= set(samples[0])
    stored = json.loads(ws.db.execute("SELECT metrics FROM runs").fetchone()[0])
    assert stored["eval"]["tuned"]["overall"] == summary["tuned"]["overall"]
    assert "train" in stored  # the train metrics stay
    # The base model's answers are cached: a second eval only generates the tuned ones.
    t = time.perf_counter()
    again = evaluate_run(ws, run_id, EvalOptions(limit=4, max_new_tokens=24))
    assert again["base"]["overall"] == summary["base"]["overall"]
    assert time.perf_counter() - t < 60
    # Decoded by the serving engine as the chat decodes by default (formats under their
    # grammar: even these random models comply), and the report says so; raw decoding is asked
    # for with loop_guard=False (`--no-guard`) and keeps its own base-answer cache.
    assert summary["options"]["loop_guard"] is True
    for side in ("base", "tuned"):
        for spec in ("bullets:3", "json:procedure"):
            assert summary[side]["by_contract"][spec]["compliance"] == 1.0, (side, spec)
    assert "as the chat decodes" in (report / "report.md").read_text()
    caches = set(ws.path("cache", "eval").iterdir())
    raw = evaluate_run(ws, run_id, EvalOptions(limit=4, max_new_tokens=24, loop_guard=False))
    assert raw["options"]["loop_guard"] is False
    assert len(set(ws.path("cache", "eval").iterdir()) - caches) == 1
    assert "raw greedy decoding by the serving engine" in (report / "report.md").read_text()
    assert raw["tuned"]["by_contract"]["bullets:3"]["compliance"] < 1.0  # a random model, raw


def test_a_task_filtered_evaluation_has_its_own_report_and_keeps_the_stored_one(trained):
    """`sopforge eval --tasks summary`: one task's records only (to measure a contract on more of
    them), reported in report-summary/; the run's stored evaluation and report stay as they were."""
    ws, run_id = trained
    evaluate_run(ws, run_id, EvalOptions(limit=4, max_new_tokens=24, general=False))
    stored = json.loads(ws.db.execute("SELECT metrics FROM runs").fetchone()[0])["eval"]
    full_report = (ws.path("runs", run_id, "report") / "report.md").read_text()
    opts = EvalOptions(limit=10, max_new_tokens=24, general=False, tasks=("summary",))
    part = evaluate_run(ws, run_id, opts)
    assert part["n_eval"] == 2  # the tiny eval split holds two summaries
    assert set(part["tuned"]["by_task"]) == {"summary"}
    assert set(part["tuned"]["by_contract"]) == {"bullets:3"}
    out = Path(part["report_dir"])
    assert out == ws.path("runs", run_id, "report-summary")
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["task"] for s in samples] == ["summary", "summary"]
    assert json.loads(ws.db.execute("SELECT metrics FROM runs").fetchone()[0])["eval"] == stored
    assert (ws.path("runs", run_id, "report") / "report.md").read_text() == full_report
    with pytest.raises(EvalError, match=r"no records of task\(s\) \['sumary'\]; it has"):
        evaluate_run(ws, run_id, EvalOptions(limit=4, general=False, tasks=("sumary",)))


def test_unknown_or_unfinished_runs_are_clear_errors(workspace):
    with pytest.raises(EvalError, match="no finished run"):
        evaluate_run(workspace)
    with pytest.raises(EvalError, match="not found"):
        evaluate_run(workspace, "nope")
