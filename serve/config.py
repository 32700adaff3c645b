"""The serve stage's config: one frozen dataclass per concern, loaded by the strict loader.

    sopforge serve --config configs/serve/default.yaml port=8080 engine.max_new_tokens=128

Paths left empty fall back to the workspace (users file, ingest/train configs to their stage's
defaults); nothing here imports torch or gradio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sopforge.config import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "serve" / "default.yaml"


@dataclass(frozen=True)
class EngineConfig:
    """Which backend answers, and how it decodes."""

    # local: transformers in this process; llamacpp: the same merged model exported to GGUF once
    # (cached next to the adapter) and decoded by llama.cpp (pip install 'sopforge[llamacpp]');
    # openai: a remote OpenAI-compatible server.
    backend: Literal["local", "llamacpp", "openai"] = "local"
    # Base model folder served when no model is promoted in the workspace. Empty: the single
    # folder under <workspace>/models/ (where the train stage imports the bundled model).
    base_model: str = ""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"  # auto: bf16 where the CPU has it
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy (reproducible answers)
    constrained_json: bool = True  # JSON formats decoded under the schema (lm-format-enforcer)
    # no third back-to-back copy of a stretch of the answer, no repeated long line
    # (sopforge.decoding; `sopforge eval` decodes the same way, so its figures are the chat's)
    loop_guard: bool = True
    threads: int = 0  # torch intra-op threads for the local backend; 0 = torch's default
    # models kept loaded after being swapped out, so a rollback is instant (each costs its size in
    # memory: ~0.3 GB for the bundled model in bf16); 0 = free them
    keep_previous: int = 1
    llamacpp_dtype: Literal["f16", "bf16", "q8_0"] = "f16"  # GGUF weights (f16: same answers)
    llamacpp_n_ctx: int = 4096  # context window of the llama.cpp backend (prompt + answer)
    # openai backend: any OpenAI-compatible server (vLLM with --enable-lora --lora-modules sop=...)
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "sop"
    openai_api_key_env: str = "OPENAI_API_KEY"  # read from the environment, never from YAML
    openai_timeout_s: float = 120.0


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
