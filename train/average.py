"""`sopforge models average A B --weight W`: a model between two trained runs, without training.

A second training stage that teaches one contract can cost another one the first stage had (on the
shared corpus: a JSON-focused stage 2 lifts JSON compliance and loses some five-bullet summaries).
Interpolating the two runs' weight updates (as WiSE-FT interpolates fine-tuned and zero-shot
weights) gives the models in between:

    ΔW = (1 - W) · ΔW_A + W · ΔW_B     for every LoRA-adapted layer

PEFT's `add_weighted_adapter(combination_type="cat")` writes this exactly, as one adapter of rank
r_A + r_B (stacking the scaled A factors and the B factors), not as an average of the factors,
which is only an approximation. The result is registered as a finished run of kind `average`: it
is evaluated with the second run's dataset and config (`sopforge eval --run ID`), and promoted and
rolled back like a trained run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from sopforge.train.evaluate import find_run
from sopforge.train.registry import (
    RegistryError,
    claim_model_id,
    register_run,
    resolve_model_id,
    staged_run,
)
from sopforge.workspace import Workspace

# Files of the second adapter not copied beside the average (weights, config, training state).
_ADAPTER_FILES = {
    "adapter_model.safetensors",
    "adapter_model.bin",
    "adapter_config.json",
    "training_args.bin",
}


def average_runs(
    workspace: Workspace, first: str, second: str, weight: float, model_id: str = ""
) -> str:
    """Register (1 - weight) · run `first` + weight · run `second` as a new model; return its id."""
    if not 0.0 < weight < 1.0:
        raise RegistryError(
            f"--weight {weight}: give a weight strictly between 0 and 1 (the share of the second "
            "run; 0 or 1 would only copy one of the two)"
        )
    ids = [resolve_model_id(workspace, spec) for spec in (first, second)]
    if ids[0] == ids[1]:
        raise RegistryError(f"both runs are {ids[0]!r}; name two different runs to average")
    runs = [_trained_run(workspace, run_id) for run_id in ids]
    bases = [Path(r["base_model"]).resolve() for r in runs]
    if bases[0] != bases[1]:
        raise RegistryError(
            f"{ids[0]} was trained on {bases[0]} and {ids[1]} on {bases[1]}; only adapters of "
            "the same base model can be averaged"
        )
    model_id = claim_model_id(
        workspace, model_id or f"{time.strftime('%Y%m%d-%H%M%S')}-avg{round(weight * 100)}"
    )
    adapters = [Path(r["path"]) / "adapter" for r in runs]
    with staged_run(workspace, model_id) as tmp:
        _write_average(bases[0], adapters, weight, tmp / "adapter")
        info = {"runs": ids, "weight": weight}
        config = {**json.loads(runs[1]["config"] or "{}"), "average": info}
        register_run(
            workspace,
            model_id,
            tmp,
            "average",
            bases[0],
            config,
            dataset=(runs[1]["dataset_id"], runs[1]["dataset_hash"]),
            metrics={"average": info},
        )
    return model_id


def _trained_run(workspace: Workspace, run_id: str) -> dict[str, Any]:
    run = find_run(workspace, run_id)
    if not (Path(run["path"]) / "adapter" / "adapter_config.json").is_file():
        raise RegistryError(f"{run_id} has no adapter (a base model?); average two trained runs")
    return run


def _write_average(base: Path, adapters: list[Path], weight: float, out: Path) -> None:
    """Load both adapters on the base model, combine them exactly, save only the combination."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name="first")
    model.load_adapter(adapters[1], adapter_name="second")
    try:
        model.add_weighted_adapter(
            ["first", "second"], [1.0 - weight, weight], "average", combination_type="cat"
        )
    except ValueError as exc:  # PEFT's check: e.g. different target modules or adapter types
        raise RegistryError(f"cannot average {adapters[0]} and {adapters[1]}: {exc}") from exc
    saved = out.parent / "saved"
    model.save_pretrained(saved, selected_adapters=["average"])
    # PEFT saves an adapter that is not named "default" in a subfolder of its name.
    shutil.move(saved / "average" if (saved / "average").is_dir() else saved, out)
    shutil.rmtree(saved, ignore_errors=True)
    for f in adapters[1].iterdir():  # tokenizer and chat template, as the second run has them
        if f.is_file() and f.name not in _ADAPTER_FILES and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)
