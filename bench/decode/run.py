"""Benchmark: CPU decode paths for the served assistant, same model, same adapter, same prompts.

    python bench/decode/run.py [--base DIR] [--adapter DIR] [--workspace WS] [--max-new-tokens 64]
                               [--lengths 500 2000] [--paths hf-peft,engine-f16,engine-q8_0]

One run measures, on open-book prompts of ~500 and ~2,000 tokens built the way the server builds
them (serve/guard.build_messages over Markdown SOP sections of ../shared/corpus):

- **hf-peft** (the naive baseline): transformers `model.generate`, fp32, the PEFT adapter unmerged;
- **hf-merged-bf16**: the adapter merged (merge_and_unload), bf16 (native on AVX512-BF16/AMX CPUs);
- **engine-f16 / engine-q8_0**: the serving engine: the merged model exported to GGUF
  (train/export_gguf.py) and decoded by llama.cpp's server in this process (xllamacpp, through
  sopforge.llamaserver.ServedModel, the object the chat and `sopforge eval` use);
- **llama-cpp-python-f16 / -q8_0**: the reference the issue names: llama-cpp-python (built from
  source; skipped with a note when it is not installed) on the same GGUF file.

For each: TTFT (time to first token, i.e. prompt processing) per prompt length, decode tokens/s
(tokens after the first / time after the first), the ratios to hf-peft, and whether the greedy
answer is token-for-token the baseline's, and the process's peak resident memory while each path
loads and answers (sopforge.memory.PeakRSS). llama.cpp also reports TTFT of the same prompt sent
again (the KV-cache prefix reuse a format retry or a regenerate gets) and of a follow-up turn on
the same sources (the prompt, the answer and a new question).

The adapter is --adapter (a trained run's `adapter/` folder), else a bench adapter: LoRA r=16 on
every linear layer with small random B (so merging changes the weights).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sopforge.memory import PeakRSS

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus" / "md"
QUESTION = "Explain in detail, step by step, what an employee must do according to these sources."
ALL_PATHS = (
    "hf-peft",
    "hf-merged-bf16",
    "engine-f16",
    "engine-q8_0",
    "llama-cpp-python-f16",
    "llama-cpp-python-q8_0",
)
DEFAULT_PATHS = ("hf-peft", "engine-f16", "engine-q8_0", "llama-cpp-python-f16")


@dataclass
class Timing:
    ttft_s: float
    decode_tok_s: float
    n_tokens: int
    text: str


@dataclass
class PathResult:
    path: str
    timings: dict[int, Timing] = field(default_factory=dict)
    ttft_repeat_s: dict[int, float] = field(default_factory=dict)
    ttft_follow_up_s: dict[int, float] = field(default_factory=dict)
    load_s: float = 0.0
    rss_start_mib: float = 0.0  # the process before this path loaded its model
    peak_rss_mib: float = 0.0  # the process's peak while this path loaded and answered


# ---- inputs --------------------------------------------------------------------------------


def corpus_sections(corpus: Path) -> list[tuple[str, str, str]]:
    """(doc title, section title, text) of every Markdown section with some body."""
    out = []
    for doc in sorted(corpus.glob("*.md")):
        parts = re.split(r"^#+\s+(.+)$", doc.read_text(encoding="utf-8"), flags=re.MULTILINE)
        for title, body in zip(parts[1::2], parts[2::2], strict=False):
            if len(body.split()) >= 40:
                out.append((doc.stem, title.strip(), body.strip()))
    return out


def open_book_messages(tokenizer: Any, n_tokens: int) -> list[dict[str, str]]:
    """The server's messages for QUESTION over as many corpus sections as fit ~n_tokens."""
    from sopforge.contracts import default_registry
    from sopforge.records import ContextSection
    from sopforge.serve.guard import build_messages

    plain = default_registry().get("plain")

    def messages(contexts: list[ContextSection]) -> list[dict[str, str]]:
        return build_messages(QUESTION, plain, contexts)

    def length(contexts: list[ContextSection]) -> int:
        return len(prompt_ids(tokenizer, messages(contexts)))

    contexts: list[ContextSection] = []
    for doc, title, text in corpus_sections(CORPUS.resolve()):
        section = ContextSection(doc, title, "0" * 64, text)
        if length([*contexts, section]) <= n_tokens:
            contexts.append(section)
            continue
        words = text.split()  # the last section is cut to land just under n_tokens
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cut = ContextSection(doc, title, "0" * 64, " ".join(words[:mid]))
            lo, hi = (mid, hi) if length([*contexts, cut]) <= n_tokens else (lo, mid - 1)
        if lo:
            contexts.append(ContextSection(doc, title, "0" * 64, " ".join(words[:lo])))
        break
    return messages(contexts)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]


