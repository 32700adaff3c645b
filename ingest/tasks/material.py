"""What a section offers the task families: its sentences, its steps, the roles it names.

`material_from_blocks` reads a section's blocks once; `blocks_from_markdown` turns a chunk of a
section's Markdown body (as `Block.render` wrote it) back into blocks, so long sections chunked
by `sopforge.ingest.chunk` go through the same path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sopforge.ingest.document import Block
from sopforge.ingest.tasks.text import (
    clean_inline,
    content_words,
    find_roles,
    split_sentences,
    starts_imperative,
    word_count,
)

MAX_UNIT_WORDS = 60  # longer sentences make poor bullets and answers
MAX_STEP_WORDS = 45  # a long list item is cut to its leading sentences


@dataclass(frozen=True)
class Unit:
    """One answerable piece of a section: a sentence, a list-item sentence, or a table row."""

    text: str
    kind: str  # sentence | item | row
    block: int  # index of the block it came from
    item: int = -1  # index of the list item, for list units

    @property
    def words(self) -> int:
        return word_count(self.text)


@dataclass
class Material:
    units: list[Unit] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    step_source: str = ""  # ordered | unordered | imperative | ""
    step_block: int = -1
    roles: list[str] = field(default_factory=list)
    words: int = 0
    lists: list[list[str]] = field(default_factory=list)  # every list's items, cleaned

    def sentences(self) -> list[Unit]:
        """Units usable as answers: complete, not lead-ins to a list (ending in ':')."""
        return [
            u for u in self.units if 3 <= u.words <= MAX_UNIT_WORDS and not u.text.endswith(":")
        ]

    def prose(self) -> list[Unit]:
        """Sentences from paragraphs only (not list items or tables)."""
        return [u for u in self.sentences() if u.kind == "sentence"]


def _row_text(header: list[str], row: list[str]) -> str:
    cells = [clean_inline(c) for c in row]
    if header and len(header) == len(row) and any(h.strip() for h in header):
        pairs = [f"{clean_inline(h)}: {c}" for h, c in zip(header, cells, strict=True) if c]
        return "; ".join(pairs)
    return "; ".join(c for c in cells if c)


def _units_of_block(index: int, block: Block) -> list[Unit]:
    if block.kind == "paragraph":
        return [Unit(s, "sentence", index) for s in split_sentences(clean_inline(block.text))]
    if block.kind in ("ordered", "unordered"):
        return [
            Unit(s, "item", index, i)
            for i, item in enumerate(block.items)
            for s in split_sentences(clean_inline(item))
        ]
    if block.kind == "table" and len(block.rows) >= 2:
        header = block.rows[0]
        rows = [_row_text(header, r) for r in block.rows[1:]]
        return [Unit(r, "row", index, i) for i, r in enumerate(rows) if r and content_words(r)]
    return []


def _shorten_step(item: str) -> str:
    """A step is its item's text; very long items keep their leading sentences only."""
    text = clean_inline(item)
    if word_count(text) <= MAX_STEP_WORDS:
        return text
    out: list[str] = []
    for sentence in split_sentences(text):
        if out and word_count(" ".join([*out, sentence])) > MAX_STEP_WORDS:
            break
        out.append(sentence)
    return " ".join(out)


_SEQUENCE_STARTS = frozenset(
    "after once when if then first next finally before until while during within".split()
)


def _is_action(item: str) -> bool:
    """Does a list item read like a step: a verb first ('Submit the form'), possibly after a
    leading clause ('For all requests, submit ...'), or a sequence word ('Once approved, ...')?"""
    text = clean_inline(item)
    if starts_imperative(text):
        return True
    words = text.split()
    if words and words[0].lower().strip(",") in _SEQUENCE_STARTS:
        return True
    _, comma, rest = text.partition(", ")
    return bool(comma) and starts_imperative(rest)


def _procedural(items: list[str], share: float) -> bool:
    return len(items) >= 2 and sum(map(_is_action, items)) >= share * len(items)


def _find_steps(blocks: list[Block], units: list[Unit]) -> tuple[list[str], str, int]:
    """The section's procedure: its longest numbered list that reads like steps (a third of its
    items are actions), else the longest bulleted list of mostly actions, else its imperative
    sentences (when there are 2+). Numbered lists of statements (policy clauses) are not steps."""
    for kind, share in (("ordered", 1 / 3), ("unordered", 1 / 2)):
        lists = [
            (i, b) for i, b in enumerate(blocks) if b.kind == kind and _procedural(b.items, share)
        ]
        if lists:
            i, b = max(lists, key=lambda ib: (len(ib[1].items), -ib[0]))
            return [s for s in map(_shorten_step, b.items) if s], kind, i
    imperative = [
        u.text for u in units if u.kind == "sentence" and starts_imperative(u.text) and u.words >= 3
    ]
    if len(imperative) >= 2:
        return [s for s in map(_shorten_step, imperative) if s], "imperative", -1
    return [], "", -1


def material_from_blocks(blocks: list[Block]) -> Material:
    units = [u for i, b in enumerate(blocks) for u in _units_of_block(i, b)]
    steps, source, step_block = _find_steps(blocks, units)
    text = " ".join(u.text for u in units)
    return Material(
        units=units,
        steps=[s for s in steps if content_words(s)],
        step_source=source,
        step_block=step_block,
        roles=find_roles(text),
        words=word_count(text),
        lists=[
            [s for s in map(_shorten_step, b.items) if content_words(s)]
            for b in blocks
            if b.kind in ("ordered", "unordered")
        ],
    )


_ORDERED_LINE = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_BULLET_LINE = re.compile(r"^\s*[-*+]\s+(.*)$")


def blocks_from_markdown(text: str) -> list[Block]:
    """Blocks of a Markdown body written by `Block.render` (paragraphs, lists, tables, code)."""
    blocks: list[Block] = []
    for group in _groups(text):
        lines = group.split("\n")
        first = lines[0].strip()
        if first.startswith("```"):
            inner = [ln for ln in lines[1:] if not ln.strip().startswith("```")]
            blocks.append(Block("code", text="\n".join(inner)))
        elif all(ln.strip().startswith("|") for ln in lines if ln.strip()):
            rows = [
                [c.strip() for c in ln.strip().strip("|").split("|")]
                for ln in lines
                if ln.strip() and not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", ln.strip())
            ]
            blocks.append(Block("table", rows=rows))
        elif _ORDERED_LINE.match(first):
            blocks.append(Block("ordered", items=_list_items(lines, _ORDERED_LINE)))
        elif _BULLET_LINE.match(first):
            blocks.append(Block("unordered", items=_list_items(lines, _BULLET_LINE)))
        else:
            blocks.append(Block("paragraph", text=group.strip()))
    return blocks


def _groups(text: str) -> list[str]:
    """Blank-line separated groups, keeping fenced code blocks whole."""
    groups: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.strip().startswith("```"):
            in_code = not in_code
        if not line.strip() and not in_code:
            if current:
                groups.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        groups.append("\n".join(current))
    return groups


def _list_items(lines: list[str], marker: re.Pattern[str]) -> list[str]:
    items: list[str] = []
    for line in lines:
        m = marker.match(line)
        if m:
            items.append(m.group(1))
        elif items:
            items[-1] += " " + line.strip()
        else:
            items.append(line.strip())
    return items
