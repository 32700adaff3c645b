"""The serve stage's config: one frozen dataclass per concern, loaded by the strict loader.

    sopforge serve --config configs/serve/default.yaml port=8080 engine.max_new_tokens=128

Paths left empty fall back to the workspace (users file, ingest/train configs to their stage's
defaults); nothing here imports torch or gradio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sopforge.config import load_config

if TYPE_CHECKING:
    from sopforge.llamaserver import Decoding

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "serve" / "default.yaml"


@dataclass(frozen=True)
class EngineConfig:
    """Which backend answers, and how it decodes."""

    # llamacpp: the served model exported to GGUF once (cached next to the adapter) and decoded by
    # llama.cpp's server in this process, many requests at once (core/llamaserver.py); local:
    # transformers in this process, one answer at a time; openai: a remote OpenAI-compatible server.
    backend: Literal["llamacpp", "local", "openai"] = "llamacpp"
    # Base model folder served when no model is promoted in the workspace. Empty: the single
    # folder under <workspace>/models/ (where the train stage imports the bundled model).
    base_model: str = ""
    dtype: Literal["auto", "bfloat16", "float32"] = (
        "auto"  # local backend: bf16 where the CPU has it
    )
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy (reproducible answers)
    # formats decoded under their grammar (llamacpp: bullets, numbered, JSON and the citation
    # line; local: JSON only, with lm-format-enforcer)
    constrained_json: bool = True
    # against loops: llamacpp uses llama.cpp's DRY sampler (dry_* below, off while dry_multiplier
    # is 0: DRY also penalizes copying the sources in the prompt, which is what an extractive
    # answer does; formatted answers end by their grammar's bounds); local uses
    # sopforge.decoding's guard. `sopforge eval` decodes the same way, so its figures are the chat's.
    loop_guard: bool = True
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n: int = 128
    threads: int = 0  # CPU threads of the engine; 0 = the physical cores
    # models kept loaded after being swapped out, so a rollback is instant (each costs its size in
    # memory plus its KV cache); 0 = free them
    keep_previous: int = 1
    # GGUF weights of the served model: f16 decodes the answers of the torch weights (tested);
    # q8_0 is faster and slightly lossy (README: benchmarks)
    llamacpp_dtype: Literal["f16", "bf16", "q8_0"] = "f16"
    llamacpp_n_ctx: int = 4096  # tokens one request may hold (prompt + answer)
    llamacpp_parallel: int = 8  # requests decoded together (each gets llamacpp_n_ctx of KV cache)
    # openai backend: any OpenAI-compatible server (vLLM with --enable-lora --lora-modules sop=...)
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "sop"
    openai_api_key_env: str = "OPENAI_API_KEY"  # read from the environment, never from YAML
    openai_timeout_s: float = 120.0

    def decoding(self) -> Decoding:
        """The decoding settings the llama.cpp engine applies (shared with `sopforge eval`)."""
        from sopforge.llamaserver import Decoding

        return Decoding(
            temperature=self.temperature,
            grammar=self.constrained_json,
            dry_multiplier=self.dry_multiplier if self.loop_guard else 0.0,
            dry_base=self.dry_base,
            dry_allowed_length=self.dry_allowed_length,
            dry_last_n=self.dry_last_n,
        )


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 3
    max_section_chars: int = 1200  # long sections are cut so top_k of them fit the context


@dataclass(frozen=True)
class GuardConfig:
    max_attempts: int = 3  # total tries per formatted answer (first + retries with the error)
    json_schema: str = "procedure"  # schema used when a question implies JSON ("as JSON")
    formats_dir: str = ""  # contract folder; empty = the shipped configs/formats


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # bind elsewhere only on purpose (e.g. 0.0.0.0 behind a proxy)
    port: int = 7860
    users_file: str = ""  # empty = <workspace>/users.yaml
    model_alias: str = "sopforge"  # API model name that always means "the served model"
    max_body_bytes: int = 1_000_000  # API request bodies over this get 413
    max_upload_mb: float = 50.0
    session_hours: float = 12.0
    history_turns: int = 2  # earlier chat turns kept in the prompt (small models, small contexts)
    ingest_config: str = ""  # YAML for admin uploads; empty = ingest defaults
    train_config: str = ""  # YAML for admin retrains; empty = train defaults
    engine: EngineConfig = field(default_factory=EngineConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)


def load_serve_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ServeConfig:
    return load_config(ServeConfig, path, overrides)
