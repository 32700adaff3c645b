"""Serving benchmark: the local engine against plain `model.generate`, then 8 concurrent clients.

    .venv/bin/python bench/serve/run.py [--model DIR] [--adapter DIR] [--tokens 96] [--json out.json]

1. Same model, same adapter, same prompt, greedy, in one process, alternating runs (medians):
   - plain: the PEFT model as loaded (adapter not merged) with `model.generate`; time to first
     token = a 1-token generate (prefill + one step); decode tokens/s from an N-token generate.
   - engine: `Engine.generate(stream=True)` (adapter merged, TextIteratorStreamer thread); time to
     first token = first text delta; decode tokens/s over the rest of the stream.
2. Server: `build_app` under uvicorn on 127.0.0.1, 8 client threads with the `openai` client
   sending chat completions (retrieval, guard, audit included); p50/p95 latency and error count.

Default model: the embedded SmolLM2-135M-Instruct imported into the workspace (once), with a fresh
LoRA adapter (random B, so merging changes the weights). Numbers are for this machine (2 cores,
shared): read them relative to each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "corpus" / "md"
QUESTION = "A security incident is happening. Explain step by step what I must do and who I inform."


def make_adapter(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    # Small random B: a real-sized adapter delta that keeps the model's text coherent.
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)
    model.save_pretrained(out)
    return out


def load_plain(model_dir: Path, adapter: Path, dtype: Any) -> tuple[Any, Any]:
    """The PEFT model as `PeftModel.from_pretrained` gives it: adapter applied, not merged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    return PeftModel.from_pretrained(base, adapter).eval(), tok


