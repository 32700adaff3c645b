"""The structured document every reader returns, and its canonical text.

Readers turn bytes into a `Document`: a title and a tree of `Section`s, each holding `Block`s
(paragraphs, ordered/unordered lists, tables, code). Everything downstream (versioning, chunking,
task generation) works on this tree, never on the raw file.

`Document.render()` gives the canonical Markdown text of the whole document and the character span
of every section in it; spans in dataset provenance point into that text, so they are stable for a
given version whatever the original format was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

PREAMBLE_TITLE = "Overview"

BlockKind = Literal["paragraph", "ordered", "unordered", "table", "code"]


@dataclass
class Block:
    """One unit of body text. `text` for paragraphs/code, `items` for lists, `rows` for tables."""

    kind: BlockKind
    text: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def render(self) -> str:
        if self.kind == "paragraph":
            return self.text.strip()
        if self.kind == "code":
            return "```\n" + self.text.rstrip("\n") + "\n```"
        if self.kind == "ordered":
            return "\n".join(f"{i}. {item.strip()}" for i, item in enumerate(self.items, 1))
        if self.kind == "unordered":
            return "\n".join(f"- {item.strip()}" for item in self.items)
        if self.kind == "table":
            if not self.rows:
                return ""
            width = max(len(r) for r in self.rows)
            rows = [
                [c.replace("|", "/").replace("\n", " ").strip() for c in r]
                + [""] * (width - len(r))
                for r in self.rows
            ]
            out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
            out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            return "\n".join(out)
        raise ValueError(f"unknown block kind {self.kind!r}")

    def plain_text(self) -> str:
        """Text without Markdown markup (used for faithfulness checks and retrieval)."""
        if self.kind in ("paragraph", "code"):
            return self.text.strip()
        if self.kind in ("ordered", "unordered"):
            return "\n".join(i.strip() for i in self.items)
        return "\n".join(" ".join(c.strip() for c in r) for r in self.rows)


@dataclass
class Section:
    """A heading and what is under it. `level` 1 is the top heading level used in the document."""

    title: str
    level: int = 1
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def body(self) -> str:
        """This section's own blocks as Markdown (children excluded)."""
        return "\n\n".join(b.render() for b in self.blocks if b.render())

    def plain_text(self) -> str:
        return "\n".join(b.plain_text() for b in self.blocks if b.plain_text())


@dataclass
class SectionRef:
    """A section located in its document: path of titles from the root, and span in render()."""

    path: tuple[str, ...]
    section: Section
    start: int
    end: int

    @property
    def section_id(self) -> str:
        """Stable id of the section inside its document (its heading path)."""
        return " > ".join(self.path)

    @property
    def content_hash(self) -> str:
        """Hash of the section's own content: equal across versions iff the section is unchanged."""
        h = hashlib.sha256()
        h.update(self.section_id.encode())
        h.update(b"\0")
        h.update(normalize_ws(self.section.body()).encode())
        return h.hexdigest()[:16]


@dataclass
class Document:
    doc_id: str
    title: str
    format: str
    sections: list[Section] = field(default_factory=list)
    pages: int = 0
    preamble: list[Block] = field(default_factory=list)  # blocks before the first heading
    warnings: list[str] = field(default_factory=list)

    def iter_sections(self) -> Iterator[tuple[tuple[str, ...], Section]]:
        """Depth-first (path, section) pairs; sibling sections with equal titles get ' (2)' etc."""

        def walk(sections: list[Section], prefix: tuple[str, ...]):
            seen: dict[str, int] = {}
            for s in sections:
                n = seen.get(s.title, 0) + 1
                seen[s.title] = n
                title = s.title if n == 1 else f"{s.title} ({n})"
                path = prefix + (title,)
                yield path, s
                yield from walk(s.children, path)

        yield from walk(self.all_sections(), ())

    def all_sections(self) -> list[Section]:
        """Top-level sections, with text before the first heading as a first 'Overview' section
        (many handbooks put their most important paragraph there)."""
        if any(b.render() for b in self.preamble):
            return [Section(PREAMBLE_TITLE, 1, list(self.preamble)), *self.sections]
        return list(self.sections)

    def render(self) -> tuple[str, list[SectionRef]]:
        """Canonical Markdown of the document and the span of every section's own content."""
        parts: list[str] = [f"# {self.title}"]
        pos = len(parts[0])
        refs: list[SectionRef] = []
        for path, s in self.iter_sections():
            heading = "#" * min(6, len(path) + 1) + " " + path[-1]
            body = s.body()
            chunk = heading + ("\n\n" + body if body else "")
            start = pos + 2
            parts.append(chunk)
            pos = start + len(chunk)
            refs.append(SectionRef(path=path, section=s, start=start, end=pos))
        return "\n\n".join(parts), refs

    def section_refs(self) -> list[SectionRef]:
        return self.render()[1]


_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()
