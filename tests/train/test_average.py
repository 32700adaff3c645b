"""`sopforge models average`: the registered model's weight update is exactly the weighted sum."""

from __future__ import annotations

import json

import pytest

from sopforge.cli import main
from sopforge.train.average import average_runs
from sopforge.train.evaluate import EvalError
from sopforge.train.registry import RegistryError, add_adapter


def _adapter(tiny_model_dir, out, seed: int, r: int = 2):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg).save_pretrained(out)
    return out


def _merged(tiny_model_dir, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_average_is_the_weighted_sum_of_both_updates(tmp_path, tiny_model_dir, workspace):
    import torch

    for name, seed, r in (("a", 1, 2), ("b", 2, 4)):  # ranks may differ: the result has rank 6
        add_adapter(
            workspace, _adapter(tiny_model_dir, tmp_path / name, seed, r), tiny_model_dir, name
        )
    model_id = average_runs(workspace, "a", "b", 0.25, "mix")
    adapter = workspace.path("runs", "mix", "adapter")
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 6
    w0, wa, wb, wm = (
        _merged(tiny_model_dir, a) for a in (None, tmp_path / "a", tmp_path / "b", adapter)
    )
    changed = [k for k in w0 if not torch.allclose(wa[k], w0[k])]
    assert len(changed) >= 4  # the LoRA layers of the tiny model
    for k in w0:
        expected = w0[k] + 0.75 * (wa[k] - w0[k]) + 0.25 * (wb[k] - w0[k])
        assert torch.allclose(wm[k], expected, atol=1e-5), k
    run = workspace.db.execute("SELECT * FROM runs WHERE run_id = ?", (model_id,)).fetchone()
    assert (run["kind"], run["status"]) == ("average", "finished")
    assert json.loads(run["config"])["average"] == {"runs": ["a", "b"], "weight": 0.25}
    assert (adapter / "tokenizer_config.json").exists() == (
        tmp_path / "b" / "tokenizer_config.json"
    ).exists()
    assert not list(workspace.path("runs").glob(".*.tmp"))


def test_average_refuses_bad_requests_and_leaves_nothing_behind(
    tmp_path, tiny_model_dir, workspace
):
    add_adapter(workspace, _adapter(tiny_model_dir, tmp_path / "a", 1), tiny_model_dir, "a")
    add_adapter(workspace, _adapter(tiny_model_dir, tmp_path / "b", 2), tiny_model_dir, "b")
    before = sorted(p.name for p in workspace.path("runs").iterdir())
    for weight in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(RegistryError, match="strictly between 0 and 1"):
            average_runs(workspace, "a", "b", weight)
    with pytest.raises(RegistryError, match="two different runs"):
        average_runs(workspace, "a", "a", 0.5)
    with pytest.raises(RegistryError, match="exists already"):
        average_runs(workspace, "a", "b", 0.5, "b")
    with pytest.raises(EvalError, match="not found"):
        average_runs(workspace, "a", "nope", 0.5)
    assert sorted(p.name for p in workspace.path("runs").iterdir()) == before
    n = workspace.db.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    assert n == 2


def test_cli_average(tmp_path, tiny_model_dir, capsys):
    ws = tmp_path / "ws"
    for name, seed in (("a", 1), ("b", 2)):
        adapter = _adapter(tiny_model_dir, tmp_path / name, seed)
        argv = ["-w", str(ws), "models", "add", str(adapter), "--base", str(tiny_model_dir)]
        assert main([*argv, "--id", name]) == 0
    assert main(["-w", str(ws), "models", "average", "a", "b", "--weight", "0.3", "--id", "m"]) == 0
    assert "averaged m: evaluate it with `sopforge eval --run m`" in capsys.readouterr().out
    assert main(["-w", str(ws), "models", "average", "a", "b", "--weight", "2"]) == 1
    assert "strictly between 0 and 1" in capsys.readouterr().err
