"""llama.cpp backend: the tuned model exported to GGUF (train/export_gguf.py), decoded on the CPU.

    backend = LlamaCppBackend("runs/<id>/model.f16.gguf")
    for delta in backend.generate(messages, max_new_tokens=256, stop=None, stream=True):
        print(delta, end="")

The prompt is the one the transformers backend builds: the chat template stored in the GGUF (the
HF tokenizer's, written by the exporter) rendered the way transformers renders it (llama.cpp's
Jinja2ChatFormatter mirrors transformers' Jinja environment), tokenized with special tokens
parsed and no extra BOS (apply_chat_template adds none either). Decoding is greedy.

Speed choices (measured with bench/decode/run.py on the 2-core CPU this project targets):
- Threads: one fewer than the physical cores (at least one), for decode and prompt processing
  alike. ggml's threads meet at a spinning barrier after every operation (~600 per token); when
  another process takes one of the cores, the thread that waits spins out its whole time slice at
  each barrier. On the 2-core machine next to a training job, 2 threads decoded 0.4 tokens/s and
  1 thread 15 tokens/s, and 2 threads processed prompts 2x slower than 1. (llama-cpp-python's
  own defaults are half the CPUs to decode and all of them for prompts: the worst case here.)
- Flash attention on: prompt processing of 2,000 tokens ~1.7x faster (no full score matrix).
- The whole prompt is one logical batch (n_batch = n_ctx); the physical batch (n_ubatch) size
  made no measurable difference between 256 and 2,048, so it stays at llama.cpp's 512.
- Prefix reuse: llama.cpp keeps the KV cache of the previous request, and llama-cpp-python
  re-evaluates only the tokens after the longest common prefix. A format retry (same prompt plus
  the failed answer and the error) or a follow-up turn therefore pays only for its new tokens.
  llama-cpp-python's LlamaRAMCache is not used: on every request it copies the logits of every
  prompt token (n_tokens x vocab floats: ~400 MB for a 2,000-token prompt).
"""

from __future__ import annotations

import codecs
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sopforge.errors import UserError

Messages = list[dict[str, str]]


class LlamaCppError(UserError):
    pass


def physical_cores() -> int:
    """CPU cores this process may use, counting SMT siblings once (llama.cpp gains nothing from
    hyper-threads and loses to their contention)."""
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


def default_threads() -> int:
    """Physical cores less one (see the module docstring: an oversubscribed ggml pool collapses)."""
    return max(1, physical_cores() - 1)


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise LlamaCppError(
            "the llama.cpp backend needs llama-cpp-python: pip install 'sopforge[llamacpp]' "
            "(see README: build flags for this CPU)"
        ) from e
    return llama_cpp