def plain_generate(
    model: Any, tok: Any, messages: list[dict[str, str]], n: int
) -> dict[str, float]:
    import torch

    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    kwargs = {"do_sample": False, "pad_token_id": tok.pad_token_id or tok.eos_token_id}
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(**inputs, max_new_tokens=1, **kwargs)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, **kwargs)
        total = time.perf_counter() - t0
    generated = out.shape[1] - inputs["input_ids"].shape[1]
    return {
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "tokens": int(generated),
        "ttft_s": ttft,
        "decode_tok_s": (generated - 1) / max(total - ttft, 1e-9),
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def engine_generate(engine: Any, messages: list[dict[str, str]], n: int) -> dict[str, float]:
    tok = engine.backend.tokenizer
    t0 = time.perf_counter()
    first = None
    parts = []
    for delta in engine.generate(messages, max_new_tokens=n):
        if first is None:
            first = time.perf_counter()
        parts.append(delta)
    end = time.perf_counter()
    generated = len(tok("".join(parts), add_special_tokens=False)["input_ids"])
    first = first or end
    return {
        "tokens": generated,
        "ttft_s": first - t0,
        # The first delta holds the first word (maybe several tokens): count what came after it.
        "decode_tok_s": (generated - len(tok(parts[0], add_special_tokens=False)["input_ids"]))
        / max(end - first, 1e-9),
    }


def concurrent_clients(
    engine: Any, ws: Any, clients: int, per_client: int, max_tokens: int
) -> dict[str, Any]:
    import openai
    import uvicorn

    from sopforge.serve.app import build_app
    from sopforge.serve.auth import create_key
    from sopforge.serve.config import ServeConfig

    port = free_port()
    cfg = ServeConfig(port=port, engine=engine.cfg)
    app = build_app(cfg, ws, engine=engine)
    app.state.sopforge.users.add("bench", "employee", "bench-password")
    _, key = create_key(ws, "bench")
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    questions = [
        "I lost my badge, what do I do?",
        "Who approves travel expenses?",
        "Summarize the incident procedure in 3 bullets",
        "How do I go on call?",
    ]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        c = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600
        )
        for j in range(per_client):
            q = questions[(i + j) % len(questions)]
            t0 = time.perf_counter()
            try:
                stream = c.chat.completions.create(
                    model="sopforge",
                    messages=[{"role": "user", "content": q}],
                    stream=True,
                    max_tokens=max_tokens,
                )
                text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
                if not text:
                    raise RuntimeError("empty answer")
            except Exception as e:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.should_exit = True
    thread.join(timeout=15)
    latencies.sort()
    return {
        "clients": clients,
        "requests": clients * per_client,
        "ok": len(latencies),
        "errors": errors,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        if latencies
        else None,
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workspace",
        default=None,
        help="workspace holding the imported base model (default $SOPFORGE_WORKSPACE or ./workspace)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="base model folder (default: the embedded SmolLM2 imported into the workspace)",
    )
    p.add_argument(
        "--adapter", default=None, help="LoRA adapter folder (default: a fresh random one)"
    )
    p.add_argument("--tokens", type=int, default=96, help="tokens to decode per measurement")
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32"))
    p.add_argument(
        "--repeats", type=int, default=3, help="alternating runs of each; medians are reported"
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=2)
    p.add_argument("--client-tokens", type=int, default=48)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)

    from sopforge.records import SYSTEM_PROMPT
    from sopforge.serve.admin import ingest_files
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import Engine, LocalBackend, ModelSpec, torch_dtype
    from sopforge.serve.guard import build_messages
    from sopforge.serve.retrieval import Retriever
    from sopforge.workspace import Workspace

    if args.model:
        model_dir = Path(args.model)
    else:
        from sopforge.train.models import import_default_model

        model_dir = import_default_model(Workspace(args.workspace))
    tmp = Path(tempfile.mkdtemp(prefix="sopforge-bench-"))
    adapter = Path(args.adapter) if args.adapter else make_adapter(model_dir, tmp / "adapter")
    ws = Workspace(tmp / "ws")
    ingest_files(
        ws, sorted(CORPUS.glob("pagerduty_*.md"))[:3] + sorted(CORPUS.glob("18f_*.md"))[:2]
    )

    # The served prompt: system prompt + open-book question with the retrieved sections.
    retriever = Retriever(ws)
    from sopforge.contracts import default_registry

    messages = build_messages(
        QUESTION, default_registry().get("plain"), retriever.contexts(retriever.retrieve(QUESTION))
    )
    assert messages[0]["content"] == SYSTEM_PROMPT
    dtype = torch_dtype(args.dtype)
    cfg = EngineConfig(dtype=args.dtype, max_new_tokens=args.tokens)
    engine = Engine(LocalBackend(ModelSpec("bench", str(model_dir), str(adapter)), cfg), cfg)

    results: dict[str, Any] = {
        "model": str(model_dir),
        "dtype": str(dtype).replace("torch.", ""),
        "tokens": args.tokens,
    }
    plain_model, plain_tok = load_plain(model_dir, adapter, dtype)
    plain_generate(plain_model, plain_tok, messages, 2)  # warm-up both
    list(engine.generate(messages, max_new_tokens=2))
    plain_runs, engine_runs = [], []
    for _ in range(args.repeats):  # alternate, so drifting machine load hits both alike
        plain_runs.append(plain_generate(plain_model, plain_tok, messages, args.tokens))
        engine_runs.append(engine_generate(engine, messages, args.tokens))
    del plain_model
    results["repeats"] = args.repeats
    results["plain_generate"] = median_of(plain_runs)
    results["engine_stream"] = median_of(engine_runs)
    results["runs"] = {"plain_generate": plain_runs, "engine_stream": engine_runs}
    results["concurrent"] = concurrent_clients(
        engine, ws, args.clients, args.per_client, args.client_tokens
    )

    pg, en, cc = results["plain_generate"], results["engine_stream"], results["concurrent"]
    print(
        f"model {model_dir.name} ({results['dtype']}), prompt {pg['prompt_tokens']} tokens, {args.tokens} new tokens"
    )
    print(f"{'median of ' + str(args.repeats):24}{'TTFT s':>10}{'decode tok/s':>14}")
    print(f"{'plain model.generate':24}{pg['ttft_s']:>10.3f}{pg['decode_tok_s']:>14.1f}")
    print(f"{'engine (merged, stream)':24}{en['ttft_s']:>10.3f}{en['decode_tok_s']:>14.1f}")
    print(
        f"{cc['clients']} concurrent clients: {cc['ok']}/{cc['requests']} ok, {len(cc['errors'])} errors, "
        f"p50 {cc['p50_s']:.2f} s, p95 {cc['p95_s']:.2f} s, {cc['requests_per_s']:.2f} req/s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if cc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
