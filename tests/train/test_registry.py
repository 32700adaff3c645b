"""Registry: promotion is gated on evaluation, logged, and rollback walks back the history."""

from __future__ import annotations

import json
import time

import pytest

from sopforge.train.registry import (
    RegistryError,
    list_models,
    promote,
    promoted_model,
    resolve_model_id,
    rollback,
    show_model,
)


def _eval(compliance: float, regressions: list[str] | None = None) -> dict:
    overall = {"compliance": compliance}
    return {
        "dataset_id": "d1",
        "regressions": regressions or [],
        "passed": not regressions,
        "base": {"overall": {"compliance": 0.1}},
        "tuned": {"overall": overall},
    }


def _add_run(ws, run_id: str, ev: dict | None, status: str = "finished") -> None:
    metrics = {"train": {"train_loss": 1.0}, **({"eval": ev} if ev else {})}
    now = time.time()
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, kind, base_model, config, status, path, metrics)"
            " VALUES (?, ?, 'train', '/m/base', '{}', ?, ?, ?)",
            (run_id, now, status, f"/runs/{run_id}", json.dumps(metrics)),
        )
        db.execute(
            "INSERT INTO models (model_id, run_id, base_model, adapter_path, created_at)"
            " VALUES (?, ?, '/m/base', ?, ?)",
            (run_id, run_id, f"/runs/{run_id}/adapter", now),
        )


@pytest.fixture
def ws(workspace):
    with workspace.transaction() as db:
        db.execute(
            "INSERT INTO models (model_id, base_model, created_at) VALUES ('base', '/m/base', 0)"
        )
    _add_run(workspace, "good", _eval(0.9))
    time.sleep(0.01)
    _add_run(workspace, "better", _eval(0.95))
    time.sleep(0.01)
    _add_run(workspace, "regressed", _eval(0.5, ["compliance fell from 0.60 to 0.50"]))
    time.sleep(0.01)
    _add_run(workspace, "unevaluated", None)
    return workspace


def test_promote_sets_exactly_one_promoted_model_and_logs_it(ws):
    assert promoted_model(ws) is None
    promote(ws, "good", reason="first")
    served = promoted_model(ws)
    assert served["model_id"] == "good"
    assert served["base_model"] == "/m/base" and served["adapter_path"] == "/runs/good/adapter"
    promote(ws, "better")
    assert [m["model_id"] for m in list_models(ws) if m["promoted"]] == ["better"]
    log = show_model(ws, "good")["promotions"]
    assert log[0]["action"] == "promote" and log[0]["reason"] == "first"


def test_gate_refuses_unevaluated_or_regressed_models_unless_forced(ws):
    with pytest.raises(RegistryError, match="sopforge eval --run unevaluated"):
        promote(ws, "unevaluated")
    with pytest.raises(RegistryError, match="compliance fell"):
        promote(ws, "regressed")
    assert promoted_model(ws) is None
    promote(ws, "regressed", force=True)
    row = ws.db.execute("SELECT forced, reason FROM promotions").fetchone()
    assert row["forced"] == 1 and "compliance fell" in row["reason"]


def test_gate_refuses_a_model_less_compliant_than_the_promoted_one(ws):
    promote(ws, "better")
    with pytest.raises(RegistryError, match="below the promoted better"):
        promote(ws, "good")


def test_rollback_re_promotes_the_previous_model_like_a_stack(ws):
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(ws)
    promote(ws, "base")  # the base model needs no evaluation
    promote(ws, "good")
    promote(ws, "better")
    assert rollback(ws) == "good" and promoted_model(ws)["model_id"] == "good"
    assert rollback(ws) == "base" and promoted_model(ws)["adapter_path"] is None
    with pytest.raises(RegistryError):
        rollback(ws)


def test_latest_and_promoted_names(ws):
    assert resolve_model_id(ws, "latest") == "unevaluated"
    with pytest.raises(RegistryError, match="no model is promoted"):
        resolve_model_id(ws, "promoted")
    promote(ws, "good")
    assert show_model(ws, "promoted")["model_id"] == "good"
    with pytest.raises(RegistryError, match="not found"):
        show_model(ws, "missing")


def test_unfinished_runs_cannot_be_promoted(workspace):
    _add_run(workspace, "running", _eval(0.9), status="running")
    with pytest.raises(RegistryError, match="not finished"):
        promote(workspace, "running", force=True)


def test_models_add_registers_a_copy_of_an_adapter_trained_elsewhere(
    tmp_path, tiny_model_dir, capsys
):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sopforge.cli import main
    from sopforge.serve.engine import promoted_model as served
    from sopforge.workspace import Workspace

    outside = tmp_path / "gpu-box" / "adapter"
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=2, target_modules="all-linear"),
    ).save_pretrained(outside)
    ws_dir = tmp_path / "ws"
    argv = ["-w", str(ws_dir), "models", "add", str(outside), "--base", str(tiny_model_dir)]
    assert main([*argv, "--id", "from-gpu"]) == 0
    assert "added from-gpu" in capsys.readouterr().out
    ws = Workspace(ws_dir)
    row = ws.db.execute("SELECT * FROM models WHERE model_id='from-gpu'").fetchone()
    copied = ws_dir / "runs" / "from-gpu" / "adapter"
    assert row["adapter_path"] == str(copied) and (copied / "adapter_config.json").is_file()
    run = ws.db.execute("SELECT kind, status FROM runs WHERE run_id='from-gpu'").fetchone()
    assert tuple(run) == ("import", "finished")
    assert main(["-w", str(ws_dir), "models", "promote", "from-gpu", "--force"]) == 0
    assert served(ws).model_id == "from-gpu"

    assert main([*argv, "--id", "from-gpu"]) == 1  # the id is taken
    assert "exists already" in capsys.readouterr().err
    assert main(["-w", str(ws_dir), "models", "add", str(tmp_path), "--id", "x"]) == 1
    assert "not a PEFT adapter folder" in capsys.readouterr().err
    assert main([*argv, "--id", "../evil"]) == 1
    assert "use letters, digits" in capsys.readouterr().err
    assert not (tmp_path / "evil").exists()
