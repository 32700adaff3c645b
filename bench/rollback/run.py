"""Rollback latency: from `sopforge models rollback` to the running engine serving the previous model.

    .venv/bin/python bench/rollback/run.py [--model bundled|tiny] [--repeats 5] [--interval S]
                                           [--workspace WS] [--json out.json]

Set-up, in a temporary workspace (your workspace's promotions are never touched): the base model
(`bundled`: the embedded SmolLM2-135M-Instruct, imported into --workspace once, about a minute the
first time and reused after; `tiny`: the 2-layer random Llama of the test suite), two LoRA adapters
A and B registered as finished runs (rank 16 on every linear layer, random weights: the size of a
trained adapter, which is all that loading costs depend on), A promoted, then B. An Engine serves
B and a RegistryWatcher follows the registry, as `sopforge serve` wires them.

Each repeat: promote B and wait until it is served (not timed), then wait a random fraction of
the watcher's poll interval (a rollback comes at any moment, not right after a poll); then start
the clock, run `sopforge models rollback` (the CLI's own entry point, in this process so
interpreter start-up is not counted), and poll the engine every 5 ms until it serves A. After each swap a short greedy
answer is compared with A's, so the number is for A really answering.

Also measured on their own: the registry call (the CLI command), and loading A (base + adapter
merged: what the watcher does after it notices). The swap costs on average half the watcher's
poll interval plus the load; the output says which of the two dominates.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "I lost my badge. What do I do?"}]


def tiny_base(out: Path) -> Path:
    """The test suite's tiny random Llama + tokenizer (tests/conftest.py builds it offline)."""
    spec = importlib.util.spec_from_file_location(
        "sopforge_tests_conftest", REPO / "tests" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    tokenizer = conftest.build_tiny_tokenizer()
    conftest.build_tiny_model(len(tokenizer), tokenizer).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_adapter(base: Path, out: Path, seed: int, scale: float) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False),
    )
    with torch.no_grad():  # scale B: a real model stays coherent, yet answers unlike the other one
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    model.save_pretrained(out)
    return out


def register(ws: Any, model_id: str, base: Path, adapter: Path) -> None:
    """A finished run and its model, as `sopforge models add` records them."""
    from sopforge.train import registry

    registry.add_adapter(ws, adapter, base, model_id)


def wait_until_served(engine: Any, model_id: str, timeout: float = 300.0) -> float:
    start = time.perf_counter()
    while engine.model_id != model_id:
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"the engine still serves {engine.model_id} after {timeout:.0f} s")
        time.sleep(0.005)
    return time.perf_counter() - start


def summary(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", choices=("bundled", "tiny"), default="bundled")
    p.add_argument("--repeats", type=int, default=5, help="rollbacks measured")
    p.add_argument(
        "--interval", type=float, default=None, help="watcher poll interval, s (default: serve's)"
    )
    p.add_argument(
        "--workspace",
        default=None,
        help="where the bundled model is imported once (default $SOPFORGE_WORKSPACE or ./workspace)",
    )
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)

    from sopforge.cli import main as sopforge
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import Engine, ModelSpec, RegistryWatcher, load_backend
    from sopforge.train import registry
    from sopforge.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="sopforge-bench-rollback-"))
    if args.model == "bundled":
        from sopforge.train.models import import_default_model

        started = time.perf_counter()
        base = import_default_model(Workspace(args.workspace))
        print(f"base model {base} ready in {time.perf_counter() - started:.1f} s")
    else:
        base = tiny_base(tmp / "tiny")
    ws = Workspace(tmp / "ws")
    for seed, name in enumerate(("model-a", "model-b")):
        # A random tiny model needs the full random delta for A and B to answer differently.
        scale = 0.01 if args.model == "bundled" else 1.0
        register(ws, name, base, random_adapter(base, tmp / name / "adapter", seed, scale))
        registry.promote(ws, name, force=True, reason="rollback benchmark")

    cfg = EngineConfig(dtype=args.dtype, threads=args.threads, max_new_tokens=12)
    row = registry.show_model(ws, "model-a")
    spec_a = ModelSpec("model-a", row["base_model"], row["adapter_path"])
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        backend_a = load_backend(spec_a, cfg)
        loads.append(time.perf_counter() - started)
    answer_a = Engine(backend_a, cfg).generate(MESSAGES, stream=False)
    del backend_a

    engine = Engine.from_workspace(ws, cfg)
    answer_b = engine.generate(MESSAGES, stream=False)
    if answer_b == answer_a:
        raise SystemExit("adapters A and B answer alike; the swap could not be checked")
    watcher = RegistryWatcher(
        engine, ws, **({"interval_s": args.interval} if args.interval else {})
    )
    watcher.start()
    swaps, calls = [], []
    rng = random.Random(0)
    try:
        for i in range(args.repeats):
            if i:  # back to B, untimed
                registry.promote(ws, "model-b", force=True, reason="rollback benchmark")
            wait_until_served(engine, "model-b")
            time.sleep(rng.uniform(0, watcher.interval_s))  # else every rollback waits a full poll
            started = time.perf_counter()
            if sopforge(["-w", str(ws.root), "models", "rollback"]) != 0:
                raise SystemExit("sopforge models rollback failed")
            calls.append(time.perf_counter() - started)
            wait_until_served(engine, "model-a")
            swaps.append(time.perf_counter() - started)
            if engine.generate(MESSAGES, stream=False) != answer_a:
                raise SystemExit("after the rollback the engine does not answer as model A")
    finally:
        watcher.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    interval = watcher.interval_s
    load = statistics.median(loads)
    results = {
        "model": args.model,
        "base": str(base),
        "dtype": args.dtype,
        "repeats": args.repeats,
        "watcher_interval_s": interval,
        "rollback_to_served_s": summary(swaps),
        "registry_call_s": summary(calls),
        "load_s": summary(loads),
        "runs_s": swaps,
    }
    s = results["rollback_to_served_s"]
    print(f"model {args.model} ({base.name}), {args.repeats} rollbacks")
    print(
        f"rollback -> serving A: min {s['min']:.3f} s, median {s['median']:.3f} s, "
        f"max {s['max']:.3f} s"
    )
    print(
        f"  of which: `sopforge models rollback` (registry call) median "
        f"{statistics.median(calls) * 1000:.1f} ms; loading A (base + adapter, merged) median "
        f"{load:.3f} s; watcher poll interval {interval:.2f} s (expected wait {interval / 2:.2f} s)"
    )
    if interval / 2 > load:
        print(
            f"the watcher's poll interval dominates: it accounts for ~{interval / 2:.2f} s of the "
            f"{s['median']:.2f} s median (load {load:.2f} s); a shorter --interval lowers it"
        )
    else:
        print(f"loading the model dominates ({load:.2f} s vs ~{interval / 2:.2f} s of polling)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
