"""`sopforge eval`: the base model vs the tuned one, side by side, on held-out data.

Two held-out sets:
1. the dataset's eval.jsonl (sections never seen in training). Per answer: format compliance with
   the record's contract (the same validators ingest and serve use), ROUGE-L and token F1 against
   the reference answer, grounding in the source section, and, for open-book prompts, citation
   validity;
2. the held-out general prompts (configs/train/general_instructions.jsonl, split eval), asked
   under sopforge's system prompt as the served assistant is. General-ability retention is
   measured three honest, cheap ways, none of which needs a judge model:
   - accuracy on prompts with a known short answer (`expect` keywords: "capital of France" ->
     "Paris"), base vs tuned;
   - forgetting: mean per-token NLL, under each model, of the base model's own answers to these
     prompts (its "reference" answers, generated under its default system prompt); a rise means
     the tuned model moved away from what the base model would say;
   - ROUGE-L of each model's answer to that reference (drift in wording).

Answers are decoded by the serving engine exactly as the chat decodes them (train/generate.py
engine_answers: the same GGUF file, greedy, each format under its grammar, the citation line
under the citations the prompt shows, the DRY loop sampler; `--no-guard`: raw), many at once;
each plain answer's token cap is 1.5x its reference's length + 32 (at most --max-new-tokens), so
no model is cut short of an answer as long as the reference while runaway answers stop early
(a formatted answer gets the limit its grammar needs). The NLL of the general references comes
from the torch model. Base-model answers are cached
in the workspace (they do not change between runs on the same base model and eval set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sopforge.contracts import ContractError, default_registry
from sopforge.errors import UserError
from sopforge.records import SYSTEM_PROMPT, answer_of, prompt_of, split_sources
from sopforge.train import metrics as M
from sopforge.train.config import DEFAULT_INSTRUCTIONS
from sopforge.workspace import Workspace, atomic_write_text

log = logging.getLogger(__name__)

# A tuned model may not lose more than this (absolute) on a rate metric vs the base model.
TOLERANCE = 0.02


class EvalError(UserError):
    pass


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None  # eval records (spread over tasks); None = all
    max_new_tokens: int = 320
    batch_size: int = 8
    general: bool = True  # also the held-out general prompts
    formats_dir: str | None = None
    # decode as the chat does (the serving engine's grammars and loop protection); False = raw
    loop_guard: bool = True
    serve_config: str | None = None  # whose `engine:` decodes (None: configs/serve/default.yaml)
    # Only these tasks' records (e.g. ("summary",) to measure one contract on more records); the
    # report then goes to report-<tasks>/ and the run's stored evaluation is left as it was.
    tasks: tuple[str, ...] = ()


# ---- which run, which data ------------------------------------------------------------------


def find_run(workspace: Workspace, run_id: str | None) -> dict[str, Any]:
    db = workspace.db
    if run_id in (None, "", "latest"):
        row = db.execute(
            "SELECT * FROM runs WHERE status = 'finished' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise EvalError(f"no finished run in {workspace.root}; train one with `sopforge train`")
    else:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise EvalError(f"run {run_id!r} not found in {workspace.root}")
        if row["status"] != "finished":
            raise EvalError(
                f"run {run_id} is {row['status']}, not finished; resume it with "
                f"`sopforge train --resume {run_id}`"
            )
    return dict(row)


def source_text(workspace: Workspace, rec: dict[str, Any]) -> str | None:
    """The text an answer should be grounded in: the provenance section's body in the workspace,
    else (open-book) the sources shown in the prompt; None when neither is available."""
    prov = rec.get("provenance") or {}
    if {"doc_id", "version", "section_id"} <= set(prov):
        row = workspace.db.execute(
            "SELECT body FROM sections WHERE doc_id = ? AND version = ? AND section_id = ?",
            (prov["doc_id"], prov["version"], prov["section_id"]),
        ).fetchone()
        if row is not None and row["body"].strip():
            return str(row["body"])
        row = workspace.db.execute(
            "SELECT text FROM versions WHERE doc_id = ? AND version = ?",
            (prov["doc_id"], prov["version"]),
        ).fetchone()
        span = prov.get("span") or [0, 0]
        if row is not None and span[1] > span[0]:
            return str(row["text"][span[0] : span[1]])
    if shown_citations(rec):  # an open-book prompt: the sources it showed
        return "\n".join(m["content"] for m in rec["messages"][:-1] if m["role"] == "user")
    return None


def shown_citations(rec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Citations of the sources an open-book prompt showed (`Source [Doc § Section, v...]`)."""
    prompt = "\n".join(m["content"] for m in rec["messages"][:-1])
    return M.citations(prompt)


