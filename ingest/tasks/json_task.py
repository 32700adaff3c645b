"""json: "Give me <title> as JSON" -> one object valid against the procedure schema.

Every value is cut from the section: title = the heading, purpose = its first prose sentence,
roles = the role phrases it names (the first `MAX_ROLES`), steps = its procedure (an actor only
where the step text names one), notes = its rules and conditions outside the steps. Keys always come in the schema's
order and the JSON is compact (one line), so the model sees one consistent form.
"""

from __future__ import annotations

import json
from typing import Any

from sopforge.ingest.tasks.base import Candidate, FamilyContext, draw
from sopforge.ingest.tasks.material import Material
from sopforge.ingest.tasks.qa import conditional_units
from sopforge.ingest.tasks.text import (
    OBLIGATION,
    clean_inline,
    find_roles,
    starts_imperative,
    strip_numbering,
)

MAX_NOTES = 3
# A long appendix can name twenty roles; listed in full they are noise in a procedure object and
# the pattern a small model loops on ("roles": ["User", "User", ...).
MAX_ROLES = 6
MAX_RULE_STEPS = 8

_PHRASINGS = [
    "Give me {topic} as JSON.",
    "Return {topic} as a JSON object.",
    "Convert {topic} into JSON.",
    "Output the procedure for {topic} in JSON format.",
    "I need {topic} as structured JSON.",
    "Turn {topic} into a JSON procedure.",
    "Represent {topic} as JSON.",
    "Can I get {topic} in JSON?",
    "Express the steps of {topic} as JSON.",
    "Format {topic} as a JSON document.",
]


def dumps(obj: Any) -> str:
    """The one JSON form answers use: a single line, readable separators, no ASCII escaping."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def step_actor(action: str) -> str | None:
    """The role a step names as its doer ('The QMO reviews ...'), not one it merely mentions
    ('Contact the operators'): a role among the step's first words, in a step that is not an
    instruction to the reader."""
    if starts_imperative(action):
        return None
    lead = " ".join(action.split()[:6])
    roles = find_roles(lead)
    return roles[0] if roles else None


def actions(m: Material) -> list[str]:
    """What goes into "steps": the section's procedure; else its longest list; else its rules
    and instructions (sentences with must/should/never..., or starting with a verb).

    Broader than the steps family on purpose: every section with something to do can be
    rendered under the schema, which gives the model many examples of the one JSON form.
    """
    if len(m.steps) >= 2:
        return m.steps
    lists = [items for items in m.lists if len(items) >= 2]
    if lists:
        return max(lists, key=len)
    rules = [
        u.text
        for u in m.sentences()
        if u.kind != "row" and (OBLIGATION.search(u.text) or starts_imperative(u.text))
    ]
    return rules[:MAX_RULE_STEPS]


def procedure(ctx: FamilyContext) -> dict[str, Any] | None:
    """The section as a procedure object, or None when it has nothing to do in it."""
    m = ctx.material
    step_list = actions(m)
    if not step_list:
        return None
    step_texts = set(step_list)
    title = strip_numbering(clean_inline(ctx.section.section_title))
    prose = [u for u in m.prose() if u.text not in step_texts]
    if prose:
        purpose = prose[0].text
    else:
        lead_ins = [
            u.text.rstrip(":,; ")
            for u in m.units
            if u.kind == "sentence" and u.text.endswith((":", ","))
        ]
        # A section of bare clauses states no purpose: name what it is part of instead.
        purpose = lead_ins[0] if lead_ins else f"{clean_inline(ctx.section.doc_title)}: {title}"
    steps = []
    for i, action in enumerate(step_list, 1):
        step: dict[str, Any] = {"order": i, "action": action}
        actor = step_actor(action)
        if actor:
            step["actor"] = actor
        steps.append(step)
    conditional = {u.text for u, *_ in conditional_units(m)}
    notes = [
        u.text
        for u in prose[1:]
        if u.text != purpose and (OBLIGATION.search(u.text) or u.text in conditional)
    ][:MAX_NOTES]
    obj: dict[str, Any] = {
        "title": title,
        "purpose": purpose,
        "roles": m.roles[:MAX_ROLES],
        "steps": steps,
    }
    if notes:
        obj["notes"] = notes
    return obj


def candidates(ctx: FamilyContext) -> list[Candidate]:
    obj = procedure(ctx)
    if obj is None:
        return []
    contract = f"json:{ctx.cfg.json_schema}"
    rng = ctx.rng("json")
    answer = dumps(obj)
    return [
        ctx.candidate("json", contract, p.replace("{topic}", ctx.topic), answer)
        for p in draw(rng, _PHRASINGS, ctx.cfg.phrasings_per_task)
    ]
