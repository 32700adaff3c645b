"""The dataset record: the contract between ingest (writes), train/eval (read) and serve (prompts).

One JSON object per line of ``train.jsonl`` / ``eval.jsonl``::

    {
      "id": "3f1c...",                       # hash of the record's content
      "messages": [                          # chat form, loadable by datasets / TRL as is
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Summarize ... in 3 bullets. Answer with exactly 3 bullet ..."},
        {"role": "assistant", "content": "- ...\\n- ...\\n- ..."}
      ],
      "task": "summary",                     # qa | steps | summary | json | scenario | open_book | replay
      "contract": "bullets:3",               # a spec understood by sopforge.contracts
      "generator": "extractive",             # extractive | teacher:<model> | replay
      "provenance": {"doc_id": "...", "version": "<sha256>", "section_id": "A > B",
                      "section_title": "B", "content_hash": "...", "span": [start, end]}
    }

`span` is a character range in the version's canonical text (`Document.render()`).
The open-book prompt form lives here too, because serving must show the model retrieved context
exactly the way the `open_book` training pairs did.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = (
    "You are the company's procedures assistant. Answer from the company's standard operating "
    "procedures, and follow the requested answer format exactly."
)

TASKS = ("qa", "steps", "summary", "json", "scenario", "open_book", "replay")
# Tasks whose prompts carry the retrieved sources (the right section among distractors) and whose
# answers end with the citation, the way the served assistant is always asked: `open_book` (the qa
# questions) and `json` (a procedure is turned into JSON from the text in front of the model, not
# recalled; a 135M model asked from memory invents the content and loops, see README "Quality").
OPEN_BOOK_TASKS = frozenset({"open_book", "json"})
REQUIRED_KEYS = ("id", "messages", "task", "contract", "generator", "provenance")
PROVENANCE_KEYS = ("doc_id", "version", "section_id", "section_title", "content_hash", "span")


class RecordError(ValueError):
    pass


def record_id(messages: Sequence[dict[str, str]], contract: str) -> str:
    h = hashlib.sha256(json.dumps([list(messages), contract], sort_keys=True).encode())
    return h.hexdigest()[:20]


def make_record(
    user: str,
    answer: str,
    *,
    task: str,
    contract: str,
    generator: str,
    provenance: dict[str, Any],
    system: str = SYSTEM_PROMPT,
) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]
    rec = {
        "id": record_id(messages, contract),
        "messages": messages,
        "task": task,
        "contract": contract,
        "generator": generator,
        "provenance": provenance,
    }
    check_record(rec)
    return rec


def check_record(rec: dict[str, Any]) -> None:
    """Raise RecordError if `rec` does not have the record shape (not its contract: see contracts)."""
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise RecordError(f"record is missing {missing}")
    if rec["task"] not in TASKS:
        raise RecordError(f"unknown task {rec['task']!r}")
    msgs = rec["messages"]
    if (
        not msgs
        or msgs[-1].get("role") != "assistant"
        or not all(
            isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
            for m in msgs
        )
    ):
        raise RecordError("messages must be role/content dicts ending with the assistant answer")
    prov = rec["provenance"]
    if rec["task"] != "replay":
        missing = [k for k in PROVENANCE_KEYS if k not in prov]
        if missing:
            raise RecordError(f"provenance is missing {missing}")


def answer_of(rec: dict[str, Any]) -> str:
    return rec["messages"][-1]["content"]


def prompt_of(rec: dict[str, Any]) -> list[dict[str, str]]:
    return rec["messages"][:-1]


def cut_section(text: str, max_chars: int) -> str:
    """A long section cut at a word boundary (0 = no cut): how retrieved sections fit a prompt."""
    if max_chars and len(text) > max_chars:
        return text[:max_chars].rsplit(" ", 1)[0] + " …"
    return text


@dataclass(frozen=True)
class ContextSection:
    """A retrieved section shown to the model in an open-book prompt."""

    doc_title: str
    section_title: str
    version: str
    text: str

    @property
    def citation(self) -> str:
        return citation(self.doc_title, self.section_title, self.version)


def citation(doc_title: str, section_title: str, version: str) -> str:
    """The citation form answers use: ``[Document § Section, v1a2b3c4]``."""
    return f"[{doc_title} § {section_title}, v{version[:8]}]"


# A trailing "Source: [..]" line (how open-book answers end) is not part of the answer's format.
_SOURCE_LINE_RE = re.compile(r"(?:^|\n)\s*Sources?:\s*(\[[^\n]*\]\s*)+$")


def split_sources(text: str) -> tuple[str, str]:
    """(answer body, trailing 'Source: [...]' line or '')."""
    m = _SOURCE_LINE_RE.search(text)
    if not m:
        return text, ""
    return text[: m.start()], m.group(0).strip()


OPEN_BOOK_INTRO = "Use the procedure sources below to answer. Cite the source you used."


def open_book_prompt(question: str, contexts: Sequence[ContextSection]) -> str:
    """The user message of an open-book pair (and of every served question)."""
    blocks = [f"Source {c.citation}\n{c.text.strip()}" for c in contexts]
    return f"{OPEN_BOOK_INTRO}\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question.strip()}"


_SOURCE_BLOCK_RE = re.compile(r"^Source (\[[^\n]*\])$", re.MULTILINE)


def prompt_citations(prompt: str) -> list[str]:
    """The citations of the sources an open-book prompt shows (what its answer may cite)."""
    return _SOURCE_BLOCK_RE.findall(prompt) if prompt.startswith(OPEN_BOOK_INTRO) else []


def question_of(prompt: str) -> str:
    """The question of a user message: what follows an open-book prompt's "Question:", else all of it."""
    return prompt.rsplit("\n\nQuestion: ", 1)[-1]