# ---- generation (cached for the base model) --------------------------------------------------


def answer_caps(tokenizer: Any, references: list[str], max_new_tokens: int) -> list[int]:
    """Per-record token caps: 1.5x the reference (+32), at most `max_new_tokens`, but never less
    than the reference itself (+32), so an answer as long as the reference is never cut off."""
    caps = []
    for r in references:
        n = len(tokenizer(r, add_special_tokens=False)["input_ids"])
        caps.append(max(min(max_new_tokens, int(1.5 * n) + 32), n + 32))
    return caps


def _cache_file(workspace: Workspace, base_model: Path, payload: Any) -> Path:
    from sopforge.train.replay import model_fingerprint

    key = hashlib.sha256(
        (model_fingerprint(base_model) + json.dumps(payload, sort_keys=True)).encode()
    ).hexdigest()[:16]
    return workspace.path("cache", "eval", f"{key}.json")


def _engine_answers(
    base_model: Path,
    adapter: Path | None,
    items: list[Any],
    general_prompts: list[list[dict[str, str]]],
    opts: EvalOptions,
    label: str,
) -> dict[str, Any]:
    """One model's answers to the eval records and the general prompts, from the serving engine
    (as the chat decodes them), in one batch."""
    from sopforge.train.generate import engine_answers, plain_items

    t = time.perf_counter()
    both = engine_answers(
        base_model,
        adapter,
        [*items, *plain_items(general_prompts, opts.max_new_tokens)],
        guard=opts.loop_guard,
        desc=label,
        serve_config=opts.serve_config,
    )
    return {
        "answers": both[: len(items)],
        "general": both[len(items) :],
        "seconds": round(time.perf_counter() - t, 1),
    }


# ---- scoring -------------------------------------------------------------------------------


def score_answer(
    rec: dict[str, Any], answer: str, source: str | None, registry: Any
) -> dict[str, Any]:
    """All per-answer metrics of one eval record."""
    reference = answer_of(rec)
    try:  # judged like the server's format guard: the trailing "Source: [...]" line aside
        errors = registry.get(rec["contract"]).validate(split_sources(answer)[0])
    except ContractError as e:
        errors = [f"unknown contract: {e}"]
    out: dict[str, Any] = {
        "valid": not errors,
        "errors": errors[:3],
        "rouge_l": M.rouge_l(answer, reference),
        "token_f1": M.token_f1(answer, reference),
        "grounding": M.grounding(answer, source) if source else None,
        "citation_valid": None,
    }
    # An open-book prompt (ingest's open_book_tasks): the answer must cite a source it was shown.
    shown = shown_citations(rec)
    if shown:
        out["citation_valid"] = M.citation_valid(answer, shown)
    return out


def summarize(scores: list[dict[str, Any]]) -> dict[str, Any]:
    cited = [s["citation_valid"] for s in scores if s["citation_valid"] is not None]
    return {
        "n": len(scores),
        "compliance": M.mean(float(s["valid"]) for s in scores),
        "rouge_l": M.mean(s["rouge_l"] for s in scores),
        "token_f1": M.mean(s["token_f1"] for s in scores),
        "grounding": M.mean(s["grounding"] for s in scores),
        "citation_validity": M.mean(float(c) for c in cited) if cited else None,
    }


