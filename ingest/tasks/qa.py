"""qa: questions a section answers, with grounded extractive answers.

Each question kind has a cue (a role word, a time expression, an amount, "must", an if-clause,
a definition) that picks the section's sentences answering it; the answer is those sentences
verbatim (markup removed). `questions()` is shared with the open_book family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sopforge.ingest.tasks.base import Candidate, FamilyContext, draw
from sopforge.ingest.tasks.material import Material, Unit
from sopforge.ingest.tasks.text import (
    AMOUNT,
    APPROVAL,
    CONDITION_LEAD,
    CONDITION_TAIL,
    DEADLINE,
    DEFINITION,
    OBLIGATION,
    RESPONSIBILITY,
    STOP_WORDS,
    content_words,
    find_roles,
    has_duration,
    starts_imperative,
    to_first_person,
)

CONTRACT = "plain"


@dataclass(frozen=True)
class Question:
    kind: str
    key: str  # identifies the question within its section (kind + subject)
    phrasings: list[str]
    answer: str


_CUE_QUESTIONS: list[tuple[str, Callable[[str], bool], list[str], int]] = [
    (
        "approve",
        lambda s: bool(APPROVAL.search(s)) and bool(find_roles(s)),
        [
            "Who approves {topic}?",
            "Whose approval do I need for {topic}?",
            "Who signs off on {topic}?",
            "Who has to give approval in {topic}?",
            "Which approvals are needed for {topic}?",
        ],
        2,
    ),
    (
        "responsible",
        lambda s: bool(find_roles(s)) and bool(RESPONSIBILITY.search(s)),
        [
            "Who is responsible for {topic}?",
            "Who handles {topic}?",
            "Which role takes care of {topic}?",
            "Who do I contact about {topic}?",
            "Who is involved in {topic}?",
        ],
        2,
    ),
    (
        "deadline",
        lambda s: bool(DEADLINE.search(s)),
        [
            "When does {topic} have to happen?",
            "What are the deadlines for {topic}?",
            "Is there a time limit for {topic}?",
            "By when do I need to act on {topic}?",
            "What timing rules apply to {topic}?",
        ],
        2,
    ),
    (
        "duration",
        has_duration,
        [
            "How long does {topic} take?",
            "What time frames apply to {topic}?",
            "How much time is involved in {topic}?",
            "How many days or hours does {topic} involve?",
        ],
        2,
    ),
    (
        "amount",
        lambda s: bool(AMOUNT.search(s)),
        [
            "What amounts or limits apply to {topic}?",
            "How much money is involved in {topic}?",
            "Are there any cost limits for {topic}?",
            "What numbers should I know for {topic}?",
        ],
        2,
    ),
    (
        "rules",
        lambda s: bool(OBLIGATION.search(s)),
        [
            "What are the rules for {topic}?",
            "What must I do for {topic}?",
            "What is required in {topic}?",
            "What are the must-dos of {topic}?",
            "Which requirements does {topic} set?",
        ],
        3,
    ),
]

_WHAT_IF = [
    "What should I do {lead} {cond}?",
    "What happens {lead} {cond}?",
    "{Lead} {cond}, what do I do?",
    "What is the procedure {lead} {cond}?",
    "{Lead} {cond}, what are my next steps?",
]
_FIRST = [
    "What is the first step of {topic}?",
    "What do I do first for {topic}?",
    "Where do I start with {topic}?",
    "What's step one of {topic}?",
    "How does {topic} begin?",
]
_DEFINE = [
    "What {be} {term}?",
    "What does {term} mean?",
    "Define {term}.",
    "What is meant by {term}?",
    "Can you explain what {term} {be}?",
]
_ABOUT = [
    "What is {topic} about?",
    "What does the section on {topic} cover?",
    "Give me a one-line overview of {topic}.",
    "Sum up {topic} in one sentence.",
    "Briefly, what does {topic} say?",
]
_PRONOUN_TERMS = frozenset(
    "this that it there these those they which what he she we you one each all both".split()
)


def _join(units: list[Unit], limit: int) -> str:
    return " ".join(u.text for u in units[:limit])


def _condition(sentence: str) -> tuple[str, str, str] | None:
    """(lead word, condition clause, action) of an if/when sentence, else None."""
    m = CONDITION_LEAD.match(sentence)
    if m:
        lead = sentence.split()[0].lower()
        if lead in ("in", "should"):
            lead = "if"
        return lead, m.group("cond").strip(), m.group("action").strip()
    m = CONDITION_TAIL.match(sentence)
    if m:
        lead = "when" if " when" in sentence[m.end("action") : m.start("cond")].lower() else "if"
        return lead, m.group("cond").strip(), m.group("action").strip()
    return None


# Words that make a condition only in context ("if not already done", "if needed").
_FILLER = frozenset(
    """already done needed necessary possible applicable required appropriate available sure
    unsure relevant otherwise case instead""".split()
)


def conditional_units(material: Material) -> list[tuple[Unit, str, str, str]]:
    """Sentences of the form 'If/When <condition>, <action>' (or '<action> if <condition>')
    whose condition says something on its own."""
    out = []
    for u in material.sentences():
        parsed = _condition(u.text)
        if not parsed:
            continue
        cond_words = content_words(parsed[1])
        if (
            len(cond_words) >= 2
            and any(w not in _FILLER for w in cond_words)
            and len(content_words(parsed[2])) >= 2
        ):
            out.append((u, *parsed))
    return out


def _definitions(material: Material) -> list[tuple[str, str, Unit]]:
    out = []
    for u in material.sentences():
        m = DEFINITION.match(u.text)
        if not m:
            continue
        term = m.group("term").strip()
        first = term.split()[0].lower()
        if (
            first in _PRONOUN_TERMS
            or first in STOP_WORDS
            or len(term.split()) > 5
            or not content_words(term)
        ):
            continue
        verb = u.text[m.end("term") : m.start("rest")].strip().split()
        be = "are" if "are" in (w.lower() for w in verb) else "is"
        out.append((term, be, u))
    return out


def questions(material: Material, max_questions: int) -> list[Question]:
    """The questions the material answers, most useful kinds first, at most `max_questions`."""
    sentences = material.sentences()
    found: list[Question] = []
    for u, lead, cond, _action in conditional_units(material)[:2]:
        cond_1p = to_first_person(cond)
        phrasings = [
            p.replace("{Lead}", lead.capitalize())
            .replace("{lead}", lead)
            .replace("{cond}", cond_1p)
            for p in _WHAT_IF
        ]
        found.append(Question("what_if", f"what_if:{cond.lower()}", phrasings, u.text))
    for kind, cue, phrasings, limit in _CUE_QUESTIONS:
        hits = [u for u in sentences if cue(u.text)]
        if hits:
            found.append(Question(kind, kind, phrasings, _join(hits, limit)))
    first = _first_step(material, sentences)
    if first:
        found.append(Question("first", "first", _FIRST, first))
    for term, be, u in _definitions(material)[:1]:
        phrasings = [p.replace("{term}", term).replace("{be}", be) for p in _DEFINE]
        found.append(Question("define", f"define:{term.lower()}", phrasings, u.text))
    prose = material.prose()
    if prose and len(sentences) >= 2:
        found.append(Question("about", "about", _ABOUT, prose[0].text))
    return found[:max_questions]


def _first_step(material: Material, sentences: list[Unit]) -> str:
    if material.steps:
        return material.steps[0]
    imperative = [u.text for u in sentences if starts_imperative(u.text)]
    return imperative[0] if imperative else ""


def candidates(ctx: FamilyContext, task: str = "qa") -> list[Candidate]:
    out = []
    for q in questions(ctx.material, ctx.cfg.max_questions):
        if (task, q.key) in ctx.seen:  # asked already in an earlier chunk of this section
            continue
        ctx.seen.add((task, q.key))
        rng = ctx.rng(task, q.key)
        for phrasing in draw(rng, q.phrasings, ctx.cfg.phrasings_per_task):
            instruction = phrasing.replace("{topic}", ctx.topic)
            out.append(ctx.candidate(task, CONTRACT, instruction, q.answer))
    return out
