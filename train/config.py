"""The train stage's config: a small frozen dataclass, filled from YAML by `sopforge.config`.

`lora:` and `sft:` are pass-through sections: they go as they are to `peft.LoraConfig` and
`trl.SFTConfig`, whose own validation then applies (we don't re-declare their many fields).
sopforge only fills what it owns: the output folder, and precision when the YAML leaves it unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sopforge.config import ConfigError, load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"
DEFAULT_CONFIG = CONFIG_DIR / "smollm2-cpu.yaml"
DEFAULT_INSTRUCTIONS = CONFIG_DIR / "general_instructions.jsonl"

# SFTConfig keys that sopforge sets itself, per run; a config that sets them would be ignored.
OWNED_SFT_KEYS = ("output_dir", "resume_from_checkpoint")


@dataclass(frozen=True)
class ReplayConfig:
    """General-instruction replay mixed into training so the tuned model keeps general abilities.

    The answers are the base model's own (greedy) answers, generated once and cached in the
    workspace; training on them pulls the adapter back towards the base model's behaviour.
    """

    enabled: bool = True
    instructions: str = (
        ""  # JSONL of general prompts; "" = configs/train/general_instructions.jsonl
    )
    ratio: float = 0.2  # replay records per training record (capped by the prompts available)
    max_new_tokens: int = 192  # length cap of the base model's replay answers


@dataclass(frozen=True)
class TrainConfig:
    base_model: str = (
        ""  # "" = embedded SmolLM2-135M-Instruct; or a workspace model, folder, hub id
    )
    dataset: str = ""  # dataset folder or id; "" = the newest dataset in the workspace
    init_adapter: str = ""  # warm start from an adapter folder, or "promoted"; "" = fresh LoRA
    quantization: Literal["none", "4bit", "8bit"] = "none"  # 4bit = QLoRA (bitsandbytes, GPU)
    max_eval_records: int = 256  # held-out records for the end-of-run eval loss (0 = all)
    # records of the sections that the latest update of a document added or changed are seen
    # this many times (1 = as often as the rest); `sopforge retrain` sets it (--changed-weight)
    changed_weight: int = 1
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    lora: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owned = [k for k in OWNED_SFT_KEYS if k in self.sft]
        if owned:
            raise ConfigError(
                f"sft.{owned[0]} is set by sopforge (runs/<id>/checkpoints, --resume); remove it"
            )
        if not 1 <= self.changed_weight <= 50:
            raise ConfigError(f"changed_weight must be between 1 and 50, got {self.changed_weight}")
        if not 0 <= self.replay.ratio <= 10:
            raise ConfigError(f"replay.ratio must be between 0 and 10, got {self.replay.ratio}")


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Load a train config (default: configs/train/smollm2-cpu.yaml) with dotted overrides."""
    return load_config(TrainConfig, path or DEFAULT_CONFIG, overrides)
