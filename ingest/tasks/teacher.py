"""teacher generator: a stronger model writes the pairs (self-instruct), the validators judge them.

For each task family (and contract) the teacher gets the section and is asked for a JSON list of
{"instruction", "answer"} pairs. Every answer is validated against its contract; invalid ones go
back to the teacher with the validation errors in a follow-up message, up to `max_retries`
times, and whatever is still invalid is rejected and counted. Teachers paraphrase, so the
faithfulness check of the extractive generator does not apply here; the contract checks do.

Backends: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, OpenAI) through
the `openai` client, or a local Hugging Face model through a transformers pipeline (imported
only when used).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from sopforge.contracts import Contract, extract_json
from sopforge.errors import UserError
from sopforge.ingest.tasks.base import (
    Candidate,
    FamilyContext,
    GenerationResult,
    Reject,
    TeacherConfig,
)

log = logging.getLogger(__name__)

Message = dict[str, str]

SYSTEM = (
    "You write training data for a company's procedures assistant: instruction/answer pairs "
    "built from one section of a standard operating procedure. Use only facts the section "
    "states. Reply with JSON only, no prose around it."
)
TASK_BRIEFS = {
    "qa": (
        "questions an employee might ask that this section answers (who approves or is "
        "responsible, when or how long, what to do first, what to do if ...), each answered "
        "briefly with the section's own facts"
    ),
    "steps": (
        'requests for how to carry out the procedure in this section ("How do I ...?"), '
        "answered with the procedure's steps"
    ),
    "summary": "requests to summarize this section, phrased in different ways",
    "json": "requests for this section as JSON, answered with the object only",
    "scenario": (
        "a situation an employee is in, told in the first person (\"I'm a ... and ... What "
        'should I do?"), answered with short step-by-step reasoning from the section to the '
        "right action"
    ),
    "open_book": (
        "questions an employee might ask that this section answers, answered briefly from the "
        "section"
    ),
}
PER_CHUNK = frozenset({"qa", "summary", "open_book"})


class TeacherError(UserError):
    """The teacher model could not be reached or loaded."""


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: list[Message]) -> str: ...


class OpenAIBackend:
    """Any OpenAI-compatible /v1/chat/completions endpoint."""

    def __init__(self, cfg: TeacherConfig):
        from openai import OpenAI

        if not cfg.model:
            raise TeacherError("tasks.teacher.model is empty; set the model name the server serves")
        self.cfg = cfg
        self.name = cfg.model
        # Local servers (vLLM, Ollama) accept any key; hosted ones read it from the named env var.
        key = os.environ.get(cfg.api_key_env) or "not-needed"
        self.client = OpenAI(base_url=cfg.base_url, api_key=key, timeout=cfg.timeout, max_retries=1)

    def chat(self, messages: list[Message]) -> str:
        import openai

        try:
            resp = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.cfg.temperature,
            )
        except openai.APIConnectionError as e:
            raise TeacherError(
                f"teacher endpoint {self.cfg.base_url} is unreachable ({e}); start the server "
                "or set tasks.teacher.base_url"
            ) from e
        except openai.APIStatusError as e:
            raise TeacherError(
                f"teacher endpoint {self.cfg.base_url} answered HTTP {e.status_code}: {e.message}; "
                f"check tasks.teacher.model ({self.cfg.model!r}) and the key in "
                f"${self.cfg.api_key_env}"
            ) from e
        return resp.choices[0].message.content or ""


class HFBackend:
    """A local Hugging Face chat model folder, decoded by the serving engine (llama.cpp through
    xllamacpp, sopforge.llamaserver): the folder is exported to GGUF once, next to its weights."""

    def __init__(self, cfg: TeacherConfig):
        if not cfg.model:
            raise TeacherError("tasks.teacher.model is empty; set a local HF model folder")
        folder = Path(cfg.model).expanduser()
        if not (folder / "config.json").is_file():
            raise TeacherError(
                f"teacher model {cfg.model!r} is not a local model folder (no config.json): "
                "import it with `sopforge models import`, or serve it and use backend: openai"
            )
        from sopforge.llamaserver import Decoding, LlamaServerError, ServedModel
        from sopforge.train.export_gguf import ExportError, cached_gguf

        try:
            self.model = ServedModel(
                cached_gguf(folder, None, "f16"),
                folder,
                decoding=Decoding(temperature=cfg.temperature, grammar=False),
                n_parallel=1,
                n_ctx=8192,
            )
        except (ExportError, LlamaServerError, OSError, ValueError) as e:
            raise TeacherError(f"cannot load teacher model {cfg.model!r}: {e}") from e
        self.cfg = cfg
        self.name = folder.name

    def chat(self, messages: list[Message]) -> str:
        return "".join(self.model.stream(messages, None, self.cfg.max_new_tokens))


@lru_cache(maxsize=4)
def backend_for(cfg: TeacherConfig) -> ChatBackend:
    return HFBackend(cfg) if cfg.backend == "hf" else OpenAIBackend(cfg)


# --- prompts --------------------------------------------------------------------------------


def format_rule(contract: Contract) -> str:
    if contract.kind == "plain":
        return "Each answer is plain text (a few sentences at most)."
    rule = f"Each answer must follow this format exactly: {contract.prompt_hint()}"
    if contract.kind == "json" and contract.schema:
        schema = json.dumps(contract.schema, separators=(",", ":"))
        rule += f" The object must be valid against this JSON Schema: {schema}"
    return rule


def request(ctx: FamilyContext, task: str, contract: Contract, k: int) -> str:
    section = ctx.section
    return (
        f"Document: {section.doc_title}\nSection: {section.section_id}\n"
        f"---\n{ctx.text.strip()}\n---\n"
        f"Write {k} different pairs: {TASK_BRIEFS[task]}. {format_rule(contract)}\n"
        'Reply with a JSON list only: [{"instruction": "...", "answer": "..."}, ...]'
    )


def follow_up(problems: list[tuple[dict[str, str], list[str]]]) -> str:
    lines = [
        f"- pair with instruction {p.get('instruction', '')!r}: {'; '.join(errs)}"
        for p, errs in problems
    ]
    return (
        "These answers failed validation:\n"
        + "\n".join(lines)
        + "\nReply with a JSON list of corrected versions of only these pairs."
    )


class ReplyError(ValueError):
    pass


def parse_pairs(reply: str) -> list[dict[str, str]]:
    """The reply's list of {instruction, answer} objects; ReplyError saying what is wrong."""
    try:
        data = extract_json(reply)
    except json.JSONDecodeError as e:
        raise ReplyError(f"the reply is not JSON ({e.msg} at line {e.lineno})") from e
    if isinstance(data, dict) and isinstance(data.get("pairs"), list):
        data = data["pairs"]
    if not isinstance(data, list) or not data:
        raise ReplyError("the reply must be a non-empty JSON list of pairs")
    pairs = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("instruction", "answer")
        ):
            raise ReplyError(f'item {i} is not an object with string "instruction" and "answer"')
        pairs.append({"instruction": item["instruction"].strip(), "answer": item["answer"].strip()})
    return pairs


