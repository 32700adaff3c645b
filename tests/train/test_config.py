"""Every shipped train config loads strictly and its pass-through sections satisfy PEFT and TRL."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sopforge.config import ConfigError
from sopforge.train.config import CONFIG_DIR, DEFAULT_CONFIG, TrainConfig, load_train_config

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
ACCELERATE = sorted((CONFIG_DIR.parent / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_train_configs_build_lora_and_sft_configs(path: Path, tmp_path: Path):
    from peft import LoraConfig
    from trl import SFTConfig

    cfg = load_train_config(path)
    assert isinstance(cfg, TrainConfig)
    LoraConfig(task_type="CAUSAL_LM", **cfg.lora)
    sft = {k: v for k, v in cfg.sft.items() if k not in ("optim",)}  # bnb optimizers need CUDA
    SFTConfig(output_dir=str(tmp_path), use_cpu=True, **sft)


def test_default_config_is_the_cpu_one_with_lora_r16_on_all_linear_layers():
    cfg = load_train_config()
    assert DEFAULT_CONFIG.name == "smollm2-cpu.yaml"
    assert cfg.lora["r"] == 16 and cfg.lora["target_modules"] == "all-linear"
    assert cfg.sft["activation_checkpointing"] is False
    assert cfg.sft["train_sampling_strategy"] == "group_by_length"


def test_overrides_are_dotted_and_typed():
    cfg = load_train_config(None, ["lora.r=8", "sft.max_steps=5", "replay.ratio=0.5"])
    assert cfg.lora["r"] == 8 and cfg.sft["max_steps"] == 5 and cfg.replay.ratio == 0.5


def test_unknown_keys_and_owned_keys_are_rejected_with_their_name():
    with pytest.raises(ConfigError, match="replay.ratioo"):
        load_train_config(None, ["replay.ratioo=1"])
    with pytest.raises(ConfigError, match="sft.output_dir"):
        load_train_config(None, ["sft.output_dir=/tmp/x"])
    with pytest.raises(ConfigError, match="quantization"):
        load_train_config(None, ["quantization=3bit"])


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_are_valid_accelerate_files(path: Path):
    from accelerate.commands.config.config_args import ClusterConfig

    data = yaml.safe_load(path.read_text())
    ClusterConfig(**data)  # accelerate's own config class: unknown keys raise
    assert data["mixed_precision"] == "bf16"
