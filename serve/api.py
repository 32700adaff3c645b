"""The OpenAI-compatible API (/v1) and the admin API (/admin/api), on the same server as the UI.

/v1 takes bearer API keys (`sopforge keys create --user NAME`). Requests go through the same
Assistant as the chat UI (retrieval, format guard, citation check, audit log). Besides the OpenAI
fields, responses carry a `sopforge` object: format, valid, errors, sources, citations, audit_id.
A format is asked for with `response_format` ({"type": "json_object"} -> json:<default schema>,
{"type": "json_schema", ...} -> that schema) or the extra field `"format": "bullets:3"`; when
neither is given the question may imply one ("... in 3 bullets").

/admin/api takes the browser session cookie or a bearer key; every endpoint checks that the user
is an admin (401 when nobody is signed in, 403 for a non-admin).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from sopforge.contracts import Contract, ContractError
from sopforge.errors import UserError
from sopforge.serve import admin
from sopforge.serve.assistant import Answer
from sopforge.serve.auth import User
from sopforge.serve.guard import Delta

if TYPE_CHECKING:
    from sopforge.serve.app import ServerState

MAX_TOKENS_CAP = 4096


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def response(self) -> JSONResponse:
        body = {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": None}
        }
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def bearer_user(state: ServerState, request: Request) -> User | None:
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    from sopforge.serve.auth import key_user

    name = key_user(state.ws, key.strip())
    return state.users.get(name) if name else None


async def read_json_limited(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 past `limit` bytes (checked while reading), 400 if not JSON."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(
            413,
            f"request body is {length} bytes, over the {limit}-byte limit",
            code="body_too_large",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(
                413, f"request body is over the {limit}-byte limit", code="body_too_large"
            )
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}", code="bad_json") from e


def message_text(content: Any, where: str) -> str:
    """OpenAI message content: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        if len(texts) == len(content):
            return "\n".join(texts)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts")


def parse_messages(messages: Any) -> tuple[str, list[tuple[str, str]]]:
    """(question = the last user message, earlier (user, assistant) turns). System messages are
    replaced by sopforge's own system prompt, the one the model was trained with."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects")
    turns: list[tuple[str, str]] = []
    pending_user: str | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "user",
            "assistant",
            "developer",
        ):
            raise ApiError(400, f"messages[{i}] needs a role of system, user or assistant")
        text = message_text(m.get("content"), f"messages[{i}]")
        if m["role"] == "user":
            pending_user = text
        elif m["role"] == "assistant" and pending_user is not None:
            turns.append((pending_user, text))
            pending_user = None
    last = messages[-1]
    if last.get("role") != "user" or not message_text(last.get("content"), "last message").strip():
        raise ApiError(400, "the last message must be a non-empty user message (the question)")
    return message_text(last["content"], "last message"), turns


def request_contract(state: ServerState, body: dict[str, Any], question: str) -> Contract:
    """`format` (a contract spec) or `response_format`, else what the question implies."""
    fmt = body.get("format")
    rf = body.get("response_format")
    try:
        if fmt is not None:
            if not isinstance(fmt, str):
                raise ApiError(400, "format must be a contract spec string, like 'bullets:3'")
            return state.assistant.contract(fmt, question)
        if isinstance(rf, dict) and rf.get("type") == "json_object":
            return state.registry.get(f"json:{state.cfg.guard.json_schema}")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            return inline_schema_contract(state, rf.get("json_schema"))
        if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
            raise ApiError(400, "response_format.type must be text, json_object or json_schema")
        return state.assistant.contract(None, question)
    except ContractError as e:
        raise ApiError(400, str(e), code="bad_format") from e


def inline_schema_contract(state: ServerState, spec: Any) -> Contract:
    if not isinstance(spec, dict) or not isinstance(spec.get("name", ""), str):
        raise ApiError(
            400, "response_format.json_schema must be an object with a name and a schema"
        )
    name = spec.get("name") or "answer"
    schema = spec.get("schema")
    if schema is None:  # a known schema by name
        return state.registry.get(f"json:{name}")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ApiError(
            400, f"response_format.json_schema.schema is not a valid JSON Schema: {e.message}"
        ) from e
    return Contract(f"json:{name}", "json", schema=schema)


def format_failure(answer: Answer) -> ApiError:
    """A JSON answer that failed its schema: an error status, never a 200 whose content a client
    would try to parse (the failed output stays in the audit log)."""
    return ApiError(
        422,
        f"{answer.text} (audit id {answer.audit_id}); ask again, or ask without response_format",
        "server_error",
        "format_not_met",
    )


def content_of(answer: Answer, contract: Contract) -> str:
    if not answer.valid:
        return answer.text  # the failure message, never the failed output as an answer
    return answer.body if contract.kind == "json" else answer.text


def completion(answer: Answer, contract: Contract) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{answer.audit_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content_of(answer, contract)},
                "finish_reason": "stop",
            }
        ],
        "sopforge": answer.to_dict(),
    }


def sse(obj: dict[str, Any] | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


def stream_chunks(
    state: ServerState,
    user: User,
    question: str,
    history: list[tuple[str, str]],
    contract: Contract,
    max_tokens: int | None,
) -> Iterator[str]:
    """SSE chat.completion.chunk events. Plain answers stream as generated; formatted answers are
    sent once the guard has judged them (a streamed attempt could not be taken back)."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    model = state.engine.model_id

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
                **extra,
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    live = contract.kind == "plain"
    streamed = False
    try:
        for event in state.assistant.ask(
            question,
            user=user.name,
            channel="api",
            format=contract,
            history=history,
            max_new_tokens=max_tokens,
        ):
            if isinstance(event, Delta) and live:
                streamed = True
                yield chunk({"content": event.text})
            elif isinstance(event, Answer):
                if contract.kind == "json" and not event.valid:
                    err = format_failure(event)
                    yield sse(
                        {"error": {"message": err.message, "type": err.type, "code": err.code}}
                    )
                    break
                if not (live and streamed and event.valid):
                    yield chunk({"content": content_of(event, contract)})
                yield chunk({}, "stop", sopforge=event.to_dict())
    except UserError as e:
        yield sse(
            {"error": {"message": str(e), "type": "server_error", "code": "generation_failed"}}
        )
    yield sse("[DONE]")


