"""`sopforge retrain`: after procedures change, train on the current dataset, prove the new model is
no worse than the promoted one and no longer gives the old answers, then swap it in.

    newest dataset (ingest already regenerated changed sections and retired superseded pairs)
      ─► train (warm start from the promoted adapter unless told otherwise)
      ─► evaluate: base vs new (the usual report) and promoted vs new on the same held-out records
      ─► stale-procedure probes on every changed section: new model must say the new fact, not the old
      ─► gate: no regression beyond the tolerance and the probes pass ─► promote (or say why not)

A running `sopforge serve` follows the promoted model by itself (it watches the registry), so a
promotion here hot-swaps the served model; `sopforge models rollback` swaps it back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.records import answer_of, question_of
from sopforge.train import probes as P
from sopforge.workspace import Workspace, atomic_write_text

log = logging.getLogger(__name__)

TOLERANCE = 0.02  # absolute drop allowed in compliance / ROUGE-L vs the promoted model
CHANGED_WEIGHT = 4  # times a changed section's records are seen, relative to the unchanged ones


class RetrainError(UserError):
    pass


def _score_model(
    base_model: str,
    adapter: str | None,
    records: list[dict],
    sources: list[str | None],
    probes: list[P.Probe],
) -> tuple[dict[str, Any], list[P.ProbeResult]]:
    """Answers of one model on the held-out records and the probes, scored."""
    from transformers import AutoTokenizer

    from sopforge.contracts import default_registry
    from sopforge.train.evaluate import score_answer, summarize
    from sopforge.train.generate import engine_answers, plain_items, record_items

    tok = AutoTokenizer.from_pretrained(base_model)
    registry = default_registry()
    caps = [min(320, len(tok(answer_of(r))["input_ids"]) * 3 // 2 + 32) for r in records]
    items = record_items(records, caps, registry)
    probe_prompts = [p.prompt() for p in probes]
    # decoded by the serving engine as the chat decodes, so the gate judges what users would get;
    # held-out records and probes in one batch
    answers = engine_answers(
        base_model, adapter, [*items, *plain_items(probe_prompts, 160)], desc="gate"
    )
    scores = [
        score_answer(r, a, s, registry)
        for r, a, s in zip(records, answers[: len(records)], sources, strict=True)
    ]
    probe_answers = iter(answers[len(records) :])
    results = P.run_probes(probes, lambda prompts: [next(probe_answers) for _ in prompts])
    return summarize(scores), results


def gate(
    new: dict[str, Any],
    old: dict[str, Any] | None,
    probe_summary: dict[str, Any],
    tolerance: float,
    min_probe_pass: float,
) -> list[str]:
    """Reasons not to promote (empty = promote)."""
    reasons = []
    if old is not None:
        for metric in ("compliance", "rouge_l"):
            n, o = new.get(metric), old.get(metric)
            if n is not None and o is not None and n < o - tolerance:
                reasons.append(
                    f"{metric} fell from {o:.3f} (promoted) to {n:.3f} (new), beyond the tolerance {tolerance}"
                )
    rate = probe_summary.get("pass_rate")
    if rate is not None and rate < min_probe_pass:
        reasons.append(
            f"stale-procedure probes: {probe_summary['passed']}/{probe_summary['probes']} passed "
            f"(need {min_probe_pass:.0%}); {probe_summary['gave_old_answer']} answer(s) still give the old procedure"
        )
    return reasons


def retrain(
    ws: Workspace,
    *,
    config: str | None = None,
    overrides: Sequence[str] = (),
    warm_start: bool = True,
    force: bool = False,
    eval_limit: int | None = 60,
    tolerance: float = TOLERANCE,
    min_probe_pass: float = 1.0,
    changed_weight: int = CHANGED_WEIGHT,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    from sopforge.train import registry
    from sopforge.train.config import load_train_config
    from sopforge.train.data import read_records, resolve_dataset, spread_by_task
    from sopforge.train.evaluate import EvalOptions, evaluate_run, source_text
    from sopforge.train.run import run_dir, train

    promoted = registry.promoted_model(ws)
    ds = resolve_dataset("", ws)
    extra = [f"dataset={ds.dataset_id}"]
    if warm_start and promoted and promoted.get("adapter_path"):
        extra.append("init_adapter=promoted")
    # the changed sections are what the old model gets wrong: seen `changed_weight` times as
    # often as the replayed rest (an override changed_weight=... in `overrides` wins)
    cfg = load_train_config(config, [f"changed_weight={changed_weight}", *overrides, *extra])
    run_id = train(cfg, ws, callbacks=callbacks)
    evaluate_run(ws, run_id, EvalOptions(limit=eval_limit))
    new_model = registry.show_model(ws, run_id)

    records = spread_by_task(read_records(ds.path / "eval.jsonl"), eval_limit)
    sources = [source_text(ws, r) for r in records]
    probes = P.probes_from_workspace(ws, ds.path)
    new_scores, new_probes = _score_model(
        new_model["base_model"], new_model["adapter_path"], records, sources, probes
    )
    old_scores, old_probes = (None, [])
    if promoted:
        old_scores, old_probes = _score_model(
            promoted["base_model"], promoted.get("adapter_path"), records, sources, probes
        )
    probe_summary = P.summary(new_probes)
    reasons = gate(new_scores, old_scores, probe_summary, tolerance, min_probe_pass)
    reasons += [
        r for r in registry.gate(registry.show_model(ws, run_id), promoted) if r not in reasons
    ]
    promoted_now = False
    if not reasons or force:
        registry.promote(
            ws,
            run_id,
            force=True,
            reason=("forced: " + "; ".join(reasons)) if reasons else "retrain gate passed",
        )
        promoted_now = True
        if (
            reasons
        ):  # the registry's own gate may have passed: the override is ours, log it as forced
            with ws.transaction() as db:
                db.execute(
                    "UPDATE promotions SET forced = 1 WHERE id = (SELECT MAX(id) FROM promotions)"
                )
    result = {
        "run_id": run_id,
        "dataset_id": ds.dataset_id,
        "warm_start": "init_adapter=promoted" in extra,
        "changed_weight": cfg.changed_weight,
        "previous_model": promoted["model_id"] if promoted else None,
        "new": new_scores,
        "previous": old_scores,
        "probes": probe_summary,
        "previous_probes": P.summary(old_probes) if promoted else None,
        "reasons": reasons,
        "forced": bool(reasons) and force,
        "promoted": promoted_now,
    }
    out = run_dir(ws, run_id)
    atomic_write_text(out / "retrain.json", json.dumps(result, indent=2))
    atomic_write_text(out / "retrain.md", retrain_markdown(result))
    return result


def _cell(question: str) -> str:
    """An open-book probe's prompt holds its sources: the table shows the question, on one line."""
    return " ".join(question_of(question).split()).replace("|", "\\|")[:80]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def retrain_markdown(r: dict[str, Any]) -> str:
    lines = [f"# Retrain {r['run_id']}", ""]
    if r["promoted"]:
        lines.append(
            "**Promoted**"
            + (" (forced despite: " + "; ".join(r["reasons"]) + ")" if r["forced"] else ".")
        )
    else:
        lines.append(
            "**Not promoted**: "
            + "; ".join(r["reasons"])
            + f". {r['previous_model']} keeps serving."
        )
    lines += [
        "",
        f"Dataset {r['dataset_id']}; warm start: {r['warm_start']}; records of changed sections"
        f" weighted x{r.get('changed_weight', 1)}.",
        "",
    ]
    lines += ["| metric | previous | new |", "|---|---|---|"]
    prev = r["previous"] or {}
    for m in ("compliance", "rouge_l", "token_f1", "grounding"):
        lines.append(f"| {m} | {_pct(prev.get(m))} | {_pct(r['new'].get(m))} |")
    p = r["probes"]
    lines += ["", f"## Stale-procedure probes: {p['passed']}/{p['probes']} passed", ""]
    if p["results"]:
        lines += [
            "| section | question | new facts | old facts | new model | previous model |",
            "|---|---|---|---|---|---|",
        ]
        prev_results = {
            (x["section_id"], x["question"]): x
            for x in (r["previous_probes"] or {}).get("results", [])
        }
        for x in p["results"]:
            old = prev_results.get((x["section_id"], x["question"]))
            verdict = (
                "pass" if x["passed"] else ("OLD answer" if x["has_old"] else "missing new fact")
            )
            prev_verdict = (
                "–"
                if old is None
                else (
                    "pass"
                    if old["passed"]
                    else ("OLD answer" if old["has_old"] else "missing new fact")
                )
            )
            lines.append(
                f"| {x['doc_id']} § {x['section_id']} | {_cell(x['question'])} | {', '.join(x['new_facts'])} | "
                f"{', '.join(x['old_facts'])} | {verdict} | {prev_verdict} |"
            )
    return "\n".join(lines) + "\n"


def last_retrain(ws: Workspace) -> Path | None:
    rows = ws.db.execute("SELECT path FROM runs ORDER BY created_at DESC").fetchall()
    for row in rows:
        p = Path(row["path"]) / "retrain.md"
        if p.exists():
            return p
    return None
