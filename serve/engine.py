"""The engine: one interface over the model that answers, whatever runs it.

    engine = Engine(LocalBackend(spec, cfg))
    for delta in engine.generate(messages):                  # stream=True: an iterator of deltas
        print(delta, end="")
    text = engine.generate(messages, format="json:procedure", stream=False)   # the whole answer

`format` is a contract spec (or a Contract). A backend uses it only where it can *decode* under it
(llamacpp: every format's grammar and the citation line; local: JSON Schema with
lm-format-enforcer; openai: `response_format`); checking
the answer against the contract is the format guard's job (serve/guard.py), for every format.

Backends:
- `llamacpp` (the default): the model as GGUF, decoded by llama.cpp's server in this process with
  continuous batching over parallel slots, formats under their grammar (serve/llamacpp.py).
- `local`: transformers. The base model folder plus the PEFT adapter, merged into the weights
  (merge_and_unload: no adapter overhead per token), bf16 where the CPU has native bf16 else fp32,
  greedy by default, streamed with TextIteratorStreamer from a generation thread. One lock per
  loaded model serializes generations (one answer at a time: use it where llama.cpp can't go).
- `openai`: any OpenAI-compatible server, e.g. vLLM serving the adapter with --enable-lora
  (see serve/README.md).

`Engine.swap()` hot-swaps the model: the new backend is loaded first, then the pointer is switched
under a lock; a generation holds on to the backend it started with, so in-flight answers finish on
the old model while new requests get the new one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, overload

from sopforge.contracts import Contract, ContractRegistry, default_registry
from sopforge.errors import UserError
from sopforge.serve.config import EngineConfig
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class EngineError(UserError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """What to load: `model_id` names it in the API, audit log and UI."""

    model_id: str
    base_model: str
    adapter_path: str | None = None


def promoted_model(ws: Workspace) -> ModelSpec | None:
    row = ws.db.execute(
        "SELECT model_id, base_model, adapter_path FROM models WHERE promoted=1"
        " ORDER BY promoted_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return ModelSpec(row["model_id"], row["base_model"], row["adapter_path"] or None)


def resolve_model(ws: Workspace, cfg: EngineConfig) -> ModelSpec:
    """The promoted model; else the configured base model; else the one base model in the workspace."""
    spec = promoted_model(ws)
    if spec is not None:
        return spec
    if cfg.base_model:
        return ModelSpec(f"base:{Path(cfg.base_model).name}", cfg.base_model)
    candidates = sorted(p for p in ws.path("models").iterdir() if (p / "config.json").is_file())
    if len(candidates) == 1:
        return ModelSpec(f"base:{candidates[0].name}", str(candidates[0]))
    raise EngineError(
        f"no model to serve: none is promoted in {ws.root}, engine.base_model is empty and "
        f"{ws.path('models')} holds {len(candidates)} model folders; set engine.base_model "
        "or train and promote a model"
    )


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 math (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def model_files(spec: ModelSpec) -> tuple[Path, Path | None]:
    """(base model folder, adapter folder or None) of `spec`, checked before anything loads."""
    base = Path(spec.base_model)
    adapter = Path(spec.adapter_path) if spec.adapter_path else None
    if not (base / "config.json").is_file():
        raise EngineError(f"model {spec.model_id}: base model folder {base} has no config.json")
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise EngineError(f"model {spec.model_id}: {adapter} has no adapter_config.json")
    return base, adapter


def load_merged(spec: ModelSpec, dtype: Any) -> tuple[Any, Any]:
    """(model, tokenizer) with the adapter merged into the base weights, ready for generate()."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sopforge.llamaserver import chat_tokenizer_dir

    base, adapter = model_files(spec)
    tokenizer = AutoTokenizer.from_pretrained(chat_tokenizer_dir(base, adapter))
    import torch

    # Merge in fp32, then cast: merging in bf16 would round the LoRA delta twice.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.to(dtype).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model, tokenizer


class Backend(Protocol):
    model_id: str

    def stream(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),
    ) -> Iterator[str]: ...


