"""The fast engine: llama.cpp's own server, in this process, through the `xllamacpp` wheel.

    server = LlamaServer("model.f16.gguf", n_parallel=8)
    for chunk in server.stream({"prompt": ids, "n_predict": 64, "grammar": g}):
        print(chunk["content"], end="")
    answers = server.complete_many([{"prompt": ids, "n_predict": 64}, ...])   # batched
    server.close()

Why this engine (README, benchmarks): one decode step reads all the weights whatever the batch,
so llama.cpp's continuous batching over `n_parallel` slots serves many answers for little more
than the cost of one. Each slot keeps its KV cache, and a request whose prompt starts with what a
slot already holds (a format retry, a follow-up turn on the same sources) reuses it
(`cache_prompt`). Requests carry their own grammar (core/grammars.py), sampling and limits.

Prompts are sent as token ids (rendered by the caller with the model's HF chat template), so the
model sees exactly the tokens it was trained on; the server only decodes.

The server also listens on a loopback port with llama.cpp's OpenAI-compatible HTTP API
(`base_url`), which the `openai` backend and its tests use.

Threads: llama.cpp's threads meet at a barrier after every operation and spin while they wait
(`poll`); on a machine whose other core is busy (a retrain next to the chat) a spinning thread
wastes its slice. `threads` defaults to the physical cores, and `poll=0` makes waiting threads
sleep instead of spin (one stream decoded no slower with poll=0 than with llama.cpp's default 50).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopforge.contracts import Contract
from sopforge.errors import UserError
from sopforge.grammars import plan

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class LlamaServerError(UserError):
    pass


def physical_cores() -> int:
    """CPU cores this process may use, counting SMT siblings once."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not usable:
        return max(1, os.cpu_count() or 1)
    cores: set[str] = set()
    for cpu in usable:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as e:  # a dependency of the project: only a broken install gets here
        raise LlamaServerError(
            "the llama.cpp engine needs the xllamacpp wheel: pip install xllamacpp "
            "(a dependency of sopforge; `make install` installs it)"
        ) from e
    return xllamacpp


def system_info() -> str:
    """The CPU features llama.cpp's kernels were built with and use here (e.g. 'AVX2 = 1')."""
    return str(import_xllamacpp().get_system_info())


