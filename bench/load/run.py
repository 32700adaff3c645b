"""Load: N concurrent chat clients against a real `sopforge serve` on 127.0.0.1 for a bounded time.

    .venv/bin/python bench/load/run.py [--workspace WS] [--clients 16] [--duration 90]
                                       [--max-tokens 64] [--backends llamacpp,local] [--json F]

The server is started as a subprocess (`sopforge serve`, the production path: uvicorn, sign-in,
API keys, retrieval, format guard, audit log) on a free loopback port. Without --workspace, a
temporary workspace gets the sample SOPs (`examples/`) and the bundled model (imported once and
served as the base model when nothing is promoted). Each client loops until the time is up,
alternating streamed and non-streamed `/v1/chat/completions` with the official `openai` client
and a per-client question (plain, bullets:3 and JSON formats mixed); requests started before the
deadline finish.

Reports requests, errors (any exception or a non-2xx status), p50/p95/max latency, answer
tokens per second in all (counted with the model's tokenizer), and the server's resident memory
(VmRSS of the process) before the load, right after it, and after a settle period with a few more
sequential requests (memory must settle, not keep growing). Before the load, one client alone
for a short while gives the single-stream figure that batching must beat.

`--backends llamacpp,local` runs the same load against each engine backend in turn (the server
restarted with `engine.backend=...`) and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SF = [sys.executable, "-m", "sopforge.cli"]
QUESTIONS = [
    ("How do I report a lost badge?", None),
    ("Summarise the visitor sign-in procedure in 3 bullets.", "bullets:3"),
    ("Who approves an expense claim?", None),
    ("Give me the forklift pre-use check as JSON.", "json:procedure"),
    ("What happens in a security incident?", None),
    ("How long are backups kept?", None),
    ("Which deployments are allowed on a Friday afternoon?", None),
    ("What does a new starter do on the first day?", "bullets:3"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sf(ws: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [*SF, "-w", str(ws), *args], input=stdin, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"sopforge {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def prepare(ws: Path) -> None:
    print(f"ingesting the sample SOPs into {ws} (nothing new if already there) ...", flush=True)
    sf(ws, "ingest", str(ROOT / "examples"), "--no-progress")
    sf(ws, "models", "import")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sopforge serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("sopforge serve did not become ready")


def one_request(client: Any, i: int, n: int, max_tokens: int) -> str:
    question, fmt = QUESTIONS[(i + n) % len(QUESTIONS)]
    extra: dict[str, Any] = {} if fmt is None else {"extra_body": {"format": fmt}}
    messages = [{"role": "user", "content": question}]
    if n % 2:  # streamed
        stream = client.chat.completions.create(
            model="sopforge", messages=messages, max_tokens=max_tokens, stream=True, **extra
        )
        text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    else:
        r = client.chat.completions.create(
            model="sopforge", messages=messages, max_tokens=max_tokens, **extra
        )
        text = r.choices[0].message.content or ""
    if not text:
        raise RuntimeError("empty answer")
    return text


def run_load(
    url: str, key: str, clients: int, duration: float, max_tokens: int
) -> tuple[list[float], list[str], list[str]]:
    import openai

    answers: list[str] = []
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client(i: int) -> None:
        c = openai.OpenAI(base_url=url + "/v1", api_key=key, timeout=900, max_retries=0)
        n = 0
        while time.monotonic() < deadline:
            t = time.monotonic()
            try:
                text = one_request(c, i, n, max_tokens)
                with lock:
                    latencies.append(time.monotonic() - t)
                    answers.append(text)
            except Exception as e:  # every failure counts: that is what this measures
                with lock:
                    errors.append(f"client {i}: {type(e).__name__}: {str(e)[:200]}")
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, answers


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def count_tokens(texts: list[str]) -> int:
    """Answer tokens, by the served model's own tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODEL_DIRS[0]))
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


MODEL_DIRS: list[Path] = []


def serve_and_load(ws: Path, key: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(ws / f"load-serve-{backend}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*SF, "-w", str(ws), "serve", "--port", str(port), f"engine.backend={backend}", *args.set],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_ready(url, proc)
        import openai

        warm = openai.OpenAI(base_url=url + "/v1", api_key=key, timeout=600, max_retries=0)
        one_request(warm, 0, 0, args.max_tokens)  # first request: lazy index build, kernels
        t0 = time.monotonic()
        single_lat, single_err, single_ans = run_load(url, key, 1, args.single, args.max_tokens)
        single_wall = time.monotonic() - t0
        before = rss_mib(proc.pid)
        print(
            f"[{backend}] server pid {proc.pid} on {url}, RSS {before:.0f} MiB; "
            f"{args.clients} clients for {args.duration:.0f} s ...",
            flush=True,
        )
        t0 = time.monotonic()
        latencies, errors, answers = run_load(
            url, key, args.clients, args.duration, args.max_tokens
        )
        wall = time.monotonic() - t0
        after = rss_mib(proc.pid)
        for n in range(args.settle):
            one_request(warm, n, n, args.max_tokens)
        settled = rss_mib(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {
        "backend": backend,
        "overrides": args.set,
        "clients": args.clients,
        "duration_s": args.duration,
        "wall_s": round(wall, 1),
        "requests": len(latencies) + len(errors),
        "ok": len(latencies),
        "errors": len(errors),
        "p50_s": round(pct(latencies, 50), 2),
        "p95_s": round(pct(latencies, 95), 2),
        "max_s": round(max(latencies), 2) if latencies else None,
        "throughput_rps": round(len(latencies) / wall, 3),
        "tokens_per_s": round(count_tokens(answers) / wall, 1),
        "single_stream_tokens_per_s": round(count_tokens(single_ans) / single_wall, 1),
        "single_stream_p50_s": round(pct(single_lat, 50), 2),
        "single_stream_errors": len(single_err),
        "rss_before_mib": round(before),
        "rss_after_mib": round(after),
        "rss_settled_mib": round(settled),
        "server_alive": alive,
        "error_samples": (single_err + errors)[:20],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", default=None, help="default: a temporary one with examples/")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=90.0, help="seconds new requests start")
    p.add_argument("--single", type=float, default=20.0, help="seconds of the one-client run")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--settle", type=int, default=4, help="sequential requests after the load")
    p.add_argument("--backends", default="llamacpp", help="engine backends, in turn")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="serve config override, e.g. engine.llamacpp_dtype=q8_0 (repeatable)",
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="sopforge-load-")
    ws = Path(args.workspace or tmp.name).resolve()
    prepare(ws)
    MODEL_DIRS.extend(sorted(p for p in (ws / "models").iterdir() if (p / "config.json").is_file()))
    sf(ws, "users", "add", "loadtest", "--password-stdin", stdin="load-test-password\n")
    key = sf(ws, "keys", "create", "--user", "loadtest").strip().splitlines()[-1].split()[-1]
    results = [serve_and_load(ws, key, b, args) for b in args.backends.split(",") if b]
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "error_samples"}, indent=2))
        for e in r["error_samples"][:10]:
            print("error:", e)
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"{a['backend']} vs {b['backend']}: p50 {b['p50_s'] / a['p50_s']:.1f}x lower, "
            f"tokens/s {a['tokens_per_s'] / max(b['tokens_per_s'], 1e-9):.1f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = all(
        not r["errors"] and not r["single_stream_errors"] and r["server_alive"] for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