# --- generation -----------------------------------------------------------------------------


@dataclass
class JobResult:
    pairs: list[dict[str, str]]
    rejects: list[Reject]


def pair_errors(pair: dict[str, str], contract: Contract) -> list[str]:
    if not pair["instruction"]:
        return ["the instruction is empty"]
    return contract.validate(pair["answer"])


def run_job(
    backend: ChatBackend, ctx: FamilyContext, task: str, contract: Contract, k: int, retries: int
) -> JobResult:
    """Ask for k pairs; send invalid ones back with their errors up to `retries` times."""
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": request(ctx, task, contract, k)},
    ]
    kept: list[dict[str, str]] = []
    problems: list[tuple[dict[str, str], list[str]]] = []
    attempt = 0
    for attempt in range(retries + 1):
        reply = backend.chat(messages)
        try:
            pairs = parse_pairs(reply)
        except ReplyError as e:
            problems = [({"instruction": "(whole reply)"}, [str(e)])]
            followup = f"{e}. Reply with a JSON list only."
        else:
            problems = []
            for pair in pairs:
                errors = pair_errors(pair, contract)
                if errors:
                    problems.append((pair, errors))
                elif len(kept) < k:
                    kept.append(pair)
            followup = follow_up(problems)
        if not problems or len(kept) >= k:
            break  # problems left here are surplus pairs: rejected without asking again
        if attempt < retries:
            log.debug("teacher %s/%s: retry %d: %s", task, contract.spec, attempt + 1, followup)
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": followup},
            ]
    rejects = [
        Reject(
            task, contract.spec, f"teacher output invalid after {attempt} retries: {'; '.join(e)}"
        )
        for _, e in problems
    ]
    return JobResult(kept, rejects)


def jobs(whole: FamilyContext, chunks: list[FamilyContext]) -> list[tuple[str, str, FamilyContext]]:
    """(task, contract, context) for every family in the config, per chunk where it applies."""
    cfg = whole.cfg
    out = []
    for task in cfg.tasks:
        for ctx in chunks if task in PER_CHUNK else [whole]:
            if task == "summary":
                out += [(task, f"bullets:{n}", ctx) for n in cfg.summary_bullets]
            elif task == "steps":
                out.append((task, "numbered", ctx))
            elif task == "json":
                out.append((task, f"json:{cfg.json_schema}", ctx))
            else:
                out.append((task, "plain", ctx))
    return out


def generate_pairs(
    whole: FamilyContext,
    chunks: list[FamilyContext],
    *,
    count_tokens: Callable[[str], int],
    backend: ChatBackend,
) -> GenerationResult:
    """Validated records written by the teacher for one section, and the rejects."""
    from sopforge.ingest.tasks.generate import validate_candidates

    cfg = whole.cfg
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for task, spec, ctx in jobs(whole, chunks):
        contract = ctx.registry.get(spec)
        res = run_job(
            backend, ctx, task, contract, cfg.teacher.pairs_per_task, cfg.teacher.max_retries
        )
        rejects += res.rejects
        for pair in res.pairs:
            # open_book questions stay bare: the pipeline adds the context around them.
            user = (
                pair["instruction"] if task == "open_book" else ctx.user(pair["instruction"], spec)
            )
            candidates.append(Candidate(task, spec, user, pair["answer"], ctx.span))
    result = validate_candidates(
        whole.section,
        candidates,
        registry=whole.registry,
        cfg=cfg,
        count_tokens=count_tokens,
        generator=f"teacher:{backend.name}",
        check_faithfulness=False,
    )
    result.rejects[:0] = rejects
    return result
