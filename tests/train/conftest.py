"""Fixtures of the train tests: a workspace and a train config on the tiny model and dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from sopforge.train.config import TrainConfig, load_train_config
from sopforge.workspace import Workspace


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request: pytest.FixtureRequest):
    """The tiny model gains nothing from intra-op threads, and on a busy machine (the suite runs
    beside other jobs) OpenMP threads waiting on each other make a 2-layer model's step take
    seconds. Real-model (integration) tests keep the default."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def tiny_overrides(model: Path, dataset: Path, *extra: str) -> list[str]:
    """A short, fast run on the tiny model: 3 steps of 4 records, no replay, no checkpoints."""
    return [
        f"base_model={model}",
        f"dataset={dataset}",
        "replay.enabled=false",
        "sft.max_steps=3",
        "sft.per_device_train_batch_size=4",
        "sft.gradient_accumulation_steps=1",
        "sft.learning_rate=0.01",
        "sft.warmup_steps=0",
        "sft.save_strategy=no",
        "sft.max_length=256",
        *extra,
    ]


@pytest.fixture
def overrides(tiny_model_dir: Path, tiny_dataset_dir: Path):
    """overrides(*extra) -> the tiny run's dotted overrides plus `extra`."""
    return lambda *extra: tiny_overrides(tiny_model_dir, tiny_dataset_dir, *extra)


@pytest.fixture
def tiny_cfg(tiny_model_dir: Path, tiny_dataset_dir: Path) -> TrainConfig:
    return load_train_config(None, tiny_overrides(tiny_model_dir, tiny_dataset_dir))
