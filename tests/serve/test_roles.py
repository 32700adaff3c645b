"""Admin actions are refused on the server for non-admins: admin API and every Gradio admin handler."""

from __future__ import annotations

import inspect
import time
from typing import Any

import gradio as gr
import httpx
import pytest

from sopforge.serve import admin
from sopforge.serve.auth import User


def login(server: Any, name: str) -> httpx.Client:
    c = httpx.Client(base_url=server.url, timeout=30)
    r = c.post("/login", data={"username": name, "password": server.passwords[name]})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    return c


def add_model(server: Any, model_id: str) -> None:
    with server.ws.transaction() as db:
        db.execute(
            "INSERT INTO models (model_id, base_model, created_at) VALUES (?, ?, ?)",
            (model_id, server.state.engine.backend.spec.base_model, time.time()),
        )


ADMIN_CALLS = [
    ("GET", "/admin/api/models"),
    ("POST", "/admin/api/models/m2/promote"),
    ("POST", "/admin/api/rollback"),
    ("GET", "/admin/api/dataset"),
    ("GET", "/admin/api/report"),
    ("POST", "/admin/api/retrain"),
    ("GET", "/admin/api/retrain"),
]


def test_admin_api_refuses_anonymous_and_employees(live_server: Any) -> None:
    add_model(live_server, "m2")
    employee = login(live_server, "eve")
    bearer = {"Authorization": f"Bearer {live_server.key}"}
    for method, path in ADMIN_CALLS:
        assert httpx.request(method, live_server.url + path).status_code == 401, path
        assert employee.request(method, path).status_code == 403, path
        assert httpx.request(method, live_server.url + path, headers=bearer).status_code == 403, (
            path
        )
    r = employee.post("/admin/api/documents", files={"files": ("x.md", b"# X\n\nbody")})
    assert r.status_code == 403
    promoted = live_server.ws.db.execute("SELECT count(*) FROM models WHERE promoted=1").fetchone()[
        0
    ]
    assert promoted == 0  # nothing changed
    assert (
        live_server.ws.db.execute(
            "SELECT count(*) FROM versions WHERE doc_id LIKE 'x%'"
        ).fetchone()[0]
        == 0
    )


def test_admin_promotes_and_rolls_back_and_the_engine_swaps(live_server: Any) -> None:
    add_model(live_server, "m1")
    add_model(live_server, "m2")
    boss = login(live_server, "ada")
    assert boss.post("/admin/api/models/m1/promote").json()["serving"] == "m1"
    assert boss.post("/admin/api/models/m2/promote").json()["serving"] == "m2"
    assert live_server.state.engine.model_id == "m2"
    assert boss.post("/admin/api/rollback").json() == {"promoted": "m1", "serving": "m1"}
    models = {m["model_id"]: m["promoted"] for m in boss.get("/admin/api/models").json()["models"]}
    assert models == {"m1": 1, "m2": 0}
    assert boss.post("/admin/api/models/nope/promote").status_code == 400
    actions = live_server.ws.db.execute(
        "SELECT model_id, action FROM promotions ORDER BY id"
    ).fetchall()
    assert [tuple(a) for a in actions] == [("m1", "promote"), ("m2", "promote"), ("m1", "rollback")]


class FakeRequest:
    """What a Gradio handler reads from gr.Request: the signed-in user's name."""

    def __init__(self, username: str | None):
        self.username = username


def test_every_gradio_admin_handler_refuses_an_employee(live_server: Any) -> None:
    ui = live_server.app.state.sopforge_ui
    handlers = {fn.fn.__name__: fn.fn for fn in ui.fns.values() if fn.fn is not None}
    admin_handlers = [n for n in handlers if n.startswith("do_") or n == "poll_training"]
    assert set(admin_handlers) >= {
        "do_ingest",
        "do_dataset",
        "do_retrain",
        "do_promote",
        "do_rollback",
        "do_report",
        "poll_training",
    }
    add_model(live_server, "m2")
    for name in admin_handlers:
        fn = handlers[name]
        n_args = len([p for p in inspect.signature(fn).parameters if p != "request"])
        for who in ("eve", None):
            with pytest.raises(gr.Error):
                fn(*(["m2"] * n_args), request=FakeRequest(who))
    assert live_server.ws.db.execute("SELECT count(*) FROM promotions").fetchone()[0] == 0
    assert live_server.state.training.status.state == "idle"


def test_admin_functions_check_the_role_themselves(live_server: Any) -> None:
    employee = User("eve", "employee")
    with pytest.raises(admin.PermissionDenied):
        admin.promote(employee, live_server.ws, "m2")
    with pytest.raises(admin.PermissionDenied):
        admin.TrainingJob(live_server.ws).start(employee)
    with pytest.raises(admin.PermissionDenied, match="sign in"):
        admin.rollback(None, live_server.ws)


def test_retrain_runs_in_the_background_and_reports_progress(live_server: Any) -> None:
    """The job machinery with a stand-in runner (the real one calls sopforge.train.run.train)."""

    def runner(ws: Any, config: str, status: admin.TrainingStatus) -> str:
        for step in range(1, 4):
            status.step, status.max_steps = step, 3
            status.losses.append((step, 1.0 / step))
        return "run-1"

    job = admin.TrainingJob(live_server.ws, runner=runner)
    job.start(User("ada", "admin"))
    status = job.wait(10)
    assert (status.state, status.result, status.fraction) == ("done", "run-1", 1.0)
    assert status.losses == [(1, 1.0), (2, 0.5), (3, 1 / 3)]

    def broken(ws: Any, config: str, status: admin.TrainingStatus) -> None:
        raise RuntimeError("no dataset")

    job = admin.TrainingJob(live_server.ws, runner=broken)
    job.start(User("ada", "admin"))
    assert job.wait(10).state == "failed" and "no dataset" in job.status.message


def test_ui_requires_a_session(live_server: Any) -> None:
    r = httpx.get(f"{live_server.url}/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert httpx.get(f"{live_server.url}/ui/config").status_code == 401
    bad = httpx.post(f"{live_server.url}/login", data={"username": "eve", "password": "wrong-pass"})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    employee = login(live_server, "eve")
    assert employee.get("/ui/config").status_code == 200
    employee.get("/logout")
    assert employee.get("/ui/config").status_code == 401


def test_run_training_adapter_feeds_progress_from_the_trainer_callbacks(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one wiring point to the train stage: train(cfg, workspace, callbacks=[...])."""
    from types import SimpleNamespace

    import sopforge.train.run as train_run
    from sopforge.train.config import TrainConfig
    from sopforge.workspace import Workspace

    seen: dict[str, Any] = {}

    def fake_train(cfg: Any, workspace: Any, *, callbacks: Any = ()) -> str:
        seen.update(cfg=cfg, workspace=workspace)
        for step in (1, 2):
            state = SimpleNamespace(global_step=step, max_steps=2)
            for cb in callbacks:
                cb.on_step_end(None, state, None)
                cb.on_log(None, state, None, logs={"loss": 3.0 - step})
        return "run-9"

    monkeypatch.setattr(train_run, "train", fake_train)
    ws = Workspace(tmp_path / "ws")
    status = admin.TrainingStatus()
    assert admin.run_training(ws, "", status) == "run-9"
    assert isinstance(seen["cfg"], TrainConfig) and seen["workspace"] is ws
    assert (status.step, status.max_steps, status.losses) == (2, 2, [(1, 2.0), (2, 1.0)])
