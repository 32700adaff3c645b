"""The format guard: the answer format a user asked for is checked, retried, and never faked.

1. Which format: the one picked (UI picker, API `format` / `response_format`), else the one the
   question implies ("in 3 bullets" -> bullets:3, "as JSON" -> json:<schema>, "numbered list" ->
   numbered), else plain.
2. The prompt carries the contract's own hint (Contract.prompt_hint, the sentence the training
   pairs used), inside records.open_book_prompt when sections were retrieved.
3. Every attempt is judged by the contract's validator (sopforge.contracts, the same one ingest and
   eval use). A failed attempt is retried with the validation errors fed back, up to max_attempts;
   JSON is also decoded under its schema where the backend can (see engine.py).
4. An answer that still fails comes back with valid=False. Nothing here repairs an answer: callers
   show a failed result as a failure, never as the model's valid answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sopforge.contracts import Contract, ContractRegistry
from sopforge.records import SYSTEM_PROMPT, ContextSection, open_book_prompt, split_sources

Messages = list[dict[str, str]]
# (messages, contract) -> text deltas of one attempt, already citation-filtered
Generate = Callable[[Messages, Contract], Iterator[str]]

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10,
}  # fmt: skip
_BULLETS_RE = re.compile(
    r"\b(\d{1,2}|" + "|".join(_NUMBER_WORDS) + r")\s+(?:short\s+|key\s+|bullet\s+)?"
    r"(?:bullets?|bullet[- ]points?|points)\b",
    re.IGNORECASE,
)
_JSON_RE = re.compile(
    r"\b(?:as|in|into|to)\s+(?:a\s+)?json\b|\bjson\s+(?:object|format)\b", re.IGNORECASE
)
_NUMBERED_RE = re.compile(
    r"\bnumbered\s+(?:list|steps)\b|\bstep[- ]by[- ]step\s+list\b", re.IGNORECASE
)


def infer_format(question: str, json_schema: str = "procedure") -> str | None:
    """The contract spec a question implies, or None."""
    if m := _BULLETS_RE.search(question):
        word = m.group(1).lower()
        n = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        if 1 <= n <= 50:
            return f"bullets:{n}"
    if _JSON_RE.search(question):
        return f"json:{json_schema}"
    if _NUMBERED_RE.search(question):
        return "numbered"
    return None


def resolve_format(
    picked: str | None, question: str, registry: ContractRegistry, json_schema: str = "procedure"
) -> Contract:
    """The contract for this question: picked ('auto'/None = implied by the question), else plain."""
    spec = picked.strip() if picked else ""
    if spec in ("", "auto"):
        spec = infer_format(question, json_schema) or "plain"
    return registry.get(spec)


def user_message(question: str, contract: Contract, contexts: Sequence[ContextSection]) -> str:
    hint = contract.prompt_hint()
    asked = f"{question.strip()} {hint}".strip()
    return open_book_prompt(asked, contexts) if contexts else asked


def build_messages(
    question: str,
    contract: Contract,
    contexts: Sequence[ContextSection],
    history: Sequence[tuple[str, str]] = (),
) -> Messages:
    """System prompt, earlier turns (question, answer), then this question in open-book form."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": user_message(question, contract, contexts)})
    return messages


def retry_message(contract: Contract, errors: Sequence[str]) -> str:
    return (
        f"That answer does not follow the required format ({'; '.join(errors)}). "
        f"{contract.prompt_hint()} Answer the question again."
    ).strip()


@dataclass
class Attempt:
    text: str
    errors: list[str]


@dataclass
class GuardResult:
    contract: str
    valid: bool
    text: str  # the last attempt (the answer when valid; the failed output when not)
    errors: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def failure_message(self) -> str:
        return (
            f"The model could not produce a valid {self.contract} answer "
            f"after {len(self.attempts)} attempt(s): {'; '.join(self.errors[:2])}."
        )


def validate(contract: Contract, text: str) -> list[str]:
    body, _ = split_sources(text)
    return contract.validate(body)


@dataclass
class AttemptStart:
    number: int


@dataclass
class Delta:
    text: str


GuardEvent = AttemptStart | Delta | GuardResult


def guarded_stream(
    generate: Generate,
    messages: Messages,
    contract: Contract,
    max_attempts: int = 3,
) -> Iterator[GuardEvent]:
    """Attempts until one passes the contract; yields AttemptStart, Delta..., then one GuardResult."""
    convo = list(messages)
    attempts: list[Attempt] = []
    tries = max(1, max_attempts)  # plain fails only when empty (e.g. a bare "Source:" line)
    for number in range(1, tries + 1):
        yield AttemptStart(number)
        parts: list[str] = []
        for delta in generate(convo, contract):
            parts.append(delta)
            yield Delta(delta)
        text = "".join(parts)
        errors = validate(contract, text)
        attempts.append(Attempt(text, errors))
        if not errors:
            break
        convo += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": retry_message(contract, errors)},
        ]
    last = attempts[-1]
    yield GuardResult(contract.spec, not last.errors, last.text, last.errors, attempts)


def guarded_answer(
    generate: Generate, messages: Messages, contract: Contract, max_attempts: int = 3
) -> GuardResult:
    """guarded_stream without the events: the final result."""
    result = None
    for event in guarded_stream(generate, messages, contract, max_attempts):
        if isinstance(event, GuardResult):
            result = event
    assert result is not None  # guarded_stream always ends with a result
    return result
