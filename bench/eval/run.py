"""Benchmark: generating a run's evaluation answers, the torch path it replaced vs the serving engine.

    python bench/eval/run.py --workspace WS [--run RUN_ID] [--limit 120] [--json out.json]

On the same held-out records of the run's dataset (spread over tasks, as `sopforge eval --limit`
picks them), the tuned model (base + the run's adapter, merged) answers four ways:

- **torch raw / torch guarded**: transformers `model.generate`, fp32, batches of 8 with left
  padding (train/generate.generate: what `sopforge eval`, the retrain gate and the replay answers
  used before the engine), without and with sopforge.decoding's loop guard;
- **engine raw / engine guarded**: the serving engine (train/generate.engine_answers: the GGUF the
  chat serves, llama.cpp's continuous batching; raw = no grammar; guarded = formats under their
  grammar and the citation line under the prompt's sources: what the chat does).

Printed: wall time of each arm and the torch/engine ratio, and compliance per contract with its
Wilson 95% interval, so that nobody has to wonder whether the engine changed the answers.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", required=True)
    p.add_argument("--run", default=None, help="run id (default: the newest finished run)")
    p.add_argument("--limit", type=int, default=120)
    p.add_argument("--max-new-tokens", type=int, default=320)
    p.add_argument("--arms", default="engine-raw,engine-guarded,torch-raw,torch-guarded")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from sopforge.contracts import default_registry
    from sopforge.records import answer_of, prompt_of
    from sopforge.train.data import read_records, resolve_dataset, spread_by_task
    from sopforge.train.evaluate import answer_caps, find_run, score_answer, source_text
    from sopforge.workspace import Workspace

    ws = Workspace(args.workspace)
    run = find_run(ws, args.run)
    cfg = json.loads(run["config"])
    base, adapter = Path(run["base_model"]), Path(run["path"]) / "adapter"
    ds = resolve_dataset(cfg.get("dataset") or run["dataset_id"] or "", ws)
    records = spread_by_task(read_records(ds.path / "eval.jsonl"), args.limit)
    registry = default_registry()
    sources = [source_text(ws, r) for r in records]
    prompts = [prompt_of(r) for r in records]
    from transformers import AutoTokenizer

    caps = answer_caps(
        AutoTokenizer.from_pretrained(base), [answer_of(r) for r in records], args.max_new_tokens
    )
    from sopforge.train.generate import record_items

    items = record_items(records, caps, registry)
    print(f"run {run['run_id']}, {len(records)} held-out records of dataset {ds.dataset_id}")
    results: dict[str, Any] = {}
    arms = [a for a in args.arms.split(",") if a]
    # engine arms first: torch's threads, once started, slow llama.cpp's in the same process
    for arm in sorted(arms, key=lambda a: not a.startswith("engine")):
        guard = arm.endswith("guarded")
        t = time.perf_counter()
        if arm.startswith("engine"):
            from sopforge.train.generate import engine_answers

            answers = engine_answers(base, adapter, items, guard=guard, desc=arm)
        else:
            from sopforge.train.generate import generate, load_model

            model, tok = load_model(str(base), str(adapter))
            answers = generate(model, tok, prompts, max_new_tokens=caps, desc=arm, loop_guard=guard)
        seconds = time.perf_counter() - t
        scores = [
            score_answer(r, a, s, registry)
            for r, a, s in zip(records, answers, sources, strict=True)
        ]
        by: dict[str, list[bool]] = {}
        for r, s in zip(records, scores, strict=True):
            by.setdefault(r["contract"], []).append(s["valid"])
        results[arm] = {
            "seconds": round(seconds, 1),
            "compliance": {
                c: {
                    "k": sum(v),
                    "n": len(v),
                    "wilson95": [round(x, 3) for x in wilson(sum(v), len(v))],
                }
                for c, v in sorted(by.items())
            },
            "rouge_l": round(sum(s["rouge_l"] for s in scores) / len(scores), 4),
            "answers": answers,
        }
        print(f"  {arm:15s} {seconds:7.1f} s", flush=True)
    print(
        f"\n{'arm':15s} {'seconds':>8s} {'ROUGE-L':>8s}  compliance per contract (k/n, Wilson 95%)"
    )
    for arm, r in results.items():
        comp = "; ".join(
            f"{c} {v['k']}/{v['n']} [{v['wilson95'][0]:.2f}, {v['wilson95'][1]:.2f}]"
            for c, v in r["compliance"].items()
        )
        print(f"{arm:15s} {r['seconds']:8.1f} {r['rouge_l']:8.3f}  {comp}")
    for kind in ("raw", "guarded"):
        e, t = results.get(f"engine-{kind}"), results.get(f"torch-{kind}")
        if e and t:
            print(f"{kind}: engine {t['seconds'] / e['seconds']:.1f}x faster than torch")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
