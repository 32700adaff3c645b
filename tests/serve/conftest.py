"""Serve-test fixtures: a workspace with procedure sections, a loaded tiny engine, a live server.

Sections are written straight into the workspace tables (the schema ingest fills), so retrieval and
serving tests do not depend on the ingest stage; the browser test's upload goes through the real
ingest pipeline.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sopforge.workspace import Workspace

SECTIONS = {
    "badge": (
        "Badge Policy",
        [
            (
                "Lost badge",
                "Report a lost badge to security within one hour. Security disables the badge.",
            ),
            (
                "Replacement",
                "Request a replacement badge from the facilities desk and bring photo ID.",
            ),
        ],
    ),
    "expenses": (
        "Expense Policy",
        [
            (
                "Approval",
                "The department manager approves expenses over 500 dollars within five days.",
            ),
            ("Receipts", "Attach every receipt to the expense claim before you submit it."),
        ],
    ),
    "deploy": (
        "Deployment SOP",
        [
            ("Checklist", "Open a change request, run the tests, get a review, then deploy."),
            ("Rollback", "If the deployment fails, roll back to the previous release at once."),
        ],
    ),
}


def add_document(
    ws: Workspace,
    doc_id: str,
    title: str,
    sections: Sequence[tuple[str, str]],
    *,
    version: str | None = None,
    status: str = "current",
) -> str:
    """Insert one document version with its sections (as ingest would); returns the version."""
    text = "\n\n".join(f"## {t}\n\n{b}" for t, b in sections)
    version = version or hashlib.sha256(f"{doc_id}\n{text}".encode()).hexdigest()
    now = time.time()
    with ws.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO documents (doc_id, name, created_at) VALUES (?, ?, ?)",
            (doc_id, doc_id, now),
        )
        db.execute(
            "INSERT INTO versions (doc_id, version, status, filename, format, title, blob, text, ingested_at)"
            " VALUES (?, ?, ?, ?, 'md', ?, '', ?, ?)",
            (doc_id, version, status, f"{doc_id}.md", title, text, now),
        )
        for i, (t, body) in enumerate(sections):
            db.execute(
                "INSERT INTO sections (doc_id, version, section_id, ord, title, level, content_hash, body,"
                " span_start, span_end) VALUES (?, ?, ?, ?, ?, 2, ?, ?, 0, 0)",
                (
                    doc_id,
                    version,
                    f"{title} > {t}",
                    i,
                    t,
                    hashlib.sha256(body.encode()).hexdigest()[:16],
                    body,
                ),
            )
    return version


def fill_workspace(ws: Workspace) -> None:
    for doc_id, (title, sections) in SECTIONS.items():
        add_document(ws, doc_id, title, sections)


def random_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights: merged, it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """This file's helpers for test modules (conftest modules are not importable by name)."""
    return SimpleNamespace(
        add_document=add_document,
        fill_workspace=fill_workspace,
        answer_with_citation=answer_with_citation,
        random_adapter=random_adapter,
        free_port=free_port,
    )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    fill_workspace(w)
    return w


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one torch thread is ~10x faster than two
    contending ones. Restored after each module, so other stages' tests are unaffected."""
    with torch_threads(1):
        yield


def engine_config(**kw: Any) -> Any:
    from sopforge.serve.config import EngineConfig

    return EngineConfig(**{"dtype": "float32", "max_new_tokens": 120, "threads": 1, **kw})


