"""The teacher generator against a real OpenAI-compatible HTTP server started by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sopforge.ingest.tasks import TaskConfig, TeacherConfig, generate_section_pairs
from sopforge.ingest.tasks.teacher import OpenAIBackend, ReplyError, TeacherError, parse_pairs
from sopforge.records import answer_of

THREE = "- Report the loss within one hour.\n- Fill in the form.\n- Collect the new badge."
TWO = "- Report the loss within one hour.\n- Collect the new badge."


class ScriptedChat:
    """A tiny /v1/chat/completions server answering from a script, recording each request."""

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.sent: list[str] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                script.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), **body}
                )
                content = script.replies.pop(0) if script.replies else "[]"
                script.sent.append(content)
                payload = json.dumps(
                    {
                        "id": f"chatcmpl-{len(script.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def chat_server() -> Iterator[ScriptedChat]:
    servers: list[ScriptedChat] = []

    def start(replies: list[str]) -> ScriptedChat:
        s = ScriptedChat(replies)
        s.thread.start()
        servers.append(s)
        return s

    yield start  # type: ignore[misc]
    for s in servers:
        s.server.shutdown()
        s.server.server_close()
        s.thread.join(timeout=5)


def _pairs(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"instruction": i, "answer": a} for i, a in pairs])


def _cfg(base_url: str, **teacher: Any) -> TaskConfig:
    return TaskConfig(
        tasks=["summary"],
        summary_bullets=[3],
        generator="teacher",
        teacher=TeacherConfig(
            base_url=base_url, model="big-teacher", api_key_env="SOPFORGE_TEST_KEY", **teacher
        ),
    )


def test_invalid_answer_is_retried_with_the_error_then_kept(
    chat_server, badge_section, registry, monkeypatch
):
    monkeypatch.setenv("SOPFORGE_TEST_KEY", "sk-test")
    server = chat_server(
        [
            _pairs(("Summarize badge replacement in 3 bullets.", TWO)),
            _pairs(("Summarize badge replacement in 3 bullets.", THREE)),
        ]
    )
    cfg = _cfg(server.base_url, pairs_per_task=1)
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)

    assert len(server.requests) == 2
    first, retry = server.requests
    assert first["path"] == "/v1/chat/completions" and first["model"] == "big-teacher"
    assert first["auth"] == "Bearer sk-test"
    assert (
        "Replacing a lost badge" in first["messages"][1]["content"]
    )  # the section is in the prompt
    # the follow-up carries the first reply and the validator's exact error
    assert retry["messages"][2] == {"role": "assistant", "content": server.sent[0]}
    assert "expected exactly 3 bullets, found 2" in retry["messages"][3]["content"]

    assert result.rejects == []
    (rec,) = result.records
    assert answer_of(rec) == THREE
    assert rec["generator"] == "teacher:big-teacher"
    assert rec["contract"] == "bullets:3" and rec["task"] == "summary"
    assert rec["messages"][1]["content"] == (
        "Summarize badge replacement in 3 bullets. " + registry.get("bullets:3").prompt_hint()
    )
    assert rec["provenance"]["section_id"] == badge_section.section_id


def test_persistently_invalid_answer_is_rejected_and_counted(chat_server, badge_section, registry):
    bad = _pairs(("Summarize it in 3 bullets.", TWO))
    server = chat_server(
        [
            _pairs(("Give me 3 key points.", THREE), ("Summarize it in 3 bullets.", TWO)),
            bad,
            bad,
        ]
    )
    cfg = _cfg(server.base_url, pairs_per_task=2, max_retries=2)
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)

    assert len(server.requests) == 3  # first try + max_retries follow-ups
    assert [answer_of(r) for r in result.records] == [THREE]
    assert len(result.rejects) == 1
    (rej,) = result.rejects
    assert (rej.task, rej.contract) == ("summary", "bullets:3")
    assert (
        rej.reason == "teacher output invalid after 2 retries: expected exactly 3 bullets, found 2"
    )
    # only the broken pair is sent back, with its instruction named
    assert "'Summarize it in 3 bullets.'" in server.requests[1]["messages"][-1]["content"]
    assert "Give me 3 key points" not in server.requests[1]["messages"][-1]["content"]


def test_unparseable_reply_is_retried_then_rejected(chat_server, badge_section, registry):
    server = chat_server(["Sure! Here are some pairs: ...", "still not json"])
    cfg = _cfg(server.base_url, max_retries=1)
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)
    assert result.records == []
    assert len(server.requests) == 2
    assert "the reply is not JSON" in server.requests[1]["messages"][-1]["content"]
    assert [r.reason.split(":")[0] for r in result.rejects] == [
        "teacher output invalid after 1 retries"
    ]


def test_json_task_prompt_carries_the_schema(chat_server, badge_section, registry):
    obj = {
        "title": "Replacing a lost badge",
        "purpose": "Replace lost badges quickly.",
        "roles": ["Security Officer"],
        "steps": [{"order": 1, "action": "Report the loss."}],
    }
    server = chat_server([_pairs(("Give me the badge procedure as JSON.", json.dumps(obj)))])
    cfg = TaskConfig(
        tasks=["json"],
        generator="teacher",
        teacher=TeacherConfig(base_url=server.base_url, model="t", pairs_per_task=1),
    )
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)
    assert '"additionalProperties":false' in server.requests[0]["messages"][1]["content"]
    (rec,) = result.records
    assert rec["contract"] == "json:procedure" and json.loads(answer_of(rec)) == obj


def test_unreachable_endpoint_is_a_clear_user_error(badge_section, registry):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(
        TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1", model="t", timeout=5)
    )
    with pytest.raises(TeacherError, match="unreachable"):
        backend.chat([{"role": "user", "content": "hi"}])


def test_parse_pairs_accepts_fenced_json_and_rejects_wrong_shapes():
    fenced = "```json\n" + _pairs(("q", "a")) + "\n```"
    assert parse_pairs(fenced) == [{"instruction": "q", "answer": "a"}]
    with pytest.raises(ReplyError, match="item 1"):
        parse_pairs('[{"question": "q"}]')
    with pytest.raises(ReplyError, match="non-empty JSON list"):
        parse_pairs("[]")


def test_local_hf_teacher_output_goes_through_the_same_validators(
    tiny_model_dir, badge_section, registry
):
    """A local transformers model as teacher: the tiny random model writes no usable JSON, so its
    output is retried with the error and then rejected and counted, never written."""
    cfg = TaskConfig(
        tasks=["steps"],
        generator="teacher",
        teacher=TeacherConfig(
            backend="hf",
            model=str(tiny_model_dir),
            max_retries=1,
            max_new_tokens=8,
            temperature=0.0,
        ),
    )
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)
    assert result.records == []
    (rej,) = result.rejects
    assert (rej.task, rej.contract) == ("steps", "numbered")
    assert rej.reason.startswith("teacher output invalid after 1 retries: the reply")
