"""RegistryWatcher: a promoted model that fails to load is retried with a doubling delay, not at
every poll, and a new promotion is taken up at once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sopforge.serve.config import EngineConfig
from sopforge.serve.engine import Engine, EngineError, RegistryWatcher
from sopforge.train import registry
from sopforge.workspace import Workspace


def register(ws: Workspace, model_id: str, base: Path, adapter: Path) -> None:
    """A finished run and its model, as `sopforge models add` records them."""
    registry.add_adapter(ws, adapter, base, model_id)


def lora_adapter(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules="all-linear")
    )
    model.save_pretrained(out)
    return out


def test_a_model_that_fails_to_load_is_retried_with_backoff(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    ws = Workspace(tmp_path / "ws")
    register(ws, "good", tiny_model_dir, lora_adapter(tiny_model_dir, tmp_path / "good" / "a"))
    register(ws, "broken", tiny_model_dir, lora_adapter(tiny_model_dir, tmp_path / "broken" / "a"))
    shutil.rmtree(ws.path("runs", "broken", "adapter"))  # its files lost after registration
    register(ws, "fixed", tiny_model_dir, lora_adapter(tiny_model_dir, tmp_path / "fixed" / "a"))
    registry.promote(ws, "good", force=True)
    engine = Engine.from_workspace(ws, EngineConfig(dtype="float32", threads=1))
    watcher = RegistryWatcher(engine, ws, interval_s=0.3, max_retry_s=5)

    registry.promote(ws, "broken", force=True)
    with pytest.raises(EngineError, match="adapter_config.json"):
        watcher.check()  # tried at once
    assert not watcher.check()  # not again before its retry time: no load, no error
    time.sleep(0.35)
    with pytest.raises(EngineError):
        watcher.check()  # retried after 0.3 s ...
    time.sleep(0.1)
    assert not watcher.check()  # ... then the delay doubles to 0.6 s
    time.sleep(0.55)
    with pytest.raises(EngineError):
        watcher.check()
    assert engine.model_id == "good"  # served all along

    registry.promote(ws, "fixed", force=True)  # a new promotion: no waiting for the retry time
    assert watcher.check() and engine.model_id == "fixed"
