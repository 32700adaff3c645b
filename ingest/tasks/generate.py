"""From one section to validated dataset records: run the task families, check every candidate.

A candidate becomes a record only if its answer passes its contract's validator, and (for the
extractive generator) uses only the section's own words, and fits the answer-length budget;
everything else becomes a `Reject` with the reason. Long sections run the qa, summary and
open_book families once per chunk, so each answer and the context it is read from stay short.
"""

from __future__ import annotations

from collections.abc import Callable

from sopforge.contracts import ContractRegistry
from sopforge.ingest.chunk import chunk_section, load_token_counter
from sopforge.ingest.tasks import json_task, open_book, qa, scenario, steps, summary
from sopforge.ingest.tasks.base import (
    Candidate,
    FamilyContext,
    GenerationResult,
    Reject,
    SectionInput,
    TaskConfig,
    to_record,
)
from sopforge.ingest.tasks.faithfulness import unsupported_words
from sopforge.ingest.tasks.material import blocks_from_markdown, material_from_blocks

FAMILIES: dict[str, Callable[[FamilyContext], list[Candidate]]] = {
    "qa": qa.candidates,
    "steps": steps.candidates,
    "summary": summary.candidates,
    "json": json_task.candidates,
    "scenario": scenario.candidates,
    "open_book": open_book.candidates,
}
PER_CHUNK = frozenset({"qa", "summary", "open_book"})


def section_source(section: SectionInput) -> str:
    """The text an extractive answer may draw words from: the section with its heading path."""
    return "\n".join([section.doc_title, *section.path, section.body])


def contexts(
    section: SectionInput,
    *,
    registry: ContractRegistry,
    cfg: TaskConfig,
    count_tokens: Callable[[str], int],
) -> tuple[FamilyContext, list[FamilyContext]]:
    """The whole-section context, and the per-chunk contexts (just the whole one when the
    section fits in `cfg.chunk_max_tokens`)."""
    whole = FamilyContext(
        section=section,
        material=material_from_blocks(section.section.blocks),
        cfg=cfg,
        registry=registry,
        span=section.span,
        text=section.body,
    )
    pieces = chunk_section(section.body, max_tokens=cfg.chunk_max_tokens, count_tokens=count_tokens)
    if len(pieces) <= 1:
        return whole, [whole]
    seen: set[tuple[str, str]] = set()  # chunks of one section never repeat a question
    chunks = []
    pos = 0
    for k, piece in enumerate(pieces, 1):
        offset = section.body.find(piece, pos)
        if offset >= 0:
            pos = offset + len(piece)
            start = section.body_start + offset
            span = (start, start + len(piece))
        else:  # not a verbatim slice (cannot happen with the splitter's settings): whole section
            span = section.span
        chunks.append(
            FamilyContext(
                section=section,
                material=material_from_blocks(blocks_from_markdown(piece)),
                cfg=cfg,
                registry=registry,
                span=span,
                text=piece,
                part=(k, len(pieces)),
                seen=seen,
            )
        )
    return whole, chunks


def validate_candidates(
    section: SectionInput,
    candidates: list[Candidate],
    *,
    registry: ContractRegistry,
    cfg: TaskConfig,
    count_tokens: Callable[[str], int],
    generator: str,
    check_faithfulness: bool,
) -> GenerationResult:
    """Records for the candidates that pass every check, Rejects (with reasons) for the rest."""
    result = GenerationResult()
    source = section_source(section)
    seen: set[tuple[str, str]] = set()
    for cand in candidates:
        reason = candidate_problem(
            cand,
            registry=registry,
            cfg=cfg,
            count_tokens=count_tokens,
            source=source,
            check_faithfulness=check_faithfulness,
        )
        if reason:
            result.rejects.append(Reject(cand.task, cand.contract, reason))
            continue
        rec = to_record(section, cand, generator)
        if (cand.task, rec["id"]) not in seen:  # the same pair drawn twice is kept once
            seen.add((cand.task, rec["id"]))
            result.records.append(rec)
    return result


def candidate_problem(
    cand: Candidate,
    *,
    registry: ContractRegistry,
    cfg: TaskConfig,
    count_tokens: Callable[[str], int],
    source: str,
    check_faithfulness: bool,
) -> str:
    """Why `cand` may not become a record ('' when it may)."""
    errors = registry.get(cand.contract).validate(cand.answer)
    if errors:
        return "; ".join(errors)
    if check_faithfulness:
        missing = unsupported_words(cand.answer, source, cand.contract)
        if missing:
            return f"unsupported words: {', '.join(missing[:10])}"
    n = count_tokens(cand.answer)
    if n > cfg.max_answer_tokens:
        return f"answer too long: {n} tokens > max_answer_tokens {cfg.max_answer_tokens}"
    return ""


def generate_section_pairs(
    section: SectionInput,
    *,
    registry: ContractRegistry,
    cfg: TaskConfig,
    count_tokens: Callable[[str], int] | None = None,
    teacher: object | None = None,
) -> GenerationResult:
    """Validated instruction/answer records for one section, plus the rejected candidates.

    Deterministic for the extractive generator: the same section (content hash) and config give
    the same records. `count_tokens` defaults to `load_token_counter(cfg.tokenizer)`; `teacher`
    (a `teacher.ChatBackend`) defaults to one built from `cfg.teacher` when the generator is
    "teacher".
    """
    count = count_tokens or load_token_counter(cfg.tokenizer)
    whole, chunks = contexts(section, registry=registry, cfg=cfg, count_tokens=count)
    if whole.material.words < cfg.min_section_words:
        return GenerationResult()  # a heading with (almost) nothing under it
    if cfg.generator == "teacher":
        from sopforge.ingest.tasks import teacher as teacher_mod

        return teacher_mod.generate_pairs(
            whole,
            chunks,
            count_tokens=count,
            backend=teacher or teacher_mod.backend_for(cfg.teacher),
        )
    candidates: list[Candidate] = []
    for task in cfg.tasks:
        for ctx in chunks if task in PER_CHUNK else [whole]:
            candidates.extend(FAMILIES[task](ctx))
    return validate_candidates(
        section,
        candidates,
        registry=registry,
        cfg=cfg,
        count_tokens=count,
        generator="extractive",
        check_faithfulness=True,
    )
