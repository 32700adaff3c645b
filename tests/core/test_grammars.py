"""Format grammars as data: bounded schemas only tighten, the size bound holds, the token plan
fits the context, citations are quoted safely. (Decoding under them: tests/serve/test_llamacpp.py.)"""

from __future__ import annotations

import json

import jsonschema
import pytest

from sopforge.contracts import Contract, default_registry
from sopforge.grammars import (
    MAX_ITEMS,
    MAX_STRING,
    answer_grammar,
    bounded_schema,
    json_budget,
    max_json_chars,
    plan,
)

PROCEDURE = default_registry().get("json:procedure")
CITES = ['[Badges § Lost "badge", v1234abcd]', "[Badges § Rules, v99887766]"]


def test_bounded_schema_only_tightens_and_keeps_the_schemas_own_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 10},
            "long": {"type": "string", "minLength": 500},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "n": {"type": "integer", "minimum": 1},
            "kind": {"type": "string", "enum": ["a", "b"]},
        },
    }
    out = bounded_schema(schema)
    props = out["properties"]
    assert props["short"]["maxLength"] == 10  # never loosened
    assert props["long"]["maxLength"] >= 500  # never below what the schema requires
    assert props["tags"]["maxItems"] == MAX_ITEMS and props["tags"]["minItems"] == 1
    assert props["tags"]["items"]["maxLength"] == MAX_STRING
    assert props["n"]["minimum"] == 1 and props["n"]["maximum"] >= 1
    assert "maxLength" not in props["kind"]
    assert schema["properties"]["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
    }  # the input is not changed


def test_the_size_bound_holds_for_the_largest_answer_the_bounded_schema_admits() -> None:
    schema = bounded_schema(PROCEDURE.schema, 30, 3)
    step = {"order": 10**12, "action": "a" * 30, "actor": "b" * 30}
    largest = {
        "title": "t" * 30,
        "purpose": "p" * 30,
        "roles": ["r" * 30] * 3,
        "steps": [step] * 3,
        "notes": ["n" * 30] * 3,
        "source": "s" * 30,
    }
    jsonschema.validate(largest, schema)
    jsonschema.validate(largest, PROCEDURE.schema)  # bounded answers are valid answers
    text = json.dumps(largest, separators=(", ", ": "))
    assert len(text) <= max_json_chars(schema)
    assert max_json_chars({"type": "object", "properties": {"x": {"type": "string"}}}) >= 1 << 20


@pytest.mark.parametrize("room", [300, 1000, 3000])
def test_a_json_budget_fits_its_room(room: int) -> None:
    bounded, limit = json_budget(PROCEDURE, room, CITES)
    assert limit <= room or bounded.schema["properties"]["title"]["maxLength"] == 16
    assert limit >= max_json_chars(bounded.schema)


def test_the_plan_gives_formats_the_tokens_their_grammar_needs() -> None:
    registry = default_registry()
    for spec in ("bullets:3", "bullets:7", "numbered"):
        grammar, limit = plan(registry.get(spec), 3000, 64, CITES)
        assert grammar is not None and 64 < limit <= 3000
    grammar, limit = plan(registry.get("bullets:3"), 150, 64, CITES)  # a small room
    assert limit <= 150 + len(CITES[0]) and "{0," in grammar.text
    assert plan(registry.get("plain"), 3000, 64, ())[1] == 64
    assert plan(None, 40, 64)[1] == 40


def test_grammars_name_every_citation_quoted_and_nothing_else() -> None:
    bullets = answer_grammar(Contract("bullets:2", "bullets", n=2), CITES)
    assert bullets is not None and bullets.text.startswith("%llguidance")
    assert json.dumps(CITES[0], ensure_ascii=False) in bullets.text
    assert bullets.text.count('"- "') == 1 and 'bullet "\\n" bullet' in bullets.text
    plain = answer_grammar(Contract("plain", "plain"), CITES)
    assert plain is not None and plain.lazy_trigger == "Source:"
    assert '\\"badge\\"' in plain.text  # GBNF-escaped quote
    assert plain.request_fields()["grammar_lazy"] is True
    assert answer_grammar(Contract("plain", "plain"), ()) is None
    numbered = answer_grammar(Contract("numbered", "numbered"), ())
    assert numbered is not None and '"\\n3. "' in numbered.text and 'tail: ""' in numbered.text
