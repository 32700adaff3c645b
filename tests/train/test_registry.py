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
