"""steps: "How do I <title>?" -> the section's procedure as a numbered list.

The steps are the section's own (its numbered list, else a bulleted list of actions, else its
imperative sentences), in the section's order.
"""

from __future__ import annotations

from sopforge.ingest.tasks.base import Candidate, FamilyContext, draw
from sopforge.ingest.tasks.text import clean_inline, gerund_to_base, strip_numbering, verb_first

CONTRACT = "numbered"

_VERB_PHRASINGS = [
    "How do I {vp}?",
    "What are the steps to {vp}?",
    "How should I {vp}?",
    "Walk me through how to {vp}.",
    "I need to {vp}. What do I do?",
    "What's the procedure to {vp}?",
    "Can you list the steps to {vp}?",
    "Explain step by step how to {vp}.",
]
_TOPIC_PHRASINGS = [
    "What are the steps for {topic}?",
    "Walk me through {topic}.",
    "What's the process for {topic}?",
    "List the steps of {topic}.",
    "How does {topic} work, step by step?",
    "Give me the procedure for {topic} as a numbered list.",
    "What do I need to do for {topic}?",
    "Break {topic} down into steps.",
]


def verb_phrase(title: str) -> str | None:
    """'Making a micropurchase' -> 'make a micropurchase'; 'How to claim expenses' -> 'claim
    expenses'; None when the title does not start with an action."""
    words = strip_numbering(clean_inline(title)).rstrip(" .:?!").split()
    if len(words) >= 3 and [w.lower() for w in words[:2]] == ["how", "to"]:
        words = words[2:]
        return " ".join([words[0].lower(), *words[1:]])
    if len(words) < 2:
        return None
    first = words[0]
    if verb_first(words):
        return " ".join([first.lower(), *words[1:]])
    base = gerund_to_base(first)
    if base:
        return " ".join([base, *words[1:]])
    if first.lower().endswith("ing") and first[1:].islower():
        return " ".join(["go about", first.lower(), *words[1:]])
    return None


def numbered(steps: list[str]) -> str:
    return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def candidates(ctx: FamilyContext) -> list[Candidate]:
    steps = ctx.material.steps
    if len(steps) < 2:
        return []
    vp = verb_phrase(ctx.section.section_title)
    phrasings = [p.replace("{vp}", vp) for p in _VERB_PHRASINGS] if vp else []
    phrasings += [p.replace("{topic}", ctx.topic) for p in _TOPIC_PHRASINGS]
    answer = numbered(steps)
    rng = ctx.rng("steps")
    return [
        ctx.candidate("steps", CONTRACT, p, answer)
        for p in draw(rng, phrasings, ctx.cfg.phrasings_per_task)
    ]