class LocalBackend:
    """transformers in this process, adapter merged, generations serialized by a lock."""

    def __init__(
        self, spec: ModelSpec, cfg: EngineConfig, *, model: Any = None, tokenizer: Any = None
    ):
        import torch

        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.spec = spec
        self.model_id = spec.model_id
        self.cfg = cfg
        if model is None:
            model, tokenizer = load_merged(spec, torch_dtype(cfg.dtype))
        self.model = model
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self._schema_data: Any = None  # lm-format-enforcer tables, built on first JSON request

    def prompt_ids(self, messages: Messages) -> dict[str, Any]:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def generation_kwargs(
        self,
        contract: Contract | None,
        max_new_tokens: int,
        stop: threading.Event,
        prompt_width: int,
    ) -> dict[str, Any]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": self.cfg.temperature > 0,
            "stopping_criteria": StoppingCriteriaList([_StopWhenSet(stop)]),
        }
        if self.cfg.temperature > 0:
            kwargs["temperature"] = self.cfg.temperature
        else:  # silence sampling knobs a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        processors = []
        if self.cfg.loop_guard:
            from sopforge.decoding import loop_guard

            processors.append(loop_guard(self.tokenizer, prompt_width))
        if contract is not None and contract.kind == "json" and self.cfg.constrained_json:
            processors.append(self._schema_processor(contract))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        return kwargs

    def _schema_processor(self, contract: Contract) -> Any:
        from sopforge.serve.constrained import build_tokenizer_data, schema_logits_processor

        if self._schema_data is None:
            self._schema_data = build_tokenizer_data(self.tokenizer)
        return schema_logits_processor(self._schema_data, contract.schema or {})

    def stream(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),  # the llamacpp backend's citation grammar; unused here
    ) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self.prompt_ids(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        kwargs = self.generation_kwargs(
            contract, max_new_tokens, stop, prompt_width=inputs["input_ids"].shape[1]
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.model.generate(**inputs, streamer=streamer, **kwargs)
            except BaseException as e:  # surfaced in the caller's thread below
                failure.append(e)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, name="sopforge-generate", daemon=True)
            worker.start()
            try:
                for text in streamer:
                    if text:
                        yield text
            finally:
                stop.set()  # a consumer that stops reading (client gone) stops the generation
                worker.join()
        if failure:
            raise EngineError(
                f"model {self.model_id}: generation failed: {failure[0]}"
            ) from failure[0]


def _stop_criteria_class() -> type:
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __init__(self, event: threading.Event):
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)

    return StopWhenSet


def _StopWhenSet(event: threading.Event) -> Any:  # noqa: N802 - reads like the class it builds
    return _stop_criteria_class()(event)


class OpenAIBackend:
    """Any OpenAI-compatible chat server (vLLM, another sopforge, ...)."""

    def __init__(
        self, cfg: EngineConfig, *, api_key: str | None = None, model_id: str | None = None
    ):
        from openai import OpenAI

        self.cfg = cfg
        self.model_id = model_id or f"openai:{cfg.openai_model}"
        key = api_key or os.environ.get(cfg.openai_api_key_env) or "none"
        self.client = OpenAI(
            base_url=cfg.openai_base_url, api_key=key, timeout=cfg.openai_timeout_s
        )

    def request_kwargs(self, contract: Contract | None, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.cfg.openai_model,
            "max_tokens": max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        if contract is not None and contract.kind == "json" and self.cfg.constrained_json:
            # vLLM decodes under the schema (guided decoding) for this response_format.
            name = contract.spec.partition(":")[2] or "answer"
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": contract.schema or {}},
            }
        return kwargs

    def stream(
        self,
        messages: Messages,
        contract: Contract | None,
        max_new_tokens: int,
        citations: Sequence[str] = (),  # a remote server's grammar is its own
    ) -> Iterator[str]:
        import openai

        try:
            chunks = self.client.chat.completions.create(
                messages=messages, stream=True, **self.request_kwargs(contract, max_new_tokens)
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as e:
            raise EngineError(f"{self.cfg.openai_base_url}: the model server failed: {e}") from e


def serving_spec(ws: Workspace, cfg: EngineConfig) -> ModelSpec:
    """What the workspace says to serve. For `openai` the remote server holds the weights; the
    promoted row only names the model in the API and the audit log."""
    if cfg.backend == "openai":
        return promoted_model(ws) or ModelSpec(f"openai:{cfg.openai_model}", "")
    return resolve_model(ws, cfg)


def load_backend(spec: ModelSpec, cfg: EngineConfig) -> Backend:
    if cfg.backend == "openai":
        return OpenAIBackend(cfg, model_id=spec.model_id)
    if cfg.backend == "llamacpp":
        from sopforge.serve.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, cfg)
    return LocalBackend(spec, cfg)


