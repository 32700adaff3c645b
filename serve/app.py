"""The server: one FastAPI app with the login pages, the Gradio UI at /ui, and the APIs.

    app = build_app(cfg, workspace)            # what `sopforge serve` runs with uvicorn
    uvicorn.run(app, host=cfg.host, port=cfg.port)

Browser sign-in is sopforge's own (a form at /login, a random session token in an HttpOnly
cookie), handed to Gradio through `auth_dependency`, so Gradio's `gr.Request.username` and the
admin API see the same signed-in user and role. Every Gradio call without a session gets 401.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sopforge.contracts import ContractRegistry
from sopforge.serve.admin import TrainingJob, recover_interrupted_runs
from sopforge.serve.assistant import Assistant
from sopforge.serve.auth import Sessions, User, UserStore
from sopforge.serve.config import ServeConfig
from sopforge.serve.engine import Engine
from sopforge.serve.retrieval import Retriever
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)

SESSION_COOKIE = "sopforge_session"
UI_PATH = "/ui"


@dataclass
class ServerState:
    cfg: ServeConfig
    ws: Workspace
    users: UserStore
    sessions: Sessions
    registry: ContractRegistry
    engine: Engine
    assistant: Assistant
    training: TrainingJob

    def session_user(self, request: Any) -> User | None:
        """The signed-in user of a browser request (None if the session or the user is gone)."""
        name = self.sessions.user(request.cookies.get(SESSION_COOKIE))
        return self.users.get(name) if name else None


def users_path(cfg: ServeConfig, ws: Workspace) -> Path:
    return Path(cfg.users_file) if cfg.users_file else ws.path("users.yaml")


def build_state(cfg: ServeConfig, ws: Workspace, engine: Engine | None = None) -> ServerState:
    registry = ContractRegistry(cfg.guard.formats_dir or None)
    engine = engine or Engine.from_workspace(ws, cfg.engine, registry)
    retriever = Retriever(ws, cfg.retrieval.top_k, cfg.retrieval.max_section_chars)
    return ServerState(
        cfg=cfg,
        ws=ws,
        users=UserStore(users_path(cfg, ws)),
        sessions=Sessions(cfg.session_hours * 3600),
        registry=registry,
        engine=engine,
        assistant=Assistant(ws, engine, retriever, registry, cfg),
        training=TrainingJob(ws, cfg.train_config, interrupted=recover_interrupted_runs(ws)),
    )


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sopforge · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin-top:10vh}}
form{{display:flex;flex-direction:column;gap:.6em;width:18em}}input,button{{font-size:1em;padding:.4em}}
.err{{color:#b00020}}</style></head>
<body><form method="post" action="/login">
<h1>sopforge</h1><p>Sign in to ask about company procedures.</p>
{error}
<label>User <input name="username" id="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Sign in</button>
</form></body></html>"""


def login_page(error: str = "") -> HTMLResponse:
    err = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(_LOGIN_PAGE.format(error=err), status_code=401 if error else 200)


class LoginRedirect:
    """ASGI middleware: a browser opening the UI without a session is sent to /login (instead of
    Gradio's bare 401). Pure ASGI so streamed responses pass through untouched."""

    def __init__(self, app: Any, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] in (UI_PATH, UI_PATH + "/")
            and scope["method"] == "GET"
        ):
            request = Request(scope)
            if self.state.session_user(request) is None:
                await RedirectResponse("/login", status_code=303)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_login_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/", include_in_schema=False)
    def root(request: Request) -> Response:
        return RedirectResponse(
            UI_PATH + "/" if state.session_user(request) else "/login", status_code=303
        )

    @app.get("/login", include_in_schema=False)
    def login_form() -> Response:
        return login_page()

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        user = state.users.authenticate(
            str(form.get("username", "")), str(form.get("password", ""))
        )
        if user is None:
            return login_page("Wrong user name or password.")
        response = RedirectResponse(UI_PATH + "/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            state.sessions.create(user.name),
            max_age=int(state.cfg.session_hours * 3600),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    @app.get("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        state.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "model": state.engine.model_id}


def build_app(cfg: ServeConfig, workspace: Workspace, *, engine: Engine | None = None) -> FastAPI:
    """The whole server. `engine` lets a caller share an already loaded model (tests, benchmarks)."""
    import gradio as gr

    from sopforge.serve.api import build_router
    from sopforge.serve.ui import build_ui

    state = build_state(cfg, workspace, engine)
    app = FastAPI(title="sopforge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sopforge = state
    add_login_routes(app, state)
    app.include_router(build_router(state))
    app.add_middleware(LoginRedirect, state=state)

    def gradio_user(request: Request) -> str | None:
        user = state.session_user(request)
        return user.name if user else None

    ui = build_ui(state)
    app.state.sopforge_ui = ui
    return gr.mount_gradio_app(
        app,
        ui,
        path=UI_PATH,
        auth_dependency=gradio_user,
        server_name=cfg.host,
        server_port=cfg.port,
        footer_links=[],
        run_history=False,
        max_file_size=int(cfg.max_upload_mb * 2**20),
        show_error=True,
    )


def serve(cfg: ServeConfig, workspace: Workspace) -> None:
    """Run the server until interrupted (what `sopforge serve` calls)."""
    import uvicorn

    app = build_app(cfg, workspace)
    log.info(
        "sopforge serving %s on http://%s:%d/",
        app.state.sopforge.engine.model_id,
        cfg.host,
        cfg.port,
    )
    from sopforge.serve.engine import RegistryWatcher

    watcher = RegistryWatcher(app.state.sopforge.engine, workspace).start()
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
    finally:
        watcher.stop()