def bench_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """LoRA r=16 on all linear layers, B ~ N(0, 2e-3): merged weights differ, answers stay sane."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)  # LoRA A's init: the same adapter in every run
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 2e-3)
    peft_model.save_pretrained(out)
    return out


# ---- timing --------------------------------------------------------------------------------


def time_stream(deltas: Iterator[str]) -> Timing:
    """TTFT and decode rate from a stream of per-token text deltas."""
    start = time.perf_counter()
    stamps, parts = [], []
    for d in deltas:
        stamps.append(time.perf_counter())
        parts.append(d)
    if not stamps:
        return Timing(float("nan"), float("nan"), 0, "")
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return Timing(stamps[0] - start, decode, len(stamps), "".join(parts))


def hf_stream(model: Any, tokenizer: Any, ids: list[int], max_new_tokens: int) -> Iterator[str]:
    """One item per generated token (timestamps), via a streamer called from generate()."""
    import queue
    import threading

    import torch
    from transformers.generation.streamers import BaseStreamer

    q: queue.Queue[Any] = queue.Queue()

    class TokenQueue(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # the first put() is the prompt
                self.prompt_seen = True
                return
            for t in value.reshape(-1).tolist():
                q.put(t)

        def end(self) -> None:
            q.put(None)

    def run() -> None:
        with torch.inference_mode():
            model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                streamer=TokenQueue(),
            )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    generated: list[int] = []
    text = ""
    while (tok := q.get()) is not None:
        generated.append(tok)
        # The answer so far, decoded whole: a character split across tokens is held back (one
        # item per token still, for the timing) until its last byte arrives.
        full = tokenizer.decode(generated, skip_special_tokens=True)
        if full.endswith("\ufffd"):
            yield ""
            continue
        yield full[len(text) :]
        text = full
    worker.join()


def measure(
    name: str,
    stream: Callable[[list[dict[str, str]]], Iterator[str]],
    prompts: dict[int, list[dict[str, str]]],
    warmup: list[dict[str, str]],
    repeat: bool,
) -> PathResult:
    result = PathResult(name)
    for _ in stream(warmup):  # first-call costs (allocation, kernel selection) are not TTFT
        pass
    for n, messages in prompts.items():
        result.timings[n] = time_stream(stream(messages))
        if repeat:
            result.ttft_repeat_s[n] = time_stream(stream(messages)).ttft_s
            follow_up = [
                *messages,
                {"role": "assistant", "content": result.timings[n].text},
                {"role": "user", "content": "And what comes after that?"},
            ]
            result.ttft_follow_up_s[n] = time_stream(stream(follow_up)).ttft_s
        t = result.timings[n]
        print(
            f"  {name:16s} {n:5d}-token prompt: TTFT {t.ttft_s:6.2f} s, "
            f"decode {t.decode_tok_s:6.1f} tok/s ({t.n_tokens} tokens)",
            flush=True,
        )
    return result


# ---- the paths -----------------------------------------------------------------------------


def run_hf(name: str, base: Path, adapter: Path, tokenizer: Any, args: Any, prompts, warmup):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter)
    if name == "hf-merged-bf16":
        model = model.merge_and_unload().to(torch.bfloat16)
    model.eval()
    load_s = time.perf_counter() - t

    def stream(messages: list[dict[str, str]]) -> Iterator[str]:
        return hf_stream(model, tokenizer, prompt_ids(tokenizer, messages), args.max_new_tokens)

    result = measure(name, stream, prompts, warmup, repeat=False)
    result.load_s = load_s
    return result


def run_engine(name: str, gguf: Path, base: Path, args: Any, prompts, warmup) -> PathResult:
    """The serving engine (core/llamaserver.py ServedModel: llama.cpp's server via xllamacpp),
    raw greedy like the other paths."""
    from sopforge.llamaserver import Decoding, ServedModel

    t = time.perf_counter()
    model = ServedModel(
        gguf,
        base,
        decoding=Decoding(grammar=False, dry_multiplier=0.0),
        n_parallel=args.parallel,
        n_ctx=args.n_ctx,
        threads=args.threads,
    )
    load_s = time.perf_counter() - t

    def stream(messages: list[dict[str, str]]) -> Iterator[str]:
        return model.stream(messages, None, args.max_new_tokens)

    try:
        result = measure(name, stream, prompts, warmup, repeat=True)
    finally:
        model.close()
    result.load_s = load_s
    return result


def run_llama_cpp_python(name: str, gguf: Path, tokenizer: Any, args: Any, prompts, warmup):
    """The reference: llama-cpp-python (built from source, single sequence), greedy on the same
    prompt tokens. Only when `llama_cpp` is importable (pip install llama-cpp-python)."""
    import llama_cpp

    threads = args.threads or max(1, (os.cpu_count() or 2))
    t = time.perf_counter()
    llm = llama_cpp.Llama(
        str(gguf), n_ctx=args.n_ctx, n_batch=args.n_ctx, n_threads=threads,
        n_threads_batch=threads, flash_attn=True, verbose=False,
    )  # fmt: skip
    load_s = time.perf_counter() - t
    vocab = llm._model.vocab

    def stream(messages: list[dict[str, str]]) -> Iterator[str]:
        ids = prompt_ids(tokenizer, messages)
        for n, token in enumerate(llm.generate(ids, temp=0.0, repeat_penalty=1.0), start=1):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            yield llm.detokenize([token]).decode("utf-8", "replace")
            if n >= args.max_new_tokens:
                break

    try:
        result = measure(name, stream, prompts, warmup, repeat=True)
    finally:
        llm.close()
    result.load_s = load_s
    return result


# ---- report --------------------------------------------------------------------------------


def report(results: list[PathResult], lengths: list[int]) -> None:
    base = results[0]
    print(f"\n{'path':16s}", end="")
    for n in lengths:
        print(f" | TTFT@{n:<4d} (x{base.path})", end="")
    print(" | decode tok/s (x)  | same answer")
    for r in results:
        print(f"{r.path:16s}", end="")
        for n in lengths:
            ratio = base.timings[n].ttft_s / r.timings[n].ttft_s
            print(f" | {r.timings[n].ttft_s:7.2f} s ({ratio:4.2f}x)     ", end="")
        rates = [r.timings[n].decode_tok_s for n in lengths]
        base_rates = [base.timings[n].decode_tok_s for n in lengths]
        rate = sum(rates) / len(rates)
        ratio = rate / (sum(base_rates) / len(base_rates))
        same = all(r.timings[n].text == base.timings[n].text for n in lengths)
        print(f" | {rate:6.1f} ({ratio:4.2f}x)    | {'yes' if same else 'no'}")
        print(
            f"{'':16s}   peak RSS {r.peak_rss_mib:.0f} MiB (process at {r.rss_start_mib:.0f} MiB "
            "before it loaded)"
        )
        if r.ttft_repeat_s:
            again = ", ".join(f"{n}: {s:.2f} s" for n, s in r.ttft_repeat_s.items())
            print(f"{'':16s}   same prompt again (prefix reuse) TTFT: {again}")
            follow = ", ".join(f"{n}: {s:.2f} s" for n, s in r.ttft_follow_up_s.items())
            print(f"{'':16s}   follow-up turn on the same sources TTFT: {follow}")


def run_child(path: str, base: Path, adapter: Path, args: Any, tmp: Path) -> PathResult | None:
    """One path in a fresh process; its results read back from its JSON."""
    import subprocess
    import sys

    out = tmp / f"{path}.json"
    cmd = [
        sys.executable, __file__, "--paths", path, "--base", str(base), "--adapter", str(adapter),
        "--lengths", *map(str, args.lengths), "--max-new-tokens", str(args.max_new_tokens),
        "--n-ctx", str(args.n_ctx), "--threads", str(args.threads),
        "--parallel", str(args.parallel), "--json", str(out),
    ]  # fmt: skip
    print(f"== {path} (own process)", flush=True)
    subprocess.run(cmd, check=True)
    rows = json.loads(out.read_text())
    if not rows:
        return None
    row = rows[0]
    timings = {int(n): Timing(**t) for n, t in row.pop("timings").items()}
    fields = {
        k: {int(n): v for n, v in row.pop(k).items()} for k in ("ttft_repeat_s", "ttft_follow_up_s")
    }
    return PathResult(**row, timings=timings, **fields)


def resolve_base(args: argparse.Namespace) -> Path:
    if args.base:
        return Path(args.base)
    from sopforge.train.models import import_default_model
    from sopforge.workspace import Workspace

    return import_default_model(Workspace(args.workspace))


def resolve_adapter(args: argparse.Namespace, base: Path, tmp: Path) -> tuple[Path, str]:
    if args.adapter:
        return Path(args.adapter), f"--adapter {args.adapter}"
    return bench_adapter(base, tmp / "adapter"), "bench adapter (LoRA r=16, random B, std 2e-3)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=None, help="HF model folder (default: the bundled SmolLM2)")
    p.add_argument("--adapter", default=None, help="PEFT adapter folder (default: a bench one)")
    p.add_argument("--workspace", default=None, help="workspace holding the imported base model")
    p.add_argument("--lengths", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for every path (0: torch's default, the llama.cpp backend's default)",
    )
    p.add_argument("--paths", default=",".join(DEFAULT_PATHS), help=f"subset of {ALL_PATHS}")
    p.add_argument("--parallel", type=int, default=8, help="the engine's slots (as served)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="all paths in this process (default: each path in a process of its own, as each "
        "would be deployed: torch's OpenMP threads, once started, slow llama.cpp's by ~30%%)",
    )
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    if unknown := set(paths) - set(ALL_PATHS):
        p.error(f"unknown paths {sorted(unknown)}; choose from {ALL_PATHS}")

    import torch
    from transformers import AutoTokenizer

    from sopforge.llamaserver import physical_cores, system_info
    from sopforge.train.export_gguf import cached_gguf

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = resolve_base(args)
    with tempfile.TemporaryDirectory(prefix="sopforge-bench-decode-") as tmp_name:
        tmp = Path(tmp_name)
        adapter, adapter_desc = resolve_adapter(args, base, tmp)
        if not args.in_process and len(paths) > 1:
            results = [run_child(path, base, adapter, args, tmp) for path in paths]
            results = [r for r in results if r is not None]
            print(f"adapter: {adapter_desc}")
            report(results, args.lengths)
            print(f"\ntotal {time.perf_counter() - started:.0f} s")
            if args.json:
                Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
            return 0
        tokenizer = AutoTokenizer.from_pretrained(base)
        prompts = {n: open_book_messages(tokenizer, n) for n in args.lengths}
        warmup = open_book_messages(tokenizer, 64)
        print(f"base {base}\nadapter: {adapter_desc}")
        lc_threads = args.threads or physical_cores()
        print(f"threads: torch {torch.get_num_threads()}, llama.cpp {lc_threads}")
        print(f"llama.cpp CPU kernels: {system_info().strip()}")
        print(
            "prompt tokens: "
            + ", ".join(str(len(prompt_ids(tokenizer, m))) for m in prompts.values())
        )
        results = []
        for name in paths:
            gc.collect()  # each path's memory starts from what the previous one leaves
            if name.startswith("hf-"):
                with PeakRSS() as mem:
                    r = run_hf(name, base, adapter, tokenizer, args, prompts, warmup)
            else:
                dtype = name.rsplit("-", 1)[1]
                if name.startswith("llama-cpp-python"):
                    try:
                        import llama_cpp  # noqa: F401
                    except ImportError:
                        print(f"  {name}: skipped (pip install llama-cpp-python to compare)")
                        continue
                t = time.perf_counter()
                gguf = cached_gguf(base, adapter, dtype)  # exported in a process of its own
                print(
                    f"  exported {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) in "
                    f"{time.perf_counter() - t:.1f} s",
                    flush=True,
                )
                gc.collect()
                with PeakRSS() as mem:
                    if name.startswith("engine"):
                        r = run_engine(name, gguf, base, args, prompts, warmup)
                    else:
                        r = run_llama_cpp_python(name, gguf, tokenizer, args, prompts, warmup)
            r.rss_start_mib, r.peak_rss_mib = round(mem.start_mib), round(mem.peak_mib)
            results.append(r)
    report(results, args.lengths)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
