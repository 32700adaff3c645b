"""Plain-text reader. Markdown-looking text goes through the Markdown reader; other text through
the same line-structure recovery as PDFs (numbered headings, ALL CAPS headings, short lines
standing alone, bullets and numbered steps, hard-wrapped paragraphs)."""

from __future__ import annotations

import re

from sopforge.ingest.document import Document
from sopforge.ingest.readers.common import Heading, assemble
from sopforge.ingest.readers.layout import Line, drop_toc, heading_number, lines_to_elements
from sopforge.ingest.readers.markdown import read_markdown

_MD_HEADING = re.compile(r"^#{1,6}\s+\S", re.MULTILINE)
_SETEXT = re.compile(r"^\S.*\n(?:=+|-{3,})[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^```", re.MULTILINE)


def looks_like_markdown(text: str) -> bool:
    return bool(_MD_HEADING.search(text) or _SETEXT.search(text) or _FENCE.search(text))


def _indent(raw: str) -> float:
    expanded = raw.expandtabs(4)
    return float(len(expanded) - len(expanded.lstrip(" ")))


def text_lines(text: str) -> list[Line]:
    lines: list[Line] = []
    pending_gap = True
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped:
            pending_gap = True
            continue
        lines.append(Line(stripped, x=_indent(raw), gap_before=pending_gap))
        pending_gap = False
    return lines


def read_text(text: str, doc_id: str, fallback_title: str) -> Document:
    if looks_like_markdown(text):
        return read_markdown(text, doc_id, fallback_title, fmt="text")
    elements = lines_to_elements(drop_toc(text_lines(text)), plain_text=True)
    # A first line that stands alone as a heading names the document.
    first = elements[0] if elements else None
    numbered = isinstance(first, Heading) and heading_number(first.text) is not None
    title = first.text if isinstance(first, Heading) and not numbered else None
    return assemble(elements, doc_id=doc_id, fmt="text", title=title, fallback_title=fallback_title)
