"""Grammars that make a format contract hold by construction when the answer is decoded.

    grammar, limit = plan(contract, room, max_new_tokens, citations=["[Badges § Lost, v12ab34cd]"])
    request = {"prompt": ids, "n_predict": limit, **grammar.request_fields()}

- `bullets:N`: exactly N lines `- ...`; IFEval's count (core/contracts.py) is N whatever the text.
- `numbered`: `1. ...` `2. ...` in order, at least two and at most MAX_STEPS.
- Lines are bounded (LINE_CHARS) and `plan` gives the token limit the longest answer needs, so
  the limit cannot cut an answer short of its N-th bullet or its closing brace.
- `json:NAME`: the schema itself (llguidance's `%json`), after `bounded_schema` has given every
  string a `maxLength` and every array a `maxItems` where the schema leaves them open, so the
  answer has a size bound and `json_budget` can give a token limit that cannot cut it mid-value.
- Every format above may end with the open-book citation line `Source: [...]`, and only with one
  of the citations retrieved for the question.
- `plain`: free text; when citations were retrieved, a lazy grammar takes over at the first
  `Source:` and admits only those citations there (then, after a line break, any text).

The grammars are llguidance's Lark dialect (`%llguidance`), which llama.cpp's server takes in its
`grammar` field; the lazy one is GBNF (llama.cpp's own grammars, which have the trigger words).
Pure functions on plain data: the engine (core/llamaserver.py) sends them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sopforge.contracts import Contract

MAX_STEPS = 20  # longest numbered list the grammar admits
MAX_NUMBER = 10**12  # bound given to a JSON number whose schema sets none
LINE_CHARS = 240  # longest bullet or step line the grammar admits
MAX_STRING = 200  # characters given to a JSON string whose schema sets no maxLength
MAX_ITEMS = 12  # items given to a JSON array whose schema sets no maxItems
SOURCE_PREFIX = "Source: "
# One line, the separators of ingest's JSON answers (ingest/tasks/json_task.py): the layout the
# model was trained on, and no whitespace for it to wander in.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@dataclass(frozen=True)
class Grammar:
    text: str
    lazy_trigger: str = ""  # non-empty: the grammar applies from this word on (GBNF)

    def request_fields(self) -> dict[str, Any]:
        """The fields of a llama.cpp server request that carry this grammar."""
        fields: dict[str, Any] = {"grammar": self.text}
        if self.lazy_trigger:
            fields["grammar_lazy"] = True
            fields["grammar_triggers"] = [{"type": 1, "value": self.lazy_trigger}]  # 1: a word
        return fields


def _lark_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _gbnf_string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


def _tail_rules(citations: Sequence[str]) -> list[str]:
    """Lark rules of an optional trailing citation line, one of `citations`."""
    if not citations:
        return ['tail: ""']
    cites = " | ".join(_lark_string(c) for c in dict.fromkeys(citations))
    return [f"tail: ({_lark_string(chr(10) * 2 + SOURCE_PREFIX)} cite)?", f"cite: {cites}"]


def _numbered_rule(steps: int) -> str:
    """`1. a` newline `2. b` ... nested so that the numbers can only come in order."""
    rest = ""
    for n in range(steps, 2, -1):
        rest = f'("\\n{n}. " step{rest})?'
    return f'body: "1. " step "\\n2. " step {rest}'


def _line(chars: int) -> str:
    """A regex of one line of text: 1..chars characters, not starting or ending with a space."""
    return rf"/[^\s]([^\n]{{0,{max(0, chars - 2)}}}[^\s])?/"


def answer_grammar(
    contract: Contract,
    citations: Sequence[str] = (),
    *,
    line_chars: int = LINE_CHARS,
    max_steps: int = MAX_STEPS,
) -> Grammar | None:
    """The grammar that admits only answers valid under `contract` (None: no grammar fits it).
    Lines of bullets and steps hold at most `line_chars` characters, so that an answer has a
    size bound (see `plan`)."""
    if contract.kind == "bullets":
        items = ' "\\n" '.join(["bullet"] * contract.n)
        rules = [f"body: {items}", f'bullet: "- " {_line(line_chars)}']
    elif contract.kind == "numbered":
        rules = [_numbered_rule(max_steps), f"step: {_line(line_chars)}"]
    elif contract.kind == "json" and contract.schema is not None:
        schema = {**bounded_schema(contract.schema), "x-guidance": JSON_LAYOUT}
        rules = ["body: %json " + json.dumps(schema, ensure_ascii=False)]
    elif contract.kind == "plain" and citations:
        cites = " | ".join(_gbnf_string(c) for c in dict.fromkeys(citations))
        # after the citation the model may go on (a Source line written first, then the answer)
        return Grammar(
            f"root ::= {_gbnf_string(SOURCE_PREFIX)} cite rest\ncite ::= {cites}\n"
            'rest ::= ("\\n" ([^\\n] | "\\n")*)?\n',
            lazy_trigger=SOURCE_PREFIX.strip(),
        )
    else:
        return None
    return Grammar(
        "\n".join(["%llguidance {}", "start: body tail", *rules, *_tail_rules(citations)])
    )


def plan(
    contract: Contract | None, room: int, max_new_tokens: int, citations: Sequence[str] = ()
) -> tuple[Grammar | None, int]:
    """(grammar, token limit) for one answer with `room` tokens left in its context.

    A format with a grammar gets the limit its grammar's longest answer needs, with the
    grammar's bounds (line length, list length, JSON string lengths and item counts) tightened
    until that fits in `room` (counted one token per character:
    every character of a byte-level BPE vocabulary's common scripts is at most one token; a
    rare character split into byte tokens can still make an answer reach the limit, which the
    format guard then reports as invalid). The answer then ends by the grammar, not by the
    limit. Plain answers get `max_new_tokens`."""
    if contract is None:
        return None, min(max_new_tokens, room)
    budget = room
    tail = (
        (max((len(c) for c in citations), default=0) + len(SOURCE_PREFIX) + 2) if citations else 0
    )
    if contract.kind == "json" and contract.schema is not None:
        bounded, limit = json_budget(contract, budget, citations)
        return answer_grammar(bounded, citations), min(limit, room)
    if contract.kind in ("bullets", "numbered"):
        lines = contract.n if contract.kind == "bullets" else MAX_STEPS
        chars = LINE_CHARS
        # each line: its text, a prefix ("- " or "NN. ") and the line break
        while lines * (chars + 5) + tail > budget and (chars > 24 or lines > 2):
            if contract.kind == "numbered" and lines > 8:
                lines -= 2
            elif chars > 24:
                chars = max(24, chars * 3 // 4)
            else:
                lines = max(2, lines - 1)
        grammar = answer_grammar(contract, citations, line_chars=chars, max_steps=lines)
        return grammar, min(room, lines * (chars + 5) + tail)
    return answer_grammar(contract, citations), min(max_new_tokens, room)


def bounded_schema(schema: Any, max_string: int = MAX_STRING, max_items: int = MAX_ITEMS) -> Any:
    """`schema` with a maxLength on every string, a maxItems on every array and a range on every
    number that has none (never wider than the schema allows): every answer it admits is valid
    under `schema`, and its size has a bound (`max_json_chars`)."""
    if isinstance(schema, list):
        return [bounded_schema(s, max_string, max_items) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_schema(v, max_string, max_items) for k, v in schema.items()}
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "enum" not in schema and "const" not in schema:
        low = int(schema.get("minLength", 0))
        out["maxLength"] = max(low, min(int(schema.get("maxLength", max_string)), max_string))
    if ("integer" in kinds or "number" in kinds) and "enum" not in schema:
        # digits without end are a loop too; 10^12 is past any count or order a procedure has
        out.setdefault("maximum", max(MAX_NUMBER, schema.get("minimum", 0)))
        out.setdefault("minimum", min(-MAX_NUMBER, schema.get("maximum", 0)))
    if "array" in kinds:
        low = int(schema.get("minItems", 0))
        out["maxItems"] = max(low, min(int(schema.get("maxItems", max_items)), max_items))
    return out


_WS = 2  # the separator after a value (JSON_LAYOUT: no other whitespace)


def max_json_chars(schema: Any, depth: int = 0) -> int:
    """An upper bound on the length in characters of any JSON text a bounded schema admits
    laid out as JSON_LAYOUT. Unbounded parts count as 1 M."""
    if depth > 32 or not isinstance(schema, dict):
        return 1 << 20
    if "const" in schema:
        return len(json.dumps(schema["const"])) + _WS
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) + _WS
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return max(max_json_chars(s, depth + 1) for s in schema[key])
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    sizes = []
    for kind in kinds:
        if kind == "string":
            sizes.append(int(schema.get("maxLength", 1 << 20)) + 2 + _WS)
        elif kind in ("integer", "number"):
            sizes.append(32 + _WS)
        elif kind in ("boolean", "null"):
            sizes.append(5 + _WS)
        elif kind == "array":
            item = max_json_chars(schema.get("items", {}), depth + 1)
            sizes.append(int(schema.get("maxItems", 1 << 20)) * (item + 1) + 2 + _WS)
        elif kind == "object":
            props = schema.get("properties", {})
            if schema.get("additionalProperties", True) is not False and "properties" in schema:
                return 1 << 20
            body = sum(
                len(json.dumps(k)) + 2 + max_json_chars(v, depth + 1) for k, v in props.items()
            )
            sizes.append(body + 2 + _WS)
        else:
            return 1 << 20
    return max(sizes) if sizes else 1 << 20


def json_budget(
    contract: Contract, room: int, citations: Sequence[str] = ()
) -> tuple[Contract, int]:
    """(contract to decode under, token limit) for a JSON answer that has `room` tokens left in
    the context: the bound schema tightened (halving its string and array bounds) until its
    longest answer, plus the citation line, fits in `room` counted one token per character. The
    answer then ends by the grammar, not by the limit, for text whose characters are each at
    most one token (every character of a byte-level BPE vocabulary's common scripts; a rare
    character split into byte tokens can still make an answer reach the limit, which the format
    guard then reports as invalid)."""
    tail = max((len(c) for c in citations), default=0) + len(SOURCE_PREFIX) + 2
    max_string, max_items = MAX_STRING, MAX_ITEMS
    while True:
        schema = bounded_schema(contract.schema, max_string, max_items)
        need = max_json_chars(schema) + (tail if citations else 0)
        if need <= room or (max_string <= 16 and max_items <= 2):
            bounded = Contract(
                contract.spec, "json", schema=schema, instruction=contract.instruction
            )
            return bounded, need
        max_string, max_items = max(16, max_string // 2), max(2, max_items // 2)
