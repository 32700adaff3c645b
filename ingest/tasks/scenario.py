"""scenario: a situation an employee is in -> short step-by-step reasoning to the right action.

The situation comes from one of the section's if/when sentences ("If you lose your badge, ...")
told in the first person; the reasoning is that sentence's condition and action, and the sentence
after it, joined by a fixed handful of connective words (`SCAFFOLD`), nothing else:

    The procedure "Badges" applies because you lose your badge. First, <action>. Then, <next
    sentence>. So, <action>.
"""

from __future__ import annotations

import re

from sopforge.ingest.tasks.base import Candidate, FamilyContext, draw
from sopforge.ingest.tasks.material import Unit
from sopforge.ingest.tasks.qa import conditional_units
from sopforge.ingest.tasks.text import (
    IMPERATIVE_VERBS,
    STOP_WORDS,
    article,
    clean_inline,
    find_roles,
    gerund_to_base,
    is_group_role,
    strip_numbering,
    to_first_person,
    tokens,
    word_count,
)

CONTRACT = "plain"
# The only words scenario answers add to the section's own: checked by faithfulness.
SCAFFOLD = frozenset("the procedure applies because first then so".split())
MAX_SCENARIOS = 2
_IF_LEADS = frozenset({"if", "when", "whenever"})
_GENERIC_PEOPLE = ["an employee", "a team member", "a staff member"]

_IF_PHRASINGS = [
    "I'm {role} and {cond}. What should I do?",
    "As {role}, {cond}. What's the right thing to do?",
    "Situation: I'm {role} and {cond}. What's the correct procedure?",
    "{Cond}, and I'm {role}. How should I handle this?",
    "I'm {role}. It turns out {cond}. What do I do now?",
    "Help: I'm {role} and {cond}. What are my next steps?",
]
_TIME_PHRASINGS = [
    "I'm {role}. {Lead} {cond}, what should I do?",
    "As {role}, what do I do {lead} {cond}?",
    "Situation: I'm {role}. {Lead} {cond}, what's the correct procedure?",
    "I'm {role} and want to know what to do {lead} {cond}.",
]


def addressed_roles(units: list[Unit]) -> list[str]:
    """Person roles the section speaks to or assigns work to ('The QMO must ...', 'As an SRE')."""
    out: list[str] = []
    for u in units:
        for role in find_roles(u.text):
            head = role.split()[-1].lower()
            plural = head.endswith("s") and not head.endswith("ss")
            if is_group_role(role) or plural or role in out:
                continue
            after = u.text.split(role, 1)[1][:40].lower()
            before = u.text.split(role, 1)[0][-8:].lower()
            if re.match(
                r"\s*(must|should|will|needs? to|is responsible|can|may|has to)\b", after
            ) or (re.search(r"\bas an?\s*$", before)):
                out.append(role)
    return out


def _lower_start(text: str, source_words: frozenset[str] = frozenset()) -> str:
    """Lowercase a sentence's first word when it is an ordinary word ('Check' -> 'check'): a
    function word, a verb, a gerund, or a word the section itself writes in lowercase."""
    first = text.split(" ", 1)[0]
    low = first.lower()
    if first[1:].islower() and (
        low in source_words
        or (tokens(low) or [""])[0] in STOP_WORDS
        or low in IMPERATIVE_VERBS
        or gerund_to_base(low)
        or low.endswith("ing")
    ):
        return first.lower() + text[len(first) :]
    return text


def _sentence(text: str) -> str:
    text = text.strip().rstrip(",;:")
    return text if text.endswith((".", "!", "?")) else text + "."


def _next_unit(units: list[Unit], unit: Unit) -> Unit | None:
    i = units.index(unit)
    if i + 1 < len(units):
        nxt = units[i + 1]
        if nxt.block == unit.block and nxt.item == unit.item and 3 <= word_count(nxt.text) <= 40:
            return nxt
    return None


def reasoning(
    title: str,
    lead: str,
    cond: str,
    action: str,
    nxt: str | None,
    source_words: frozenset[str] = frozenset(),
) -> str:
    """'The procedure "T" applies because C. First, A. Then, N.' or, with no follow-up
    sentence, 'The procedure "T" applies because C. So, A.'"""
    why = f"because {cond}" if lead in _IF_LEADS and not _participle(cond) else f"{lead} {cond}"
    parts = [f'The procedure "{title}" applies {why}.']
    if nxt:
        parts.append(f"First, {_sentence(_lower_start(action, source_words))}")
        parts.append(f"Then, {_sentence(_lower_start(nxt, source_words))}")
    else:
        parts.append(f"So, {_sentence(_lower_start(action, source_words))}")
    return " ".join(parts)


def _participle(cond: str) -> bool:
    """'reaching out to ...': a condition without a subject ('when reaching out to ...')."""
    first = cond.split(" ", 1)[0].lower()
    return first.endswith("ing") and len(first) > 4


def candidates(ctx: FamilyContext) -> list[Candidate]:
    units = ctx.material.units
    roles = [f"{article(r)} {r}" for r in addressed_roles(units)] or _GENERIC_PEOPLE
    title = strip_numbering(clean_inline(ctx.section.section_title))
    lowercase_words = frozenset(re.findall(r"\b[a-z][a-z'-]*\b", ctx.section.body))
    out = []
    for unit, lead, cond, action in conditional_units(ctx.material)[:MAX_SCENARIOS]:
        nxt = _next_unit(units, unit)
        answer = reasoning(title, lead, cond, action, nxt.text if nxt else None, lowercase_words)
        cond_1p = to_first_person(cond)
        if _participle(cond):
            cond_1p = f"I am {cond_1p}"
        phrasings = _IF_PHRASINGS if lead in _IF_LEADS else _TIME_PHRASINGS
        rng = ctx.rng("scenario", cond)
        for phrasing in draw(rng, phrasings, ctx.cfg.phrasings_per_task):
            role = rng.choice(roles)
            instruction = (
                phrasing.replace("{role}", role)
                .replace("{Cond}", cond_1p[:1].upper() + cond_1p[1:])
                .replace("{cond}", cond_1p)
                .replace("{Lead}", lead.capitalize())
                .replace("{lead}", lead)
            )
            out.append(ctx.candidate("scenario", CONTRACT, instruction, answer))
    return out
