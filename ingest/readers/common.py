"""What every reader shares: the flat element stream, turning it into a section tree, text helpers.

A reader does not build `Section`s itself. It emits a flat stream of `Heading`s and `Block`s in
reading order; `assemble()` nests the headings by rank into the section tree, picks the title and
drops what carries no content. Keeping the tree logic in one place means a Markdown file and a PDF
of the same procedure come out shaped the same way.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sopforge.ingest.document import Block, Document, Section

# A rank orders headings: a smaller rank is a higher heading. Readers use tuples so that several
# signals (font size, numbering depth, indentation) can be compared lexicographically.
Rank = tuple[Any, ...]


@dataclass
class Heading:
    text: str
    rank: Rank = (1,)


Element = Heading | Block


@dataclass
class _Node:
    rank: Rank
    section: Section = field(default_factory=lambda: Section(title=""))


_WS = re.compile(r"[ \t\r\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_PUA = re.compile("[\ue000-\uf8ff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_inline(text: str) -> str:
    """One line of text: no control characters, no symbol-font glyphs, single spaces."""
    text = _CONTROL.sub("", text.replace("\u00ad", ""))
    text = _PUA.sub(" ", text)
    return _WS.sub(" ", text.replace("\n", " ")).strip()


def slugify(stem: str) -> str:
    """Document id from a file stem: lowercase ASCII, [a-z0-9_-], runs of others become '-'."""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_stem.lower()).strip("-_")
    return re.sub(r"-{2,}", "-", slug) or "document"


def humanize(stem: str) -> str:
    """A readable fallback title from a file stem: 'lost_badge-sop' -> 'Lost badge sop'."""
    words = re.sub(r"[_\-.]+", " ", stem).strip()
    return (words[:1].upper() + words[1:]) if words else "Untitled document"


def title_key(text: str) -> str:
    """Comparison key for titles: letters and digits only, lowercase."""
    return re.sub(r"[\W_]+", "", text.lower())


def decode_text(data: bytes) -> str:
    """Decode a text file whatever its encoding: UTF-8 (with or without BOM), UTF-16 with a BOM,
    then Windows-1252, then Latin-1, which accepts every byte, so decoding never fails."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def looks_binary(data: bytes) -> bool:
    """NUL bytes in the head of a file without a UTF-16 BOM mean it is not text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    return b"\x00" in data[:8192]


def flatten_item(parent: str, children: list[str]) -> str:
    """A list item with a nested list becomes one item: 'Parent: child one; child two'.

    Nested lists are flattened into their parent so that an ordered procedure keeps its step
    numbering; the children stay readable, in order, inside the step they belong to.
    """
    children = [c for c in (clean_inline(c) for c in children) if c]
    if not children:
        return parent
    if not parent:
        return "; ".join(children)
    sep = " " if parent.endswith((":", ".", "!", "?")) else ": "
    return parent + sep + "; ".join(children)


def _has_content(section: Section) -> bool:
    return any(b.plain_text() for b in section.blocks)


def _prune(sections: list[Section]) -> list[Section]:
    """Drop sections that hold nothing: no text of their own and no surviving children."""
    kept = []
    for s in sections:
        s.children = _prune(s.children)
        if _has_content(s) or s.children:
            kept.append(s)
    return kept


def _relevel(sections: list[Section], level: int = 1) -> None:
    for s in sections:
        s.level = level
        _relevel(s.children, level + 1)


def assemble(
    elements: list[Element],
    *,
    doc_id: str,
    fmt: str,
    title: str | None,
    fallback_title: str,
    pages: int = 0,
    warnings: list[str] | None = None,
) -> Document:
    """Nest a flat element stream into a `Document`.

    A heading closes every open section whose rank is not higher than its own, so ranks need
    only be comparable, not contiguous. Without a given title, a document whose first heading
    is the only one of the top rank uses it as its title (the usual single `# Title`). A heading
    that repeats the title is dropped and its content becomes the preamble (which
    `Document.iter_sections` presents as an "Overview" section).
    """
    elements = [e for e in elements if not isinstance(e, Block) or e.plain_text()]
    headings = [e for e in elements if isinstance(e, Heading)]
    if title is None and headings:
        top = min(h.rank for h in headings)
        tops = [h for h in headings if h.rank == top]
        if len(tops) == 1 and tops[0] is headings[0]:
            title = headings[0].text
    if title and headings and title_key(headings[0].text) == title_key(title):
        elements = [e for e in elements if e is not headings[0]]
    title = title or fallback_title

    preamble: list[Block] = []
    roots: list[Section] = []
    stack: list[_Node] = []
    for el in elements:
        if isinstance(el, Heading):
            while stack and stack[-1].rank >= el.rank:
                stack.pop()
            node = _Node(el.rank, Section(title=el.text, level=len(stack) + 1))
            (stack[-1].section.children if stack else roots).append(node.section)
            stack.append(node)
        elif stack:
            stack[-1].section.blocks.append(el)
        else:
            preamble.append(el)

    roots = _prune(roots)
    _relevel(roots)
    return Document(
        doc_id=doc_id,
        title=title,
        format=fmt,
        sections=roots,
        pages=pages,
        preamble=preamble,
        warnings=list(warnings or []),
    )
