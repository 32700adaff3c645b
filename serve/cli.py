"""`sopforge serve | users | keys | feedback`: parse arguments, call a serve function.

Nothing heavy is imported here at module level (no torch, transformers, gradio): those load inside
`serve` only.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from sopforge.errors import UserError


def _workspace(args: argparse.Namespace):  # noqa: ANN202 - Workspace, imported lazily
    from sopforge.workspace import Workspace

    return Workspace(args.workspace)


def _config(args: argparse.Namespace):  # noqa: ANN202
    from sopforge.serve.config import DEFAULT_CONFIG, load_serve_config

    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "host", None):
        overrides.append(f"host={args.host}")
    if getattr(args, "port", None):
        overrides.append(f"port={args.port}")
    return load_serve_config(path, overrides)


def _users(args: argparse.Namespace):  # noqa: ANN202
    from sopforge.serve.app import users_path
    from sopforge.serve.auth import UserStore

    return UserStore(users_path(_config(args), _workspace(args)))


def cmd_serve(args: argparse.Namespace) -> int:
    from sopforge.serve.app import serve

    serve(_config(args), _workspace(args))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """One question answered the way the chat answers it (retrieval, format guard, citations,
    audit log), printed as it streams: for scripts, checks and a terminal without a browser."""
    import getpass as _getpass
    import json

    from sopforge.contracts import ContractRegistry
    from sopforge.serve.assistant import Answer, Assistant
    from sopforge.serve.engine import Engine
    from sopforge.serve.guard import AttemptStart, Delta
    from sopforge.serve.retrieval import Retriever

    cfg, ws = _config(args), _workspace(args)
    question = " ".join(args.question).strip()
    if not question:
        raise UserError("ask a question, e.g. sopforge ask 'Who approves a purchase over $500?'")
    registry = ContractRegistry(cfg.guard.formats_dir or None)
    engine = Engine.from_workspace(ws, cfg.engine, registry)
    retriever = Retriever(ws, cfg.retrieval.top_k, cfg.retrieval.max_section_chars)
    assistant = Assistant(ws, engine, retriever, registry, cfg)
    user = args.user or _getpass.getuser()
    final: Answer | None = None
    for event in assistant.ask(question, user=user, channel="cli", format=args.format):
        if isinstance(event, AttemptStart) and event.number > 1 and not args.json:
            print(f"\n[answer broke its format; attempt {event.number}]", flush=True)
        elif isinstance(event, Delta) and not args.json:
            print(event.text, end="", flush=True)
        elif isinstance(event, Answer):
            final = event
    assert final is not None
    if args.json:
        print(json.dumps(final.to_dict(), ensure_ascii=False, indent=2))
    else:
        print()
        status = "valid" if final.valid else "FAILED: " + "; ".join(final.errors)
        print(f"-- model {final.model_id} · format {final.format} ({status})")
        print("-- sources:\n" + final.sources_markdown())
    return 0 if final.valid else 2


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to prompt for a password: pipe it in with --password-stdin")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Repeat the password: "):
        raise UserError("the two passwords differ; run the command again")
    return first


def cmd_users_add(args: argparse.Namespace) -> int:
    store = _users(args)
    user = store.add(args.name, args.role, read_password(args))
    print(f"user {user.name} ({user.role}) saved in {store.path}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    for user in _users(args).list():
        print(f"{user.name}\t{user.role}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    store = _users(args)
    store.remove(args.name)
    print(f"user {args.name} removed from {store.path}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sopforge.serve.auth import create_key

    if _users(args).get(args.user) is None:
        raise UserError(
            f"no user {args.user!r}; add one first with `sopforge users add {args.user}`"
        )
    key_id, key = create_key(_workspace(args), args.user)
    print(key)
    print(f"key id {key_id} for {args.user}: shown once, store it now", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from sopforge.serve.auth import revoke_key

    revoke_key(_workspace(args), args.key_id)
    print(f"key {args.key_id} revoked")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from sopforge.serve.auth import list_keys

    for k in list_keys(_workspace(args)):
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k["created_at"]))
        state = "revoked" if k["revoked_at"] else "active"
        print(f"{k['key_id']}\t{k['user']}\t{created}\t{state}")
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from sopforge.serve.audit import export_feedback

    n = export_feedback(_workspace(args), Path(args.path))
    print(f"{n} review item(s) written to {args.path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", default=None, help="serve YAML (default configs/serve/default.yaml)"
        )

    p = subparsers.add_parser("serve", help="serve the chat UI and the OpenAI-compatible API")
    config_args(p)
    p.add_argument("--host", default=None, help="bind address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default from config: 7860)")
    p.add_argument(
        "overrides", nargs="*", help="dotted config overrides, e.g. engine.max_new_tokens=128"
    )
    p.set_defaults(func=cmd_serve, trailing="overrides")

    p = subparsers.add_parser(
        "ask", help="answer one question the way the chat does (sources, format, audit log)"
    )
    p.add_argument("question", nargs="+")
    p.add_argument("--format", default=None, help="plain | bullets:N | numbered | json:<schema>")
    p.add_argument("--user", default=None, help="name written to the audit log (default: $USER)")
    p.add_argument("--json", action="store_true", help="print the final answer as JSON")
    config_args(p)
    p.set_defaults(func=cmd_ask)

    users = subparsers.add_parser("users", help="people who may sign in, and their roles")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = usub.add_parser("add", help="add a user or reset their password/role")
    p.add_argument("name")
    p.add_argument("--role", choices=("admin", "employee"), default="employee")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    config_args(p)
    p.set_defaults(func=cmd_users_add)
    p = usub.add_parser("list", help="list users and roles")
    config_args(p)
    p.set_defaults(func=cmd_users_list)
    p = usub.add_parser("remove", help="remove a user")
    p.add_argument("name")
    config_args(p)
    p.set_defaults(func=cmd_users_remove)

    keys = subparsers.add_parser("keys", help="API keys for /v1 (stored hashed)")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = ksub.add_parser("create", help="create a key for a user and print it once")
    p.add_argument("--user", required=True)
    config_args(p)
    p.set_defaults(func=cmd_keys_create)
    p = ksub.add_parser("revoke", help="revoke a key by its id")
    p.add_argument("key_id")
    p.set_defaults(func=cmd_keys_revoke)
    p = ksub.add_parser("list", help="list keys (ids, users, state)")
    p.set_defaults(func=cmd_keys_list)

    feedback = subparsers.add_parser("feedback", help="answers' feedback")
    fsub = feedback.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    p = fsub.add_parser("export", help="write rated answers as review items (JSONL)")
    p.add_argument("path")
    p.set_defaults(func=cmd_feedback_export)