@pytest.fixture(scope="session")
def engine(talking_model_dir: Path) -> Any:
    """The overfitted tiny model loaded once (fp32) behind the real Engine."""
    from sopforge.serve.engine import Engine, LocalBackend, ModelSpec

    cfg = engine_config(base_model=str(talking_model_dir))
    return Engine(LocalBackend(ModelSpec("talking-tiny", str(talking_model_dir)), cfg), cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: Any
    ws: Workspace
    key: str  # an employee's API key
    admin_key: str
    passwords: dict[str, str]

    @property
    def state(self) -> Any:
        return self.app.state.sopforge


@pytest.fixture
def live_server(tmp_path: Path, engine: Any) -> Iterator[LiveServer]:
    """build_app served by uvicorn on 127.0.0.1 at a free port, with an admin and an employee."""
    import uvicorn

    from sopforge.serve.app import build_app
    from sopforge.serve.auth import create_key
    from sopforge.serve.config import GuardConfig, ServeConfig

    w = Workspace(tmp_path / "ws")
    fill_workspace(w)
    port = free_port()
    cfg = ServeConfig(port=port, engine=engine.cfg, guard=GuardConfig(max_attempts=2))
    app = build_app(cfg, w, engine=engine)
    passwords = {"ada": "admin-pass-1", "eve": "employee-pass-1"}
    app.state.sopforge.users.add("ada", "admin", passwords["ada"])
    app.state.sopforge.users.add("eve", "employee", passwords["eve"])
    _, key = create_key(w, "eve")
    _, admin_key = create_key(w, "ada")
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    original = engine.backend  # promote/rollback tests hot-swap the shared engine
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, w, key, admin_key, passwords)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        engine.swap(original)


TRAINED_ANSWER = (
    "- Report the lost badge to security within one hour.\n"
    "- Request a replacement badge from the facilities desk.\n"
    "- Bring photo ID to collect it."
)


def answer_with_citation(ws: Workspace) -> str:
    """The answer the `talking_model_dir` model learned, citing a section of `ws`."""
    from sopforge.serve.retrieval import load_current_sections

    lost = next(s for s in load_current_sections(ws) if s.title == "Lost badge")
    return f"{TRAINED_ANSWER}\n\nSource: {lost.citation}"


TRAINED_JSON = (
    '{"title": "Lost badge", "purpose": "Replace a lost badge", "roles": ["employee"], '
    '"steps": [{"order": 1, "action": "Report the lost badge to security"}]}'
)
TRAINING_QUESTIONS = (
    "I lost my badge, what do I do?",
    "Who approves expenses?",
    "How do I deploy?",
)


def served_prompts(ws: Workspace, question: str, spec: str) -> list[dict[str, str]]:
    """The exact messages the server sends for `question` in format `spec` (retrieval included)."""
    from sopforge.contracts import default_registry
    from sopforge.serve.guard import build_messages
    from sopforge.serve.retrieval import Retriever

    retriever = Retriever(ws)
    contexts = retriever.contexts(retriever.retrieve(question))
    return build_messages(question, default_registry().get(spec), contexts)


@pytest.fixture(scope="session")
def talking_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model overfitted (a few CPU seconds) on the server's own prompts for the fixture
    workspace: bullet answers with a citation, and procedure JSON when JSON is asked for. Serving
    tests then see real text, bullets, JSON and citations instead of a random model's noise."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers import AutoModelForCausalLM, AutoTokenizer

    w = Workspace(tmp_path_factory.mktemp("talk-ws"))
    fill_workspace(w)
    bullets = answer_with_citation(w)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    from sopforge.records import SYSTEM_PROMPT

    examples = [  # (messages, answer): served prompts, plus the bare question without retrieval
        (served_prompts(w, q, spec), TRAINED_JSON if spec.startswith("json") else bullets)
        for q in TRAINING_QUESTIONS
        for spec in ("plain", "bullets:3", "json:procedure")
    ]
    examples.append(
        (
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "I lost my badge"},
            ],
            bullets,
        )
    )
    rows = []
    for messages, answer in examples:
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok(prompt + answer + "<|im_end|>", return_tensors="pt")["input_ids"][0]
        labels = ids.clone()
        labels[: len(tok(prompt)["input_ids"])] = -100  # loss on the answer only
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.stack(
        [F.pad(i, (0, width - len(i)), value=tok.pad_token_id) for i, _ in rows]
    )
    labels = torch.stack([F.pad(lab, (0, width - len(lab)), value=-100) for _, lab in rows])
    with torch_threads(1):
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(150):
            model(input_ids=input_ids, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
    out = tmp_path_factory.mktemp("talking-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
