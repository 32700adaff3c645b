"""The OpenAI-compatible API, driven by the official `openai` client against a real uvicorn server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from sopforge.contracts import count_bullets, default_registry
from sopforge.serve.auth import revoke_key
from sopforge.serve.config import EngineConfig
from sopforge.serve.engine import Engine, OpenAIBackend

QUESTION = [{"role": "user", "content": "I lost my badge, what do I do?"}]


def client(server: Any, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key or server.key, max_retries=0)


def test_chat_completion_streamed_and_not_with_sources_and_audit(live_server: Any) -> None:
    c = client(live_server)
    assert [m.id for m in c.models.list().data] == ["sopforge", "talking-tiny"]

    full = c.chat.completions.create(model="sopforge", messages=QUESTION)
    text = full.choices[0].message.content
    extra = full.model_extra["sopforge"]
    assert text.startswith("- Report the lost badge")
    assert extra["valid"] is True and extra["format"] == "plain"
    assert extra["sources"][0]["section"] == "Lost badge"
    assert extra["citations"] == [extra["sources"][0]["citation"]]  # the model cited a real section

    chunks = list(c.chat.completions.create(model="sopforge", messages=QUESTION, stream=True))
    deltas = [
        ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content
    ]
    assert len(deltas) > 3 and "".join(deltas) == text
    assert chunks[-1].choices[0].finish_reason == "stop"

    rows = live_server.ws.db.execute(
        "SELECT user, channel, model_id, question, valid, citations FROM audit"
    ).fetchall()
    assert len(rows) == 2
    assert {(r["user"], r["channel"], r["model_id"], r["valid"]) for r in rows} == {
        ("eve", "api", "talking-tiny", 1)
    }
    cited = json.loads(rows[0]["citations"])
    assert any(c["cited"] and c["valid"] and c["retrieved"] for c in cited)


def test_sse_wire_format_ends_with_done(live_server: Any) -> None:
    body = {"model": "sopforge", "messages": QUESTION, "stream": True}
    headers = {"Authorization": f"Bearer {live_server.key}"}
    with httpx.stream(
        "POST", f"{live_server.url}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_missing_revoked_or_wrong_key_is_401(live_server: Any) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(live_server, "sk-sop-nope-nope").models.list()
    r = httpx.post(
        f"{live_server.url}/v1/chat/completions", json={"model": "sopforge", "messages": QUESTION}
    )
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    key_id = live_server.key.split("-")[2]
    revoke_key(live_server.ws, key_id)
    with pytest.raises(openai.AuthenticationError):
        client(live_server).models.list()


def test_bad_requests_get_clear_status_codes(live_server: Any) -> None:
    url, headers = (
        f"{live_server.url}/v1/chat/completions",
        {"Authorization": f"Bearer {live_server.key}"},
    )
    r = httpx.post(
        url, content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(live_server).chat.completions.create(model="gpt-9", messages=QUESTION)
    big = {"model": "sopforge", "messages": [{"role": "user", "content": "x" * 1_200_000}]}
    assert httpx.post(url, json=big, headers=headers).status_code == 413
    r = httpx.post(url, json={"model": "sopforge", "messages": []}, headers=headers)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="unknown contract"):
        client(live_server).chat.completions.create(
            model="sopforge", messages=QUESTION, extra_body={"format": "haiku"}
        )


def test_formats_map_to_the_guard(live_server: Any) -> None:
    c = client(live_server)
    r = c.chat.completions.create(
        model="sopforge", messages=QUESTION, extra_body={"format": "bullets:3"}
    )
    extra = r.model_extra["sopforge"]
    assert extra["format"] == "bullets:3" and extra["valid"] is True
    assert count_bullets(r.choices[0].message.content) == 3

    try:
        r = c.chat.completions.create(
            model="sopforge", messages=QUESTION, response_format={"type": "json_object"}
        )
    except openai.UnprocessableEntityError as e:  # never a 200 whose content is not the JSON
        assert e.status_code == 422 and "could not produce a valid json:procedure" in str(e)
    else:
        extra = r.model_extra["sopforge"]
        assert extra["format"] == "json:procedure" and extra["valid"]
        jsonschema.validate(
            json.loads(r.choices[0].message.content),
            default_registry().get("json:procedure").schema,
        )

    implied = c.chat.completions.create(
        model="sopforge", messages=[{"role": "user", "content": "lost badge in 2 bullets"}]
    )
    assert implied.model_extra["sopforge"]["format"] == "bullets:2"


def test_openai_backend_talks_to_an_openai_compatible_server(live_server: Any) -> None:
    """The engine's `openai` backend, pointed at this server's /v1 (as it would be at vLLM)."""
    cfg = EngineConfig(
        backend="openai", openai_base_url=f"{live_server.url}/v1", openai_model="sopforge"
    )
    engine = Engine(OpenAIBackend(cfg, api_key=live_server.key), cfg)
    deltas = list(engine.generate(QUESTION))
    assert len(deltas) > 1 and "".join(deltas).startswith("- Report the lost badge")
    assert engine.generate(QUESTION, stream=False) == "".join(deltas)


class ProseBackend:
    """A model that answers every question with a sentence, whatever format is asked."""

    model_id = "prose"

    def stream(self, messages: Any, contract: Any, max_new_tokens: int, citations: Any = ()) -> Any:
        yield "Here is the checklist you asked for, in words."


def test_json_that_fails_its_schema_is_an_error_status_never_a_200(live_server: Any) -> None:
    """A client that asks for JSON gets JSON valid under the schema or a 422 it can handle."""
    engine = live_server.state.engine
    engine.swap(ProseBackend())  # the fixture swaps the original back afterwards
    c = client(live_server)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        c.chat.completions.create(
            model="sopforge", messages=QUESTION, response_format={"type": "json_object"}
        )
    assert err.value.status_code == 422
    assert err.value.body["code"] == "format_not_met"
    assert "could not produce a valid json:procedure" in err.value.body["message"]
    stream = c.chat.completions.create(
        model="sopforge", messages=QUESTION, response_format={"type": "json_object"}, stream=True
    )
    with pytest.raises(openai.APIError, match="could not produce a valid json:procedure"):
        contents = [ch.choices[0].delta.content for ch in stream if ch.choices]
        assert not any(contents[1:])  # nothing but the opening role chunk reaches the client
    # a bullets answer that fails is still a 200 that says so (its content is text anyway)
    r = c.chat.completions.create(
        model="sopforge", messages=QUESTION, extra_body={"format": "bullets:3"}
    )
    assert r.model_extra["sopforge"]["valid"] is False
    assert r.choices[0].message.content.startswith("The model could not produce a valid")