class LlamaCppBackend:
    """A GGUF model in this process; generations are serialized by a lock (one KV cache)."""

    def __init__(
        self,
        gguf_path: str | Path,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        *,
        model_id: str | None = None,
        n_ubatch: int = 512,
        flash_attn: bool = True,
        constrained_json: bool = True,
        loop_guard: bool = True,
    ):
        llama_cpp = import_llama_cpp()
        path = Path(gguf_path)
        if not path.is_file():
            raise LlamaCppError(f"GGUF model {path} does not exist; export it with export_gguf()")
        threads = n_threads or default_threads()
        self.model_id = model_id or path.stem
        self.constrained_json = constrained_json
        self.loop_guard = loop_guard
        # (line ends, numbers) of the vocabulary, for the loop guard; built on first use
        self._guard_tokens: tuple[frozenset[int], frozenset[int]] | None = None
        self.llm = llama_cpp.Llama(
            str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=min(n_ubatch, n_ctx),
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=flash_attn,
            verbose=False,
        )
        self._formatter = self._chat_formatter(path)
        self._lock = threading.Lock()

    def _chat_formatter(self, path: Path) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise LlamaCppError(
                f"{path} has no tokenizer.chat_template; export it from a chat model's folder"
            )

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ""
            return self.llm.detokenize([int(tid)], special=True).decode("utf-8", errors="replace")

        return Jinja2ChatFormatter(
            template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            add_generation_prompt=True,
        )

    def prompt_text(self, messages: Messages) -> str:
        return self._formatter(messages=messages).prompt

    def prompt_tokens(self, messages: Messages) -> list[int]:
        """The chat prompt's token ids, as transformers' apply_chat_template(tokenize=True) gives."""
        return self.llm.tokenize(self.prompt_text(messages).encode("utf-8"), False, True)

    def close(self) -> None:
        self.llm.close()

    def generate(
        self,
        messages: Messages,
        *,
        max_new_tokens: int,
        stop: list[str] | None = None,
        stream: bool = True,
        grammar: Any = None,
    ) -> Iterator[str]:
        """Text deltas of the greedy answer (stream=False: the whole answer as one item).

        Stops at the model's end-of-generation token, after `max_new_tokens`, or before the first
        of `stop`. A consumer that stops iterating stops the generation.
        """
        deltas = self._deltas(messages, max_new_tokens, list(stop or []), grammar)
        if stream:
            return deltas
        return iter(["".join(deltas)])

    def _deltas(
        self, messages: Messages, max_new_tokens: int, stop: list[str], grammar: Any
    ) -> Iterator[str]:
        tokens = self.prompt_tokens(messages)
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise LlamaCppError(
                f"model {self.model_id}: the prompt has {len(tokens)} tokens but the context "
                f"holds {n_ctx}; shorten it or raise n_ctx"
            )
        budget = min(max_new_tokens, n_ctx - len(tokens))
        with self._lock:
            pieces = self._pieces(tokens, budget, grammar)
            try:
                yield from stop_at(pieces, stop) if stop else pieces
            finally:
                pieces.close()  # stops llama.cpp before the lock is released

    def _pieces(self, tokens: list[int], budget: int, grammar: Any) -> Iterator[str]:
        """Decoded text per generated token (greedy), ending before the end-of-turn token.

        Bytes are decoded incrementally with U+FFFD for invalid sequences, the way transformers'
        tokenizer.decode does, so the text equals the transformers backend's for the same tokens.
        Control tokens (the exporter marks special tokens so) decode to nothing, as with
        skip_special_tokens=True.
        """
        import llama_cpp

        if budget <= 0:
            return
        vocab = self.llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # temp=0 is llama.cpp's greedy sampler; repeat_penalty=1 leaves the logits as they are.
        # llama-cpp-python reuses the KV cache of the longest prefix shared with the last call.
        generated = self.llm.generate(
            tokens,
            temp=0.0,
            repeat_penalty=1.0,
            grammar=grammar,
            logits_processor=[self._guard(len(tokens))] if self.loop_guard else None,
        )
        try:
            for n, token in enumerate(generated, start=1):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                text = decoder.decode(self.llm.detokenize([token], special=False))
                if text:
                    yield text
                if n >= budget:
                    break
            if tail := decoder.decode(b"", final=True):
                yield tail
        finally:
            generated.close()

    def _guard(self, prompt_len: int) -> Any:
        """sopforge.decoding's loop guard as a llama-cpp-python logits processor (numpy scores in
        token-id order; `input_ids` is the prompt followed by the answer so far)."""
        from sopforge.decoding import banned_next, token_sets

        if self._guard_tokens is None:
            texts = [
                self.llm.detokenize([i]).decode("utf-8", "ignore")
                for i in range(self.llm.n_vocab())
            ]
            self._guard_tokens = token_sets(texts, self.llm.token_eos())
        line_ends, numbers = self._guard_tokens

        def guard(input_ids: Any, scores: Any) -> Any:
            banned = banned_next(input_ids[prompt_len:].tolist(), line_ends, numbers=numbers)
            if banned:
                scores[sorted(banned)] = float("-inf")
            return scores

        return guard

    def json_grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar

        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)

    def stream(self, messages: Messages, contract: Any, max_new_tokens: int) -> Iterator[str]:
        """The engine's Backend protocol (serve/engine.py): JSON contracts decode under their schema
        (a llama.cpp grammar), like the local backend's lm-format-enforcer."""
        grammar = None
        if (
            contract is not None
            and getattr(contract, "kind", None) == "json"
            and self.constrained_json
            and contract.schema
        ):
            grammar = self.json_grammar(contract.schema)
        return self.generate(
            messages, max_new_tokens=max_new_tokens, stop=None, stream=True, grammar=grammar
        )


def stop_at(pieces: Iterator[str], stop: list[str]) -> Iterator[str]:
    """`pieces` up to (not including) the first occurrence of any `stop` string.

    Text that could still be the start of a stop string is held back until it can't.
    """
    held = ""
    longest = max(len(s) for s in stop)
    for piece in pieces:
        held += piece
        hits = [i for s in stop if (i := held.find(s)) >= 0]
        if hits:
            if cut := held[: min(hits)]:
                yield cut
            return
        # keep the longest tail that is a prefix of some stop string
        keep = 0
        for k in range(1, min(longest, len(held)) + 1):
            if any(s.startswith(held[-k:]) for s in stop):
                keep = k
        if len(held) > keep:
            yield held[: len(held) - keep]
            held = held[len(held) - keep :]
    if held:
        yield held
