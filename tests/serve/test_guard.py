"""The format guard: formats picked or implied, retries with the error fed back, never a fake pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sopforge.contracts import count_bullets, default_registry
from sopforge.serve.assistant import Assistant
from sopforge.serve.config import EngineConfig, GuardConfig, ServeConfig
from sopforge.serve.engine import Engine, LocalBackend, ModelSpec
from sopforge.serve.guard import (
    GuardResult,
    guarded_answer,
    guarded_stream,
    infer_format,
    resolve_format,
    split_sources,
    user_message,
)
from sopforge.serve.retrieval import Retriever

REGISTRY = default_registry()
SCHEMA = REGISTRY.get("json:procedure").schema


@pytest.mark.parametrize(
    ("question", "spec"),
    [
        ("Summarize the expense policy in 3 bullets", "bullets:3"),
        ("Give me five bullet points on onboarding", "bullets:5"),
        ("list it in 2 key points", "bullets:2"),
        ("Give me the deployment checklist as JSON", "json:procedure"),
        ("Return it in JSON format", "json:procedure"),
        ("Show the steps as a numbered list", "numbered"),
        ("I lost my badge, what do I do?", None),
        ("Who approves expenses over 500 dollars?", None),
    ],
)
def test_format_implied_by_the_question(question: str, spec: str | None) -> None:
    assert infer_format(question) == spec


def test_picked_format_wins_over_the_question_and_auto_falls_back_to_it() -> None:
    assert resolve_format("numbered", "in 3 bullets", REGISTRY).spec == "numbered"
    assert resolve_format("auto", "in 3 bullets", REGISTRY).spec == "bullets:3"
    assert resolve_format(None, "what now?", REGISTRY).spec == "plain"


def test_prompt_carries_the_contract_hint_in_open_book_form() -> None:
    from sopforge.records import ContextSection, open_book_prompt

    ctx = [ContextSection("Badge Policy", "Lost badge", "ab" * 32, "Report it.")]
    contract = REGISTRY.get("bullets:3")
    msg = user_message("What do I do?", contract, ctx)
    assert msg == open_book_prompt(f"What do I do? {contract.prompt_hint()}", ctx)


def test_trailing_source_line_is_not_part_of_the_format() -> None:
    body, line = split_sources('{"a": 1}\n\nSource: [Doc § Sec, v12345678]')
    assert (body, line) == ('{"a": 1}', "Source: [Doc § Sec, v12345678]")
    assert split_sources("no sources here") == ("no sources here", "")


def test_an_answer_that_is_only_a_source_line_is_empty_and_retried() -> None:
    bare = "Source: [Lost Badge § Procedure, v9ac7a9c7]"
    assert split_sources(bare) == ("", bare)
    seen: list[list[dict[str, str]]] = []
    good = "Report it to security within one hour.\n\n" + bare
    result = guarded_answer(
        scripted([bare, good], seen), [{"role": "user", "content": "q"}], REGISTRY.get("plain"), 3
    )
    assert result.valid and result.text == good and len(result.attempts) == 2
    assert "the answer is empty" in seen[1][-1]["content"]
    never = guarded_answer(
        scripted([bare], []), [{"role": "user", "content": "q"}], REGISTRY.get("plain"), 2
    )
    assert not never.valid and never.errors == ["the answer is empty"]


def scripted(answers: list[str], seen: list[list[dict[str, str]]]) -> Any:
    """A generate() that plays back answers in order and records the prompts it was given."""

    def generate(messages: list[dict[str, str]], contract: Any) -> Iterator[str]:
        seen.append(list(messages))
        text = answers[min(len(seen) - 1, len(answers) - 1)]
        yield from (text[i : i + 7] for i in range(0, len(text), 7))

    return generate


def test_invalid_answer_is_retried_with_the_error_fed_back() -> None:
    seen: list[list[dict[str, str]]] = []
    good = "- one\n- two\n- three"
    result = guarded_answer(
        scripted(["- only one", good], seen),
        [{"role": "user", "content": "q"}],
        REGISTRY.get("bullets:3"),
        3,
    )
    assert result.valid and result.text == good and len(result.attempts) == 2
    retry = seen[1][-1]["content"]
    assert seen[1][-2] == {"role": "assistant", "content": "- only one"}
    assert "expected exactly 3 bullets, found 1" in retry


def test_answer_that_keeps_failing_is_returned_as_failed_never_repaired() -> None:
    seen: list[list[dict[str, str]]] = []
    events = list(
        guarded_stream(
            scripted(["- a\n- b"], seen),
            [{"role": "user", "content": "q"}],
            REGISTRY.get("bullets:3"),
            3,
        )
    )
    result = events[-1]
    assert isinstance(result, GuardResult)
    assert not result.valid and len(result.attempts) == 3
    assert result.text == "- a\n- b"  # the model's own output, not a fixed-up one
    assert "could not produce a valid bullets:3 answer" in result.failure_message()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet='-* ab\n{}":[]1', max_size=40), min_size=1, max_size=4))
def test_valid_means_the_validator_passes_whatever_the_model_writes(answers: list[str]) -> None:
    for spec in ("bullets:3", "json:procedure", "numbered"):
        contract = REGISTRY.get(spec)
        result = guarded_answer(
            scripted(answers, []), [{"role": "user", "content": "q"}], contract, 3
        )
        assert result.valid == contract.is_valid(split_sources(result.text)[0])


QUESTIONS = [
    "I lost my badge, what do I do?",
    "Who approves expenses?",
    "How do I deploy?",
    "What happens when a deployment fails?",
    "Where do I get a replacement badge?",
    "Do I need receipts for a claim?",
    "What is the rollback procedure?",
    "Who disables a lost badge?",
    "Give me the deployment checklist",
    "How fast must I report a lost badge?",
    "What does facilities do?",
    "expense approval limit",
]


@pytest.fixture(scope="module")
def assistants(
    helpers: Any,
    tiny_model_dir: Any,
    talking_model_dir: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> list[Assistant]:
    """Assistants over the random tiny model and the overfitted one (which is sometimes right)."""
    from sopforge.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("guard-ws"))
    helpers.fill_workspace(ws)
    cfg = ServeConfig(guard=GuardConfig(max_attempts=2))
    out = []
    for name, folder in (("tiny", tiny_model_dir), ("talking", talking_model_dir)):
        ecfg = EngineConfig(dtype="float32", max_new_tokens=80, threads=1)
        engine = Engine(LocalBackend(ModelSpec(name, str(folder)), ecfg), ecfg)
        out.append(Assistant(ws, engine, Retriever(ws), REGISTRY, cfg))
    return out


@pytest.mark.integration
def test_every_answer_marked_valid_really_is_valid(assistants: list[Assistant]) -> None:
    """The guard's promise over many real generations: valid => the contract's validator passes.
    (The overfitted model gets some right, so the property is not vacuously true.)"""
    n_valid = {"json:procedure": 0, "bullets:3": 0}
    for assistant in assistants:
        for question in QUESTIONS:
            for spec in n_valid:
                answer = assistant.answer(question, user="t", channel="test", format=spec)
                assert answer.format == spec
                if answer.valid:
                    n_valid[spec] += 1
                    if spec == "bullets:3":
                        assert count_bullets(answer.body) == 3
                    else:
                        import jsonschema

                        jsonschema.validate(json.loads(answer.body), SCHEMA)
                else:
                    assert answer.text.startswith("The model could not produce a valid")
                    assert answer.body == ""
    assert n_valid["bullets:3"] > 0 and n_valid["json:procedure"] > 0
