"""Faithfulness: an extractive answer may only use words of its source section.

`unsupported_words` lists the answer's content words that the source never uses. Content words
are lowercase alphanumeric tokens minus stop words, minus the fixed scaffold words the answer
templates add ("First, ... Then, ... So, ..."), minus list markers, and for JSON contracts minus
the object's keys (only its string values are checked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from sopforge.contracts import extract_json
from sopforge.ingest.tasks.scenario import SCAFFOLD
from sopforge.ingest.tasks.text import STOP_WORDS, tokens

_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+", re.MULTILINE)
IGNORED = STOP_WORDS | SCAFFOLD


def _strings(obj: Any) -> Iterator[str]:
    """Every string value in a JSON value (keys and numbers excluded)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _answer_text(answer: str, contract: str) -> str:
    if contract.startswith("json"):
        try:
            return "\n".join(_strings(extract_json(answer)))
        except json.JSONDecodeError:
            pass  # not JSON: check every token, so the answer cannot pass by being broken
    return _LIST_MARKER.sub("", answer)


def unsupported_words(answer: str, source: str, contract: str) -> list[str]:
    """Content words of `answer` (in order, once each) that do not occur in `source`."""
    known = set(tokens(source))
    out: list[str] = []
    for word in tokens(_answer_text(answer, contract)):
        if word in IGNORED or word in known or word in out:
            continue
        out.append(word)
    return out