def group_summaries(
    records: list[dict[str, Any]], scores: list[dict[str, Any]], key: str
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec, s in zip(records, scores, strict=True):
        groups[rec[key]].append(s)
    return {k: summarize(v) for k, v in sorted(groups.items())}


def general_summary(
    items: list[dict[str, Any]], answers: list[str], nll: list[float]
) -> dict[str, Any]:
    with_expect = [(it, a) for it, a in zip(items, answers, strict=True) if it.get("expect")]
    return {
        "n": len(items),
        "n_with_expected": len(with_expect),
        "accuracy": M.mean(float(M.keyword_hit(a, it["expect"])) for it, a in with_expect),
        "rouge_l_to_reference": M.mean(
            M.rouge_l(a, it["answer"]) for it, a in zip(items, answers, strict=True)
        ),
        "reference_nll": M.mean(nll),
    }


def regressions(summary: dict[str, Any]) -> list[str]:
    """What got worse from base to tuned beyond the tolerance: the promotion gate's evidence."""
    problems = []
    base, tuned = summary["base"], summary["tuned"]
    for metric in ("compliance", "citation_validity", "grounding"):
        b, t = base["overall"].get(metric), tuned["overall"].get(metric)
        if b is not None and t is not None and t < b - TOLERANCE:
            problems.append(f"{metric} fell from {b:.2f} (base) to {t:.2f} (tuned)")
    gb, gt = base.get("general", {}).get("accuracy"), tuned.get("general", {}).get("accuracy")
    if gb is not None and gt is not None and gt < gb - 0.1:
        problems.append(f"general-knowledge accuracy fell from {gb:.2f} to {gt:.2f}")
    return problems


# ---- the command ---------------------------------------------------------------------------


def general_items(
    workspace: Workspace, base_model: Path, cfg: dict[str, Any]
) -> list[dict[str, Any]]:
    from sopforge.train.replay import base_answers

    replay = cfg.get("replay") or {}
    instructions = Path(replay.get("instructions") or DEFAULT_INSTRUCTIONS)
    rows = base_answers(workspace, base_model, instructions, int(replay.get("max_new_tokens", 192)))
    return [r for r in rows if r["split"] == "eval"]


def evaluate_run(
    workspace: Workspace, run_id: str | None = None, opts: EvalOptions | None = None
) -> dict[str, Any]:
    """Evaluate a finished run against its base model; write runs/<id>/report/; return the summary."""
    from sopforge.train.data import read_records, resolve_dataset, spread_by_task
    from sopforge.train.generate import load_model

    opts = opts or EvalOptions()
    run = find_run(workspace, run_id)
    cfg = json.loads(run["config"])
    base_model = Path(run["base_model"])
    adapter = Path(run["path"]) / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise EvalError(f"run {run['run_id']} has no adapter at {adapter}")
    ds = resolve_dataset(cfg.get("dataset") or run["dataset_id"] or "", workspace)
    records = read_records(ds.path / "eval.jsonl")
    if opts.tasks:
        present = sorted({r["task"] for r in records})
        missing = sorted(set(opts.tasks) - set(present))
        if missing:
            raise EvalError(
                f"{ds.path / 'eval.jsonl'} has no records of task(s) {missing}; it has {present}"
            )
        records = [r for r in records if r["task"] in opts.tasks]
    records = spread_by_task(records, opts.limit)
    if not records:
        raise EvalError(f"{ds.path / 'eval.jsonl'} has no records to evaluate on")
    general = general_items(workspace, base_model, cfg) if opts.general else []
    registry = default_registry(opts.formats_dir)
    sources = [source_text(workspace, r) for r in records]
    prompts = [prompt_of(r) for r in records]
    g_prompts = [
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": it["prompt"]}]
        for it in general
    ]
    g_refs = [it["answer"] for it in general]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    caps = answer_caps(tokenizer, [answer_of(r) for r in records], opts.max_new_tokens)
    from sopforge.train.generate import answer_nll, engine_config, record_items

    items = record_items(records, caps, registry)

    engine = engine_config(opts.serve_config)
    decoding = asdict(engine.decoding() if opts.loop_guard else engine.decoding().raw())
    cache = _cache_file(
        workspace,
        base_model,
        [prompts, caps, g_prompts, g_refs, opts.max_new_tokens, engine.llamacpp_dtype, decoding],
    )
    # Every answer first, torch after: torch's threads, once started, slow llama.cpp's.
    cached = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else None
    base_out = cached or _engine_answers(base_model, None, items, g_prompts, opts, "base")
    tuned_out = _engine_answers(base_model, adapter, items, g_prompts, opts, "tuned")
    # the NLL of the general references under each model (forgetting), from the torch models
    model, tokenizer = load_model(str(base_model))
    if cached is None:
        base_out["general_nll"] = answer_nll(
            model, tokenizer, g_prompts, g_refs, batch_size=opts.batch_size
        )
        atomic_write_text(cache, json.dumps(base_out))
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    tuned_out["general_nll"] = answer_nll(
        model, tokenizer, g_prompts, g_refs, batch_size=opts.batch_size
    )

    per_model: dict[str, Any] = {}
    samples = []
    for name, out in (("base", base_out), ("tuned", tuned_out)):
        scores = [
            score_answer(r, a, s, registry)
            for r, a, s in zip(records, out["answers"], sources, strict=True)
        ]
        per_model[name] = {
            "overall": summarize(scores),
            "by_contract": group_summaries(records, scores, "contract"),
            "by_task": group_summaries(records, scores, "task"),
            "general": general_summary(general, out["general"], out["general_nll"])
            if general
            else {},
            "seconds": out["seconds"],
        }
        for i, (r, a, s) in enumerate(zip(records, out["answers"], scores, strict=True)):
            if name == "base":
                samples.append(
                    {
                        "id": r["id"],
                        "task": r["task"],
                        "contract": r["contract"],
                        "prompt": r["messages"][-2]["content"],
                        "reference": answer_of(r),
                    }
                )
            samples[i][name] = {"answer": a, **s}
    summary: dict[str, Any] = {
        "run_id": run["run_id"],
        "dataset_id": ds.dataset_id,
        "n_eval": len(records),
        "options": asdict(opts),
        **per_model,
    }
    summary["regressions"] = regressions(summary)
    summary["passed"] = not summary["regressions"]
    general_rows = [
        {
            "id": it["id"],
            "prompt": it["prompt"],
            "expect": it.get("expect", []),
            "reference": it["answer"],
            "base": b,
            "tuned": t,
        }
        for it, b, t in zip(general, base_out["general"], tuned_out["general"], strict=True)
    ]
    from sopforge.train.report import write_report

    report_dir = Path(run["path"]) / "-".join(["report", *sorted(set(opts.tasks))])
    write_report(report_dir, summary, samples, general_rows, Path(run["path"]) / "metrics.jsonl")
    if not opts.tasks:  # a partial evaluation never replaces the run's stored one
        _store(workspace, run, summary)
    summary["report_dir"] = str(report_dir)
    return summary


def _store(workspace: Workspace, run: dict[str, Any], summary: dict[str, Any]) -> None:
    """Keep the eval summary (without per-answer detail) in the runs table."""
    compact = {k: summary[k] for k in ("n_eval", "dataset_id", "regressions", "passed")}
    for name in ("base", "tuned"):
        compact[name] = {k: summary[name][k] for k in ("overall", "by_contract", "general")}
    with workspace.transaction() as db:
        row = db.execute("SELECT metrics FROM runs WHERE run_id = ?", (run["run_id"],)).fetchone()
        metrics = json.loads(row["metrics"] or "{}") if row else {}
        metrics["eval"] = compact
        db.execute(
            "UPDATE runs SET metrics = ? WHERE run_id = ?", (json.dumps(metrics), run["run_id"])
        )
