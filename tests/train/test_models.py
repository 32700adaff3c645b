"""Base models: the embedded GGUF imports to a plain HF folder; local folders resolve in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sopforge.train.config import load_train_config
from sopforge.train.models import (
    DEFAULT_MODEL_NAME,
    ModelImportError,
    drop_quantization_marker,
    embedded_gguf_path,
    import_default_model,
    import_model,
    resolve_base_model,
    slug,
)
from sopforge.train.run import train
from sopforge.workspace import Workspace


def test_slug_names_model_folders():
    assert slug("HuggingFaceTB/SmolLM2-360M-Instruct") == "smollm2-360m-instruct"
    assert slug("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct.q4_1"


def test_dropping_the_gguf_marker_saves_a_plain_checkpoint(tiny_model_dir: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import GgufConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.quantization_config = GgufConfig(gguf_file="m.gguf", dequantize=True)
    model.is_quantized = True
    drop_quantization_marker(model)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "quantization_config" not in config and not model.is_quantized


def test_local_folders_are_used_in_place_and_imports_are_copies(workspace, tiny_model_dir):
    assert resolve_base_model(str(tiny_model_dir), workspace) == tiny_model_dir.resolve()
    copied = import_model(str(tiny_model_dir), workspace, name="tiny")
    assert copied == workspace.path("models", "tiny").resolve()
    assert resolve_base_model("tiny", workspace) == copied  # by workspace model name
    rows = workspace.db.execute("SELECT model_id, adapter_path FROM models").fetchall()
    assert [tuple(r) for r in rows] == [("tiny", None)]
    with pytest.raises(ModelImportError, match="not a Hugging Face model folder"):
        import_model(str(workspace.root / "docs"), workspace)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Workspace, Path]:
    ws = Workspace(tmp_path_factory.mktemp("real") / "ws")
    return ws, import_default_model(ws)


@pytest.mark.integration
def test_embedded_gguf_imports_as_a_plain_hf_model(imported):
    from transformers import AutoConfig, AutoTokenizer

    ws, path = imported
    assert embedded_gguf_path().name.endswith(".gguf")
    assert path == ws.path("models", DEFAULT_MODEL_NAME).resolve()
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    assert not hasattr(config, "quantization_config")
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n") and tok.pad_token is not None
    assert import_default_model(ws) == path  # idempotent: no second import
    assert not list(path.parent.glob(".*.tmp"))  # no temp folder left behind


@pytest.mark.integration
def test_lora_steps_on_the_real_model_save_reload_generate(imported, tiny_dataset_dir):
    from sopforge.train.generate import generate, load_model

    ws, path = imported
    over = [
        f"dataset={tiny_dataset_dir}",
        "replay.enabled=false",
        "max_eval_records=2",
        "sft.max_steps=3",
        "sft.per_device_train_batch_size=1",
        "sft.gradient_accumulation_steps=1",
        "sft.max_length=192",
        "sft.save_strategy=no",
    ]
    run_id = train(load_train_config(None, over), ws)  # base_model "" = the embedded model
    adapter = ws.path("runs", run_id, "adapter")
    from safetensors.torch import load_file

    weights = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_B" in k and torch.count_nonzero(v) > 0 for k, v in weights.items())
    model, tok = load_model(str(path), str(adapter))
    question = [{"role": "user", "content": "What is the capital of France?"}]
    (answer,) = generate(model, tok, [question], max_new_tokens=16)
    assert "paris" in answer.lower()  # 3 tiny steps keep the base model's knowledge
