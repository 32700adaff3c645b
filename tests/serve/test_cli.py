"""`sopforge users | keys | feedback` and the stores behind them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sopforge.cli import main
from sopforge.errors import UserError
from sopforge.serve.audit import AuditEntry, add_feedback, log_answer
from sopforge.serve.auth import UserStore, hash_password, key_user, verify_password
from sopforge.workspace import Workspace


def run(ws: Path, *argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["-w", str(ws), *argv])


def test_passwords_are_salted_scrypt_hashes() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$") and "correct" not in a
    assert verify_password("correct horse", a) and not verify_password("wrong horse", a)
    assert not verify_password("x", "garbage")


def test_users_add_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    assert (
        run(
            ws,
            "users",
            "add",
            "ada",
            "--role",
            "admin",
            "--password-stdin",
            stdin="s3cret-pass\n",
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert (
        run(
            ws,
            "users",
            "add",
            "eve",
            "--password-stdin",
            stdin="another-pass\n",
            monkeypatch=monkeypatch,
        )
        == 0
    )
    users_file = ws / "users.yaml"
    data = yaml.safe_load(users_file.read_text())
    assert data["users"]["ada"]["role"] == "admin" and data["users"]["eve"]["role"] == "employee"
    assert "s3cret-pass" not in users_file.read_text()
    assert users_file.stat().st_mode & 0o077 == 0  # only the owner can read the hashes
    store = UserStore(users_file)
    assert store.authenticate("ada", "s3cret-pass").is_admin
    assert store.authenticate("ada", "wrong") is None
    capsys.readouterr()
    run(ws, "users", "list", monkeypatch=monkeypatch)
    assert capsys.readouterr().out.splitlines() == ["ada\tadmin", "eve\temployee"]
    assert run(ws, "users", "remove", "eve", monkeypatch=monkeypatch) == 0
    assert store.get("eve") is None
    assert (
        run(ws, "users", "remove", "eve", monkeypatch=monkeypatch) == 1
    )  # clear error, no traceback
    assert (
        run(ws, "users", "add", "bob", "--password-stdin", stdin="short\n", monkeypatch=monkeypatch)
        == 1
    )


def test_keys_create_list_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    run(
        ws,
        "users",
        "add",
        "eve",
        "--password-stdin",
        stdin="another-pass\n",
        monkeypatch=monkeypatch,
    )
    assert run(ws, "keys", "create", "--user", "nobody", monkeypatch=monkeypatch) == 1
    capsys.readouterr()
    assert run(ws, "keys", "create", "--user", "eve", monkeypatch=monkeypatch) == 0
    key = capsys.readouterr().out.strip()
    workspace = Workspace(ws)
    assert key_user(workspace, key) == "eve"
    stored = workspace.db.execute("SELECT key_id, key_hash FROM api_keys").fetchone()
    # only a hash is kept (the secret is all after "sk-sop-<id>-"; it may itself hold dashes)
    secret = key.split("-", 3)[3]
    assert len(secret) > 16 and secret not in stored["key_hash"]
    run(ws, "keys", "list", monkeypatch=monkeypatch)
    listing = capsys.readouterr().out
    assert stored["key_id"] in listing and "active" in listing and key not in listing
    assert run(ws, "keys", "revoke", stored["key_id"], monkeypatch=monkeypatch) == 0
    assert key_user(workspace, key) is None
    assert run(ws, "keys", "revoke", stored["key_id"], monkeypatch=monkeypatch) == 1


def test_feedback_export_writes_review_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace(tmp_path / "ws")
    cites = [
        {"citation": "[Doc § Sec, v12345678]", "cited": True, "valid": True, "retrieved": True}
    ]
    first = log_answer(
        ws, AuditEntry("eve", "web", "m1", "What now?", "- a\n- b\n- c", "bullets:3", True, cites)
    )
    second = log_answer(
        ws, AuditEntry("eve", "api", "m1", "As JSON?", "{", "json:procedure", False, [])
    )
    add_feedback(ws, first, "eve", 1)
    add_feedback(ws, second, "eve", -1, "broken JSON")
    with pytest.raises(UserError):
        add_feedback(ws, first, "mallory", 1)  # not their answer
    with pytest.raises(UserError):
        add_feedback(ws, first, "eve", 5)
    out = tmp_path / "review.jsonl"
    assert run(tmp_path / "ws", "feedback", "export", str(out), monkeypatch=monkeypatch) == 0
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(i["audit_id"], i["rating"], i["valid"]) for i in items] == [
        (first, 1, True),
        (second, -1, False),
    ]
    assert items[0]["kind"] == "review" and items[0]["question"] == "What now?"
    assert items[0]["citations"] == cites and items[1]["comment"] == "broken JSON"


def test_cli_imports_nothing_heavy() -> None:
    code = "import sys; from sopforge.cli import build_parser; build_parser(); print(sorted(m for m in ('torch', 'gradio', 'transformers') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.integration
def test_sopforge_serve_starts_on_loopback_and_stops(tmp_path: Path, tiny_model_dir: Path) -> None:
    import os
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "sopforge.cli",
        "-w",
        str(tmp_path / "ws"),
        "serve",
        "--port",
        str(port),
    ]
    cmd += [f"engine.base_model={tiny_model_dir}", "engine.dtype=float32", "engine.threads=1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "sopforge serve did not come up"
                time.sleep(0.5)
        assert health == {"status": "ok", "model": f"base:{tiny_model_dir.name}"}
        assert listening_addresses(port) in (
            [],
            ["127.0.0.1"],
        )  # bound to loopback only (when the OS lets us see)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15)
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in output


def listening_addresses(port: int) -> list[str]:
    """Local addresses listening on `port`, from /proc/net/tcp (Linux); [] elsewhere."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        local, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
            out.append(".".join(str(int(host_hex[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def test_shipped_serve_config_loads_and_matches_the_defaults(tmp_path: Path) -> None:
    from sopforge.config import ConfigError
    from sopforge.serve.config import DEFAULT_CONFIG, ServeConfig, load_serve_config

    assert load_serve_config(DEFAULT_CONFIG) == ServeConfig()
    cfg = load_serve_config(DEFAULT_CONFIG, ["port=8080", "engine.max_new_tokens=64"])
    assert (cfg.port, cfg.engine.max_new_tokens, cfg.host) == (8080, 64, "127.0.0.1")
    bad = tmp_path / "serve.yaml"
    bad.write_text("engine:\n  backnd: local\n")
    with pytest.raises(ConfigError, match="engine.backnd"):
        load_serve_config(bad)


def test_ask_answers_like_the_chat_and_logs_it(
    ws: Workspace,
    talking_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    helpers,
) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"engine": {"base_model": str(talking_model_dir), "dtype": "float32", "threads": 1}}
        )
    )
    argv = ["-w", str(ws.root), "ask", "I lost my badge, what do I do?", "--config", str(cfg)]
    assert main([*argv, "--format", "bullets:3", "--user", "ada"]) == 0
    out = capsys.readouterr().out
    assert helpers.answer_with_citation(ws).splitlines()[0] in out
    assert "format bullets:3 (valid)" in out and "Lost badge" in out
    row = ws.db.execute("SELECT user, channel, citations FROM audit ORDER BY id DESC").fetchone()
    assert (row["user"], row["channel"]) == ("ada", "cli") and "Lost badge" in row["citations"]

    assert main([*argv, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["valid"] is True and answer["model"]

    assert main(["-w", str(ws.root), "ask", "  ", "--config", str(cfg)]) == 1
    assert "ask a question" in capsys.readouterr().err
