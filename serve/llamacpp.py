"""The `llamacpp` backend (the default): the served model as GGUF, decoded by llama.cpp's server
in this process (core/llamaserver.py, the `xllamacpp` wheel) with continuous batching.

    backend = LlamaCppBackend(spec, cfg)
    for delta in backend.stream(messages, contract, 256, citations=["[Doc § Sec, v1234abcd]"]):
        print(delta, end="")

- Weights: base + merged adapter exported once to `model.<llamacpp_dtype>.gguf` next to the
  adapter (train/export_gguf.py cached_gguf); `sopforge eval` decodes the same file.
- Many requests at once: `llamacpp_parallel` slots decode together (no lock here); a slot keeps
  its KV cache, so a format retry or a follow-up turn on the same sources reuses the prefix.
- Formats by construction: bullets, numbered lists and JSON decode under their grammar, and the
  closing `Source: [...]` line only under the citations retrieved for the question
  (core/grammars.py). Loops are held off by llama.cpp's DRY sampler (`engine.loop_guard`).
- Hot swap: a backend is one loaded model; serve/engine.py swaps backends, and a request keeps
  the backend it started on. A backend swapped out and no longer referenced frees its model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sopforge.contracts import Contract
from sopforge.llamaserver import ServedModel, chat_tokenizer_dir

if TYPE_CHECKING:
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import ModelSpec

Messages = list[dict[str, str]]


class LlamaCppBackend:
    def __init__(self, spec: ModelSpec, cfg: EngineConfig, *, gguf: str | Path | None = None):
        from sopforge.serve.engine import model_files

        base, adapter = model_files(spec)
        if gguf is None:
            from sopforge.train.export_gguf import cached_gguf

            gguf = cached_gguf(base, adapter, cfg.llamacpp_dtype)
        self.spec = spec
        self.model_id = spec.model_id
        self.model = ServedModel(
            gguf,
            chat_tokenizer_dir(base, adapter),
            decoding=cfg.decoding(),
            n_parallel=cfg.llamacpp_parallel,
            n_ctx=cfg.llamacpp_n_ctx,
            threads=cfg.threads,
        )

    def stream(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),
    ) -> Iterator[str]:
        return self.model.stream(messages, contract, max_new_tokens, citations)

    def close(self) -> None:
        self.model.close()
