"""Hot swap: a running engine follows promotions and rollbacks made by another process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sopforge.serve.config import EngineConfig
from sopforge.serve.engine import Engine, RegistryWatcher
from sopforge.train import registry
from sopforge.workspace import Workspace


def _register(ws: Workspace, model_id: str, base: Path, adapter: Path) -> None:
    """A finished run and its model, as `sopforge models add` records them."""
    registry.add_adapter(ws, adapter, base, model_id)


@pytest.fixture
def two_models(tmp_path: Path, tiny_model_dir: Path, helpers) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    for i, name in enumerate(("run-a", "run-b")):
        _register(
            ws,
            name,
            tiny_model_dir,
            helpers.random_adapter(tiny_model_dir, tmp_path / name / "adapter", i),
        )
    registry.promote(ws, "run-a", force=True)
    return ws


def test_engine_follows_promote_and_rollback_without_dropping_a_chat(two_models: Workspace) -> None:
    ws = two_models
    cfg = EngineConfig(dtype="float32", max_new_tokens=24, threads=1)
    engine = Engine.from_workspace(ws, cfg)
    watcher = RegistryWatcher(engine, ws, interval_s=0.1)
    assert engine.model_id == "run-a" and not watcher.check()
    msgs = [{"role": "user", "content": "How do I report a lost badge?"}]
    before = engine.generate(msgs, stream=False)

    in_flight = engine.generate(msgs, stream=True)  # a chat that started on run-a
    first = next(in_flight, "")
    registry.promote(ws, "run-b", force=True)  # as `sopforge models promote` in another process
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while engine.model_id != "run-b" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.model_id == "run-b"
        rest = "".join(in_flight)  # the chat in flight finishes on the model it started with
        assert (first + rest).strip() == before.strip()
        assert engine.generate(msgs, stream=False) != before  # a different adapter answers now

        t = time.monotonic()
        registry.rollback(ws)
        while engine.model_id != "run-a" and time.monotonic() - t < 5:
            time.sleep(0.05)
        elapsed = time.monotonic() - t
        assert engine.model_id == "run-a" and elapsed < 5
        assert engine.generate(msgs, stream=False) == before
    finally:
        watcher.stop()


def test_a_broken_promotion_keeps_the_old_model_serving(
    two_models: Workspace, tmp_path: Path
) -> None:
    ws = two_models
    engine = Engine.from_workspace(ws, EngineConfig(dtype="float32", max_new_tokens=8, threads=1))
    with ws.transaction() as db:
        db.execute(
            "UPDATE models SET adapter_path=? WHERE model_id='run-b'", (str(tmp_path / "gone"),)
        )
    registry.promote(ws, "run-b", force=True)
    watcher = RegistryWatcher(engine, ws, interval_s=0.05).start()
    time.sleep(0.5)
    watcher.stop()
    assert engine.model_id == "run-a"
    assert engine.generate([{"role": "user", "content": "hi"}], stream=False) is not None


def test_rollback_swaps_back_to_the_model_still_loaded(
    two_models: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model swapped out stays loaded (keep_previous=1): rolling back to it loads nothing."""
    from sopforge.serve import engine as engine_mod

    ws = two_models
    engine = Engine.from_workspace(ws, EngineConfig(dtype="float32", max_new_tokens=8, threads=1))
    watcher = RegistryWatcher(engine, ws, interval_s=0.1)
    msgs = [{"role": "user", "content": "How do I report a lost badge?"}]
    a_answer = engine.generate(msgs, stream=False)
    a_backend = engine.backend
    registry.promote(ws, "run-b", force=True)
    assert watcher.check() and engine.model_id == "run-b"

    loads: list[str] = []
    real = engine_mod.load_backend
    monkeypatch.setattr(
        engine_mod, "load_backend", lambda spec, cfg: loads.append(spec.model_id) or real(spec, cfg)
    )
    registry.rollback(ws)
    assert watcher.check() and engine.model_id == "run-a"
    assert loads == [] and engine.backend is a_backend
    assert engine.generate(msgs, stream=False) == a_answer

    # with keep_previous=0 nothing is kept: the swap back loads again
    cold = Engine.from_workspace(
        ws, EngineConfig(dtype="float32", max_new_tokens=8, threads=1, keep_previous=0)
    )
    registry.promote(ws, "run-b", force=True)
    cold.reload(ws)
    registry.rollback(ws)
    cold.reload(ws)
    assert cold.model_id == "run-a" and loads == ["run-a", "run-b", "run-a"]  # start, b, a again