class LlamaServer:
    """One GGUF model served by llama.cpp in this process (see the module docstring)."""

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        n_parallel: int = 8,
        n_ctx: int = 4096,
        threads: int = 0,
        poll: int = 0,
        flash_attn: bool = True,
    ):
        x = import_xllamacpp()
        path = Path(gguf_path)
        if not path.is_file():
            raise LlamaServerError(f"GGUF model {path} does not exist")
        self.path = path
        self.n_parallel = max(1, n_parallel)
        self.n_ctx = n_ctx  # per slot: prompt + answer of one request (as llama.cpp allows it)
        self.threads = threads or physical_cores()
        p = x.CommonParams()
        p.model.path = str(path)
        p.n_parallel = self.n_parallel
        p.n_ctx = n_ctx * self.n_parallel
        p.n_batch = min(2048, n_ctx)
        p.cont_batching = True
        p.cache_prompt = True
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.threads
        p.cpuparams.poll = poll
        p.cpuparams_batch.poll = poll
        p.flash_attn_type = (
            x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else x.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        p.warmup = False
        p.port = free_port()
        p.verbosity = -1 if not log.isEnabledFor(logging.DEBUG) else 1
        try:
            self._server = x.Server(p)
        except RuntimeError as e:
            raise LlamaServerError(f"llama.cpp could not load {path}: {e}") from e
        self.base_url = str(self._server.listening_address).rstrip("/") + "/v1"
        # llama.cpp caps a slot's context at what the model was trained for
        settings = self.props().get("default_generation_settings", {})
        self.n_ctx = int(settings.get("n_ctx") or n_ctx)

    def props(self) -> dict[str, Any]:
        """llama.cpp's /props: the slots' settings, the model, the build."""
        url = self.base_url.removesuffix("/v1") + "/props"
        with urllib.request.urlopen(url, timeout=30) as r:
            return dict(json.loads(r.read()))

    # ---- requests ----------------------------------------------------------------------------

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The streamed chunks of one completion request (llama.cpp's fields: `prompt` as token
        ids, `n_predict`, `grammar`, `temperature`, `dry_multiplier`, ...), each as {"content":
        text delta, "finish_reason": None until the last ("stop" or "length"), "usage",
        "timings" on the last}. A consumer that stops iterating cancels the request and frees
        its slot."""
        chunks: queue.Queue[dict[str, Any] | None] = queue.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            chunks.put(chunk)
            return cancelled.is_set()  # True ends the request in llama.cpp

        def run() -> None:
            try:
                self._server.handle_completions(
                    {"cache_prompt": True, **request, "stream": True}, on_chunk
                )
            except Exception as e:  # surfaced in the consumer's thread
                chunks.put({"error": {"message": str(e)}})
            finally:
                chunks.put(None)

        worker = threading.Thread(target=run, name="llama-request", daemon=True)
        worker.start()
        try:
            while (chunk := chunks.get()) is not None:
                if "error" in chunk or chunk.get("code", 200) >= 400:
                    err = chunk.get("error", chunk)
                    raise LlamaServerError(
                        f"{self.path.name}: llama.cpp refused the request: "
                        f"{err.get('message', err) if isinstance(err, dict) else err}"
                    )
                choice = (chunk.get("choices") or [{}])[0]
                yield {
                    "content": choice.get("text") or "",
                    "finish_reason": choice.get("finish_reason"),
                    "usage": chunk.get("usage"),
                    "timings": chunk.get("timings"),
                }
        finally:
            cancelled.set()
            worker.join()

    def text(self, request: dict[str, Any]) -> Iterator[str]:
        """`stream` as text deltas."""
        for chunk in self.stream(request):
            if piece := chunk.get("content"):
                yield piece

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, the whole answer: {"content", "finish_reason", "usage", "timings"}."""
        parts: list[str] = []
        last: dict[str, Any] = {}
        for chunk in self.stream(request):
            parts.append(chunk.get("content") or "")
            last = chunk
        return {**last, "content": "".join(parts)}

    def complete_many(
        self,
        requests: Sequence[dict[str, Any]],
        progress: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Answers to `requests`, in order, `n_parallel` of them decoded together."""
        if not requests:
            return []
        out: list[dict[str, Any]] = [{}] * len(requests)

        def one(i: int) -> None:
            out[i] = self.complete(requests[i])
            if progress is not None:
                progress(1)

        # the longest prompts first: fewer slots idle at the end
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].get("prompt", "")))
        with ThreadPoolExecutor(self.n_parallel, thread_name_prefix="llama-batch") as pool:
            for f in [pool.submit(one, i) for i in order]:
                f.result()
        return out

    def close(self) -> None:
        """Stop the server and free the model (the object is unusable afterwards)."""
        server, self._server = getattr(self, "_server", None), None
        del server


# ---- one model, decoded the way the chat decodes ------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """How answers are decoded: the chat, the API and `sopforge eval` all use these, from the
    serve config's `engine:` section, so the evaluation's figures are what employees get."""

    temperature: float = 0.0  # 0 = greedy
    grammar: bool = True  # formats decoded under their grammar (core/grammars.py)
    # llama.cpp's DRY sampler against loops: a token that would extend a repeat of an earlier
    # stretch (longer than `dry_allowed_length`, within the last `dry_last_n` tokens) is
    # penalized by multiplier * base^(length - allowed). 0 = off. The window holds the end of the
    # prompt too, so DRY also penalizes copying a source sentence: off by default.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n: int = 128

    def raw(self) -> Decoding:
        """No grammar, no loop protection: what the model itself writes."""
        return Decoding(temperature=self.temperature, grammar=False, dry_multiplier=0.0)


def sampling_fields(decoding: Decoding) -> dict[str, Any]:
    fields: dict[str, Any] = {"temperature": decoding.temperature, "repeat_penalty": 1.0}
    if decoding.temperature <= 0:
        fields.update(top_k=1, top_p=1.0, min_p=0.0)
    if decoding.dry_multiplier > 0:
        fields.update(
            dry_multiplier=decoding.dry_multiplier,
            dry_base=decoding.dry_base,
            dry_allowed_length=decoding.dry_allowed_length,
            dry_penalty_last_n=decoding.dry_last_n,
        )
    return fields


def chat_tokenizer_dir(base_model: str | Path, adapter: str | Path | None) -> Path:
    """Where the chat template lives: the adapter folder when training saved its tokenizer
    there (it may have changed the template), else the base model folder."""
    if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file():
        return Path(adapter)
    return Path(base_model)


class ServedModel:
    """A GGUF model and its HF tokenizer: chat prompts in, answers decoded under their format.

    `model_dir` holds the tokenizer whose chat template training used (the adapter folder when
    training saved one there, else the base model folder)."""

    def __init__(
        self,
        gguf_path: str | Path,
        model_dir: str | Path,
        *,
        decoding: Decoding | None = None,
        n_parallel: int = 8,
        n_ctx: int = 4096,
        threads: int = 0,
    ):
        from transformers import AutoTokenizer

        self.decoding = decoding or Decoding()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.server = LlamaServer(gguf_path, n_parallel=n_parallel, n_ctx=n_ctx, threads=threads)

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The chat prompt's token ids, exactly as transformers renders them for training."""
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)

    def request(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),
        decoding: Decoding | None = None,
    ) -> dict[str, Any]:
        """The llama.cpp request for one answer. A formatted answer under its grammar gets the
        token limit its grammar needs (grammars.plan), so the limit cannot cut it short."""
        decoding = decoding or self.decoding
        ids = self.prompt_ids(messages)
        room = self.server.n_ctx - len(ids)
        if room <= 0:
            raise LlamaServerError(
                f"the prompt has {len(ids)} tokens but a request's context holds "
                f"{self.server.n_ctx}; ask a shorter question or raise engine.llamacpp_n_ctx"
            )
        if decoding.grammar:
            grammar, limit = plan(contract, room, max_new_tokens, citations)
        else:
            grammar, limit = None, min(max_new_tokens, room)
        fields = grammar.request_fields() if grammar is not None else {}
        return {"prompt": ids, "n_predict": limit, **sampling_fields(decoding), **fields}

    def stream(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),
    ) -> Iterator[str]:
        return self.server.text(self.request(messages, contract, max_new_tokens, citations))

    def answers(
        self,
        items: Sequence[tuple[Messages, Contract | None, int, Sequence[str]]],
        *,
        decoding: Decoding | None = None,
        desc: str = "generating",
    ) -> list[str]:
        """Answers to (messages, contract, max_new_tokens, citations) items, in order, decoded
        together `n_parallel` at a time, with a progress bar."""
        from tqdm.auto import tqdm

        requests = [self.request(m, c, n, cites, decoding) for m, c, n, cites in items]
        with tqdm(total=len(requests), desc=desc, leave=False) as bar:
            out = self.server.complete_many(requests, progress=bar.update)
        return [o["content"].strip() for o in out]

    def close(self) -> None:
        self.server.close()
