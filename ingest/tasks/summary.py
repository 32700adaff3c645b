"""summary: "Summarize <title> in N bullets" -> exactly N "- " bullets cut from the section.

The N bullets are the section's N most informative sentences (list items and table rows count
as sentences), kept in the section's order, one per line, no preamble: the form is always the
same so a small model can learn to hit the count exactly.
"""

from __future__ import annotations

from sopforge.ingest.tasks.base import NUMBER_WORDS, Candidate, FamilyContext, draw
from sopforge.ingest.tasks.material import Unit
from sopforge.ingest.tasks.text import (
    AMOUNT,
    OBLIGATION,
    content_words,
    find_roles,
    has_time,
)

_PHRASINGS = [
    "Summarize {topic} in {n} bullets.",
    "Give me the {n} key points of {topic}.",
    "TL;DR of {topic} as {n} bullets.",
    "What are the {n} most important things to know about {topic}?",
    "List {n} takeaways from {topic}.",
    "In {n} bullet points, what does {topic} say?",
    "Boil {topic} down to {n} bullets.",
    "Quick summary of {topic}, {n} bullets please.",
    "I'm short on time: {n} bullets on {topic}.",
    "Break down {topic} into {n} key points.",
    "Can you summarize {topic} for me in {n} points?",
    "Sum up {topic} in {n} bullet points.",
]
_MAX_OVERLAP = 0.6  # two bullets sharing more of their words than this say the same thing


def informativeness(unit: Unit) -> float:
    """More distinct content words, plus cues (roles, times, amounts, obligations), score higher;
    fragments score low."""
    words = set(content_words(unit.text))
    score = min(len(words), 18) / 18
    score += 0.3 * bool(find_roles(unit.text))
    score += 0.3 * has_time(unit.text)
    score += 0.2 * bool(AMOUNT.search(unit.text))
    score += 0.3 * bool(OBLIGATION.search(unit.text))
    if unit.words < 5:
        score -= 0.5
    if unit.words > 40:
        score -= 0.3
    return score


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))


def pick(units: list[Unit], n: int) -> list[Unit] | None:
    """The n most informative, mutually distinct units in section order; None if too few."""
    ranked = sorted(range(len(units)), key=lambda i: (-informativeness(units[i]), i))
    chosen: list[int] = []
    for i in ranked:
        words = set(content_words(units[i].text))
        if not words or any(
            _overlap(words, set(content_words(units[j].text))) > _MAX_OVERLAP for j in chosen
        ):
            continue
        chosen.append(i)
        if len(chosen) == n:
            return [units[i] for i in sorted(chosen)]
    return None


def bullets(units: list[Unit]) -> str:
    return "\n".join(f"- {u.text}" for u in units)


def candidates(ctx: FamilyContext) -> list[Candidate]:
    units = [u for u in ctx.material.sentences() if len(content_words(u.text)) >= 2]
    out = []
    for n in ctx.cfg.summary_bullets:
        chosen = pick(units, n)
        if chosen is None:
            continue  # not enough material for n distinct points
        contract = f"bullets:{n}"
        rng = ctx.rng("summary", n)
        for phrasing in draw(rng, _PHRASINGS, ctx.cfg.phrasings_per_task):
            count = NUMBER_WORDS.get(n, str(n)) if rng.random() < 0.3 else str(n)
            instruction = phrasing.replace("{topic}", ctx.part_topic).replace("{n}", count)
            out.append(ctx.candidate("summary", contract, instruction, bullets(chosen)))
    return out