class Engine:
    """The served model behind one `generate()`; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        cfg: EngineConfig | None = None,
        registry: ContractRegistry | None = None,
    ):
        self.cfg = cfg or EngineConfig()
        self.registry = registry or default_registry()
        self._backend = backend
        self._swap_lock = threading.Lock()
        # Models swapped out, newest last, kept loaded so that a rollback (or a promotion back to
        # one of them) swaps in at once instead of loading and merging again (~4 s on 2 cores).
        self._previous: list[Backend] = []

    @classmethod
    def from_workspace(
        cls, ws: Workspace, cfg: EngineConfig, registry: ContractRegistry | None = None
    ) -> Engine:
        return cls(load_backend(serving_spec(ws, cfg), cfg), cfg, registry)

    @property
    def backend(self) -> Backend:
        with self._swap_lock:
            return self._backend

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def swap(self, backend: Backend) -> Backend:
        """Serve `backend` from now on (already loaded); returns the old one, which is kept
        loaded (up to `cfg.keep_previous` of them) for an instant swap back."""
        with self._swap_lock:
            old, self._backend = self._backend, backend
            kept = [b for b in self._previous if b.model_id not in (old.model_id, backend.model_id)]
            self._previous = (
                [*kept, old][-self.cfg.keep_previous :] if self.cfg.keep_previous else []
            )
        log.info("engine now serves %s (was %s)", backend.model_id, old.model_id)
        return old

    def kept(self, model_id: str) -> Backend | None:
        """A model swapped out earlier and still loaded, if `model_id` is one."""
        with self._swap_lock:
            return next((b for b in self._previous if b.model_id == model_id), None)

    def load(self, spec: ModelSpec) -> Backend:
        """The backend for `spec`: one still loaded from before, or loaded now."""
        return self.kept(spec.model_id) or load_backend(spec, self.cfg)

    def reload(self, ws: Workspace) -> str:
        """Load the workspace's promoted model (or the configured base) and swap it in."""
        spec = serving_spec(ws, self.cfg)
        if spec.model_id != self.model_id:
            self.swap(self.load(spec))
        return self.model_id

    def contract(self, format: str | Contract | None) -> Contract | None:
        if format is None or isinstance(format, Contract):
            return format
        return self.registry.get(format)

    @overload
    def generate(
        self,
        messages: Messages,
        format: str | Contract | None = ...,
        stream: Literal[True] = ...,
        *,
        max_new_tokens: int | None = ...,
        citations: Sequence[str] = ...,
    ) -> Iterator[str]: ...

    @overload
    def generate(
        self,
        messages: Messages,
        format: str | Contract | None = ...,
        stream: Literal[False] = ...,
        *,
        max_new_tokens: int | None = ...,
        citations: Sequence[str] = ...,
    ) -> str: ...

    def generate(
        self,
        messages: Messages,
        format: str | Contract | None = None,
        stream: bool = True,
        *,
        max_new_tokens: int | None = None,
        citations: Sequence[str] = (),
    ) -> Iterator[str] | str:
        """Text deltas of the answer (stream=True) or the whole answer (stream=False)."""
        backend = self.backend  # pinned: a swap during this answer does not affect it
        deltas = backend.stream(
            messages,
            self.contract(format),
            max_new_tokens or self.cfg.max_new_tokens,
            citations,
        )
        return deltas if stream else "".join(deltas)


class RegistryWatcher:
    """Keeps a running server on the promoted model: when another process (`sopforge models
    promote|rollback`, `sopforge retrain`) changes the registry, the new model is loaded beside the
    old one and swapped in; chats in flight finish on the model they started with.

    A promoted model that fails to load is retried with a doubling delay (from `interval_s` up to
    `max_retry_s`), not at every poll: a load can cost seconds of CPU (and a GGUF export for
    llama.cpp) that the running server needs. A new promotion is tried at the next poll."""

    def __init__(
        self, engine: Engine, ws: Workspace, interval_s: float = 1.0, max_retry_s: float = 60.0
    ):
        self.engine, self.ws, self.interval_s = engine, ws, interval_s
        self.max_retry_s = max_retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: ModelSpec | None = None  # the promoted model that last failed to load
        self._retry_at = 0.0
        self._retry_delay = interval_s

    def check(self) -> bool:
        """Swap if the promoted model is not the one served; True if it swapped. Raises what
        loading raised; a model that failed is not loaded again before its retry time."""
        spec = serving_spec(self.ws, self.engine.cfg)
        if spec.model_id == self.engine.model_id:
            return False
        if spec == self._failed and time.monotonic() < self._retry_at:
            return False
        try:
            backend = self.engine.load(spec)
        except Exception:
            self._note_failure(spec)
            raise
        self._failed = None
        self.engine.swap(backend)
        return True

    def _note_failure(self, spec: ModelSpec) -> None:
        if spec != self._failed:
            self._failed, self._retry_delay = spec, self.interval_s
        else:
            self._retry_delay = min(self._retry_delay * 2, self.max_retry_s)
        self._retry_at = time.monotonic() + self._retry_delay

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a bad promotion must not take the server down: keep serving
                log.exception(
                    "could not switch to the promoted model %s (next try in %.0f s); still serving %s",
                    self._failed.model_id if self._failed else "?",
                    self._retry_delay,
                    self.engine.model_id,
                )

    def start(self) -> RegistryWatcher:
        self._thread = threading.Thread(target=self._loop, name="registry-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
