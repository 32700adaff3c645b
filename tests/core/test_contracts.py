"""Format contracts: IFEval bullet counting, numbered lists, JSON Schema, custom contract files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sopforge.contracts import ContractError, ContractRegistry, count_bullets


@pytest.fixture(scope="module")
def reg():
    return ContractRegistry()


def test_bullets_ifeval_rule(reg):
    c = reg.get("bullets:3")
    assert c.is_valid("- a\n- b\n- c")
    assert c.is_valid("* a\n* b\n  - c")  # IFEval counts '*' and '-' lines, indented too
    assert not c.is_valid("- a\n- b")
    assert not c.is_valid("- a\n- b\n- c\n- d")
    assert count_bullets("**bold** line\n- x") == 1  # '**' is not a bullet
    assert "found 2" in c.validate("- a\n- b")[0]


def test_numbered(reg):
    c = reg.get("numbered")
    assert c.is_valid("1. Do this\n2. Then that\n3. Done")
    assert c.is_valid("1) a\n2) b")
    assert not c.is_valid("1. only one")
    assert "in order" in c.validate("1. a\n3. b")[0]


def test_json_procedure(reg):
    c = reg.get("json:procedure")
    ok = {
        "title": "T",
        "purpose": "P",
        "roles": ["Manager"],
        "steps": [{"order": 1, "action": "Do it"}],
    }
    assert c.is_valid(json.dumps(ok))
    assert c.is_valid("```json\n" + json.dumps(ok) + "\n```")
    assert "not valid JSON" in c.validate("{title: T}")[0]
    bad = dict(ok, steps=[{"order": 0, "action": ""}])
    errs = c.validate(json.dumps(bad))
    assert errs and any("steps/0" in e for e in errs)
    assert not c.is_valid(json.dumps(dict(ok, extra=1)))


def test_plain_and_empty(reg):
    assert reg.get("plain").is_valid("anything")
    assert reg.get("plain").validate("  ") == ["the answer is empty"]


def test_unknown_and_bad_specs(reg):
    for spec, needle in [
        ("bullets:x", "count"),
        ("bullets:0", "count"),
        ("json:nope", "no schema"),
        ("table", "unknown"),
    ]:
        with pytest.raises(ContractError, match=needle):
            reg.get(spec)


def test_custom_contract_files_need_no_code(tmp_path):
    (tmp_path / "ticket.schema.json").write_text(
        json.dumps(
            {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
        )
    )
    (tmp_path / "three_steps.yaml").write_text("name: three_steps\nkind: bullets\nn: 3\n")
    (tmp_path / "checklist.yaml").write_text(
        "name: checklist\nkind: regex\npattern: '^- \\[ \\]'\n"
    )
    reg = ContractRegistry(tmp_path)
    assert reg.get("json:ticket").is_valid('{"id": 3}')
    assert not reg.get("json:ticket").is_valid('{"id": "3"}')
    assert reg.get("three_steps").is_valid("- a\n- b\n- c")
    assert reg.get("checklist").is_valid("- [ ] badge")


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("bad.schema.json", '{"type": "objekt"}', "not a valid JSON Schema"),
        ("bad.schema.json", "{not json", "not valid JSON"),
        ("bad.yaml", "name: x\nkind: sparkles\n", "unknown kind"),
        ("bad.yaml", "name: x\nkind: regex\npattern: '('\n", "bad regex"),
        ("bad.yaml", "name: x\nkind: bullets\n", "integer 'n'"),
        ("bad.yaml", "kind: plain\n", "needs at least"),
        ("bad.yaml", "name: x\nkind: plain\ncolour: red\n", "unknown key"),
    ],
)
def test_invalid_contract_files_are_named(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(ContractError) as e:
        ContractRegistry(tmp_path)
    assert needle in str(e.value) and name in str(e.value)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400),
    st.sampled_from(["bullets:3", "numbered", "json:procedure", "plain", "checklist"]),
)
def test_validators_never_raise(text, spec):
    errors = ContractRegistry().get(spec).validate(text)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)