def build_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    def api_user(request: Request) -> User:
        user = bearer_user(state, request)
        if user is None:
            raise ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer sk-sop-...' (sopforge keys create --user NAME)",
                "authentication_error",
                "invalid_api_key",
            )
        return user

    def served_models() -> list[str]:
        return [state.cfg.model_alias, state.engine.model_id]

    @router.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        try:
            api_user(request)
        except ApiError as e:
            return e.response()
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "sopforge"}
            for m in served_models()
        ]
        return JSONResponse({"object": "list", "data": data})

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            user = api_user(request)
            body = await read_json_limited(request, state.cfg.max_body_bytes)
            if not isinstance(body, dict):
                raise ApiError(400, "request body must be a JSON object")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise ApiError(400, "model is required (see GET /v1/models)")
            if model not in served_models():
                raise ApiError(
                    404,
                    f"model {model!r} does not exist; served: {', '.join(served_models())}",
                    code="model_not_found",
                )
            question, history = parse_messages(body.get("messages"))
            contract = request_contract(state, body, question)
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            if max_tokens is not None and (
                isinstance(max_tokens, bool)
                or not isinstance(max_tokens, int)
                or not 1 <= max_tokens <= MAX_TOKENS_CAP
            ):
                raise ApiError(400, f"max_tokens must be an integer 1..{MAX_TOKENS_CAP}")
        except ApiError as e:
            return e.response()
        if body.get("stream"):
            chunks = stream_chunks(state, user, question, history, contract, max_tokens)
            return StreamingResponse(
                chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        try:
            answer = await run_in_threadpool(
                state.assistant.answer,
                question,
                user=user.name,
                channel="api",
                format=contract,
                history=history,
                max_new_tokens=max_tokens,
            )
        except UserError as e:
            return ApiError(500, str(e), "server_error", "generation_failed").response()
        if contract.kind == "json" and not answer.valid:
            return format_failure(answer).response()
        return JSONResponse(completion(answer, contract))

    # ---- admin API ------------------------------------------------------------------------

    def admin_user(request: Request) -> User:
        user = bearer_user(state, request) or state.session_user(request)
        if user is None:
            raise ApiError(401, "sign in (session) or send an API key", "authentication_error")
        try:
            return admin.require_admin(user)
        except admin.PermissionDenied as e:
            raise ApiError(403, str(e), "permission_error") from e

    async def guarded(request: Request, action: Any) -> JSONResponse:
        try:
            user = admin_user(request)
            return JSONResponse(await run_in_threadpool(action, user))
        except ApiError as e:
            return e.response()
        except UserError as e:
            return ApiError(400, str(e)).response()

    @router.get("/admin/api/models")
    async def admin_models(request: Request) -> JSONResponse:
        return await guarded(
            request,
            lambda u: {"models": admin.list_models(state.ws), "serving": state.engine.model_id},
        )

    @router.post("/admin/api/models/{model_id}/promote")
    async def admin_promote(model_id: str, request: Request) -> JSONResponse:
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")

        def act(user: User) -> dict[str, Any]:
            promoted = admin.promote(user, state.ws, model_id, force=force)
            return {"promoted": promoted, "serving": state.engine.reload(state.ws)}

        return await guarded(request, act)

    @router.post("/admin/api/rollback")
    async def admin_rollback(request: Request) -> JSONResponse:
        def act(user: User) -> dict[str, Any]:
            model_id = admin.rollback(user, state.ws)
            return {"promoted": model_id, "serving": state.engine.reload(state.ws)}

        return await guarded(request, act)

    @router.get("/admin/api/dataset")
    async def admin_dataset(request: Request) -> JSONResponse:
        def act(user: User) -> dict[str, Any]:
            caption, rows = admin.dataset_preview(user, state.ws)
            return {"caption": caption, "rows": rows}

        return await guarded(request, act)

    @router.get("/admin/api/report")
    async def admin_report(request: Request) -> JSONResponse:
        return await guarded(request, lambda u: {"report": admin.evaluation_report(u, state.ws)})

    @router.post("/admin/api/retrain")
    async def admin_retrain(request: Request) -> JSONResponse:
        return await guarded(request, lambda u: {"state": state.training.start(u).state})

    @router.get("/admin/api/retrain")
    async def admin_retrain_status(request: Request) -> JSONResponse:
        def act(user: User) -> dict[str, Any]:
            s = state.training.status
            return {
                "state": s.state,
                "step": s.step,
                "max_steps": s.max_steps,
                "losses": s.losses,
                "message": s.message,
            }

        return await guarded(request, act)

    @router.post("/admin/api/documents")
    async def admin_documents(request: Request, files: list[UploadFile]) -> JSONResponse:
        try:
            user = admin_user(request)
        except ApiError as e:
            return e.response()
        # Names go to the ingest stage as sent (it cleans them; they only name documents) and
        # the bytes in memory: nothing is written under a name the client chose.
        uploads = [(f.filename or "", await f.read()) for f in files]
        return await guarded(
            request,
            lambda u: admin.ingest_uploads(
                user, state.ws, uploads, state.cfg.ingest_config
            ).to_dict(),
        )

    return router
