"""Rollback on a running server: `sopforge models rollback`, run in another process, puts the
previous model back in service within seconds, while a chat streaming at that moment finishes, whole,
on the model it started with.

The server is wired as `sopforge serve` wires it (build_app + a RegistryWatcher on the engine, at
the watcher's default poll interval), in this process; the rollback is a separate process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sopforge.train import registry
from sopforge.workspace import Workspace

pytestmark = pytest.mark.integration

QUESTION = "I lost my badge, what do I do?"
# ~1 s of decoding on the tiny model with llama.cpp, one thread: long enough to be caught mid-way
LONG_ANSWER_TOKENS = 800

# `sopforge models rollback`, started ahead (interpreter and imports ready) and run on a newline, so
# the rollback lands while the chat is streaming rather than after a process start-up.
ROLLBACK_ON_ENTER = (
    "import sys; from sopforge.cli import main; import sopforge.train.cli, sopforge.train.registry, "
    "sopforge.train.generate, sopforge.train.export_gguf, sopforge.serve.config; "
    "sys.stdin.readline(); "
    "sys.exit(main(['-w', sys.argv[1], 'models', 'rollback']))"
)


def register(ws: Workspace, model_id: str, base: Path, adapter: Path) -> None:
    """A finished run and its model, as `sopforge models add` records them."""
    registry.add_adapter(ws, adapter, base, model_id)


@pytest.fixture
def server(
    ws: Workspace, tiny_model_dir: Path, tmp_path: Path, helpers
) -> Iterator[tuple[str, Workspace, str]]:
    """run-a promoted, then run-b: the server serves run-b, and a rollback returns to run-a."""
    import uvicorn

    from sopforge.serve.app import build_app
    from sopforge.serve.auth import create_key
    from sopforge.serve.config import EngineConfig, GuardConfig, ServeConfig
    from sopforge.serve.engine import Engine, RegistryWatcher

    for seed, name in enumerate(("run-a", "run-b")):
        adapter = helpers.random_adapter(tiny_model_dir, tmp_path / name / "adapter", seed)
        register(ws, name, tiny_model_dir, adapter)
        registry.promote(ws, name, force=True)
    port = free_port()
    cfg = ServeConfig(
        port=port,
        guard=GuardConfig(max_attempts=1),
        engine=EngineConfig(dtype="float32", threads=1, max_new_tokens=LONG_ANSWER_TOKENS),
    )
    engine = Engine.from_workspace(ws, cfg.engine)
    app = build_app(cfg, ws, engine=engine)
    app.state.sopforge.users.add("eve", "employee", "employee-pass-1")
    _, key = create_key(ws, "eve")
    watcher = RegistryWatcher(engine, ws).start()  # as serve() does
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", ws, key
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        watcher.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_body(stream: bool) -> dict[str, Any]:
    return {
        "model": "sopforge",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": LONG_ANSWER_TOKENS,
        "stream": stream,
    }


def stream_chat(url: str, key: str, events: list[dict[str, Any]], first: threading.Event) -> None:
    """Read one streamed chat to its end, noting each SSE event; set `first` at the first text."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=chat_body(True), headers=headers, timeout=120
    ) as r:
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            events.append({"done": True} if data == "[DONE]" else json.loads(data))
            if events[-1].get("choices") and events[-1]["choices"][0]["delta"].get("content"):
                first.set()


def test_rollback_from_another_process_swaps_within_5s_without_dropping_a_chat(
    server: tuple[str, Workspace, str],
) -> None:
    url, ws, key = server
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(url + "/healthz").json()["model"] == "run-b"
    started = time.monotonic()
    # Asked twice: the second answer, like the streamed one below, decodes after llama.cpp reuses
    # the prompt's KV cache, whose last-bit differences from a fresh prefill can flip a near-tie
    # of this random tiny model.
    for _ in range(2):
        reference = httpx.post(
            url + "/v1/chat/completions", json=chat_body(False), headers=headers, timeout=120
        ).json()
    answer_s = (time.monotonic() - started) / 2
    assert reference["model"] == "run-b"
    expected = reference["choices"][0]["message"]["content"]

    helper = subprocess.Popen(
        [sys.executable, "-c", ROLLBACK_ON_ENTER, str(ws.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    events: list[dict[str, Any]] = []
    first = threading.Event()
    chat = threading.Thread(target=stream_chat, args=(url, key, events, first), daemon=True)
    chat.start()
    assert first.wait(60), "the streamed chat produced no text"
    out, _ = helper.communicate("\n", timeout=60)  # `sopforge models rollback` runs now
    rolled_back_at, rolled_back_wall = time.monotonic(), time.time()
    assert helper.returncode == 0 and "rolled back to: run-a" in out, out

    while httpx.get(url + "/healthz").json()["model"] != "run-a":
        assert time.monotonic() - rolled_back_at < 5, "rollback not served within 5 s"
        time.sleep(0.05)
    swap_s = time.monotonic() - rolled_back_at

    chat.join(60)
    assert not chat.is_alive() and events[-1] == {"done": True}
    chunks = events[:-1]
    assert {c["model"] for c in chunks} == {"run-b"}  # the whole chat on the model it began on
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == expected  # whole, and the same answer run-b gives undisturbed
    audit_id = chunks[-1]["sopforge"]["audit_id"]
    row = ws.db.execute("SELECT model_id, at FROM audit WHERE id=?", (audit_id,)).fetchone()
    # logged (= finished) after the rollback was committed: the chat was in flight through it
    assert row["model_id"] == "run-b" and row["at"] > rolled_back_wall

    after = httpx.post(
        url + "/v1/chat/completions", json=chat_body(False), headers=headers, timeout=120
    ).json()
    assert after["model"] == "run-a"
    print(f"answer {answer_s:.2f} s; rollback served {swap_s:.2f} s after the command")
