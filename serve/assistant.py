"""One question in, one checked answer out: retrieval -> open-book prompt -> guarded generation ->
citation check -> audit log. The chat UI and the API both go through `Assistant.ask`, so what an
employee sees in the browser and what an API client gets are produced and logged the same way.

`ask` yields events: Sources (the retrieved sections, first), then per attempt AttemptStart and
Delta (text already citation-checked), then one Answer (final, logged).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sopforge.contracts import Contract, ContractRegistry
from sopforge.serve.audit import AuditEntry, log_answer
from sopforge.serve.config import ServeConfig
from sopforge.serve.engine import Backend, Engine, Messages
from sopforge.serve.guard import (
    AttemptStart,
    Delta,
    GuardResult,
    build_messages,
    guarded_stream,
    resolve_format,
    split_sources,
)
from sopforge.serve.retrieval import CitationFilter, IndexedSection, Retriever, SectionIndex
from sopforge.workspace import Workspace


@dataclass
class Sources:
    sections: list[IndexedSection]


@dataclass
class Answer:
    audit_id: int
    model_id: str
    format: str
    valid: bool
    text: str  # what is shown: the checked answer, or the failure message when not valid
    body: str  # the answer without its trailing "Source:" line (what a JSON client parses)
    failed_output: str  # the model's last attempt when not valid (shown only as failed output)
    errors: list[str]
    attempts: int
    sources: list[IndexedSection]
    cited: list[str] = field(default_factory=list)  # valid citations the model wrote
    removed: list[str] = field(default_factory=list)  # citations removed as not current

    def sources_markdown(self) -> str:
        if not self.sources:
            return "_No procedure section matched this question._"
        return "\n".join(f"- {s.citation}" for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "model": self.model_id,
            "format": self.format,
            "valid": self.valid,
            "errors": self.errors,
            "attempts": self.attempts,
            "failed_output": self.failed_output,
            "sources": [s.to_dict() for s in self.sources],
            "citations": self.cited,
            "removed_citations": self.removed,
        }


Event = Sources | AttemptStart | Delta | Answer


def citation_records(answer: Answer) -> list[dict[str, Any]]:
    """The audit's citations column (see audit.py)."""
    retrieved = [s.citation for s in answer.sources]
    out = [
        {"citation": c, "cited": True, "valid": True, "retrieved": c in retrieved}
        for c in answer.cited
    ]
    out += [
        {"citation": c, "cited": True, "valid": False, "retrieved": False} for c in answer.removed
    ]
    out += [
        {"citation": c, "cited": False, "valid": True, "retrieved": True}
        for c in retrieved
        if c not in answer.cited
    ]
    return out


class Assistant:
    def __init__(
        self,
        ws: Workspace,
        engine: Engine,
        retriever: Retriever,
        registry: ContractRegistry,
        cfg: ServeConfig,
    ):
        self.ws = ws
        self.engine = engine
        self.retriever = retriever
        self.registry = registry
        self.cfg = cfg

    def contract(self, format: str | None, question: str) -> Contract:
        return resolve_format(format, question, self.registry, self.cfg.guard.json_schema)

    def ask(
        self,
        question: str,
        *,
        user: str,
        channel: str,
        format: str | Contract | None = None,
        history: Sequence[tuple[str, str]] = (),
        max_new_tokens: int | None = None,
    ) -> Iterator[Event]:
        contract = format if isinstance(format, Contract) else self.contract(format, question)
        index = self.retriever.index()
        sections = [s for s, _ in index.search(question, self.retriever.top_k)]
        yield Sources(sections)
        keep = self.cfg.history_turns
        messages = build_messages(
            question,
            contract,
            self.retriever.contexts(sections),
            list(history)[-keep:] if keep else [],
        )
        backend = self.engine.backend  # one model for every attempt of this answer
        filters: list[CitationFilter] = []
        generate = _checked_generate(
            backend,
            index,
            max_new_tokens or self.engine.cfg.max_new_tokens,
            filters,
            [s.citation for s in sections],
        )
        for event in guarded_stream(generate, messages, contract, self.cfg.guard.max_attempts):
            if isinstance(event, GuardResult):
                answer = self._finish(
                    event, question, user, channel, backend.model_id, sections, filters[-1]
                )
                yield answer
            else:
                yield event

    def answer(self, question: str, **kwargs: Any) -> Answer:
        """`ask` without the events: the final Answer."""
        final = None
        for event in self.ask(question, **kwargs):
            if isinstance(event, Answer):
                final = event
        assert final is not None  # ask always ends with an Answer
        return final

    def _finish(
        self,
        result: GuardResult,
        question: str,
        user: str,
        channel: str,
        model_id: str,
        sections: list[IndexedSection],
        last_filter: CitationFilter,
    ) -> Answer:
        body, _ = split_sources(result.text)
        answer = Answer(
            audit_id=0,
            model_id=model_id,
            format=result.contract,
            valid=result.valid,
            text=result.text if result.valid else result.failure_message(),
            body=body if result.valid else "",
            failed_output="" if result.valid else result.text,
            errors=result.errors,
            attempts=len(result.attempts),
            sources=sections,
            cited=list(last_filter.valid),
            removed=list(last_filter.invalid),
        )
        answer.audit_id = log_answer(
            self.ws,
            AuditEntry(
                user=user,
                channel=channel,
                model_id=model_id,
                question=question,
                answer=result.text,  # the model's own last attempt; `valid` says whether it passed
                format=result.contract,
                valid=result.valid,
                citations=citation_records(answer),
            ),
        )
        return answer


def _checked_generate(
    backend: Backend,
    index: SectionIndex,
    max_new_tokens: int,
    filters: list[CitationFilter],
    citations: Sequence[str],
) -> Any:
    """The guard's generate(): backend deltas (the closing citation decoded under `citations`,
    the retrieved sections, where the backend can) passed through a fresh CitationFilter per
    attempt."""

    def generate(messages: Messages, contract: Contract) -> Iterator[str]:
        f = CitationFilter(index)
        filters.append(f)
        for delta in backend.stream(messages, contract, max_new_tokens, citations):
            if out := f.feed(delta):
                yield out
        if tail := f.flush():
            yield tail

    return generate
