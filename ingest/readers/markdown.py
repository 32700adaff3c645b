"""Markdown reader: markdown-it-py tokens to headings, paragraphs, lists, tables and code.

Handbook Markdown carries site-generator noise that is not content: YAML front matter (its
`title` is used), Jekyll/Liquid tags, HTML comments, heading attributes (`{#id}`), kramdown
attribute lines, MkDocs admonition markers and Quarto fenced divs. That noise is removed first;
links keep their text, images are dropped, nested lists are flattened into their parent item,
and raw HTML blocks (tables written in HTML) go through the HTML reader.
"""

from __future__ import annotations

import re

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from sopforge.ingest.document import Block, Document
from sopforge.ingest.readers.common import (
    Element,
    Heading,
    assemble,
    clean_inline,
    flatten_item,
)
from sopforge.ingest.readers.html import html_to_elements

_FRONT_MATTER = re.compile(
    r"\A(?:---|\+\+\+)[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\r?\n|\Z)", re.DOTALL
)
_LIQUID = re.compile(r"\{%-?.*?-?%\}|\{\{-?.*?-?\}\}", re.DOTALL)
_HEADING_ATTRS = re.compile(r"\s*\{[#.:][^}]*\}\s*$")
_IAL_LINE = re.compile(r"^\s*\{:[^}]*\}\s*$", re.MULTILINE)
_FENCED_DIV = re.compile(r"^\s*:::+.*$", re.MULTILINE)
_ADMONITION = re.compile(r'^(?:!!!|\?\?\?\+?)[ \t]*([\w-]+)(?:[ \t]+"([^"]*)")?[ \t]*$')


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def split_front_matter(text: str) -> tuple[dict, str]:
    """(front matter as a dict, the rest). Invalid YAML is dropped, not fatal."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    body = text[m.end() :]
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        meta = None
    return (meta if isinstance(meta, dict) else {}), body


def _unwrap_admonitions(text: str) -> str:
    """'!!! tip "Title"' + an indented body becomes 'Title:' + the body, unindented."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        m = _ADMONITION.match(line)
        if m:
            label = (m.group(2) or m.group(1).capitalize()).strip()
            out.append(label if label.endswith((":", "?", "!", ".")) else label + ":")
            in_block = True
            continue
        if in_block:
            if line.startswith(("    ", "\t")):
                out.append(line[4:] if line.startswith("    ") else line[1:])
                continue
            if line.strip():
                in_block = False
        out.append(line)
    return "\n".join(out)


def clean_source(text: str) -> str:
    """Remove templating and site-generator syntax that is not part of the document's text."""
    text = _LIQUID.sub("", text)
    text = _IAL_LINE.sub("", text)
    text = _FENCED_DIV.sub("", text)
    if "!!!" in text or "???" in text:
        text = _unwrap_admonitions(text)
    return text


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        kind = child.type
        if kind == "image":
            continue
        if kind == "text":
            parts.append(child.content)
        elif kind == "code_inline":
            parts.append(f"`{child.content}`")
        elif kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind == "html_inline" and child.content.lower().startswith("<br"):
            parts.append(" ")
        # link_open/close, em/strong markers and other inline HTML carry no text of their own.
    return clean_inline("".join(parts))


class _TokenWalker:
    """Recursive descent over markdown-it's flat token stream."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0

    def blocks(self, until: str | None = None) -> list[Element]:
        out: list[Element] = []
        tokens = self.tokens
        while self.i < len(tokens):
            tok = tokens[self.i]
            kind = tok.type
            if until is not None and kind == until:
                self.i += 1
                return out
            if kind == "heading_open":
                text = _HEADING_ATTRS.sub("", _inline_text(tokens[self.i + 1]))
                if text:
                    out.append(Heading(text, (int(tok.tag[1]),)))
                self.i += 3
            elif kind == "paragraph_open":
                text = _inline_text(tokens[self.i + 1])
                if text:
                    out.append(Block("paragraph", text=text))
                self.i += 3
            elif kind in ("bullet_list_open", "ordered_list_open"):
                self.i += 1
                items = self.list_items(kind.replace("_open", "_close"))
                if items:
                    block_kind = "ordered" if kind == "ordered_list_open" else "unordered"
                    out.append(Block(block_kind, items=items))
            elif kind == "table_open":
                self.i += 1
                rows = self.table_rows()
                if rows:
                    out.append(Block("table", rows=rows))
            elif kind in ("fence", "code_block"):
                if tok.content.strip():
                    out.append(Block("code", text=tok.content.rstrip("\n")))
                self.i += 1
            elif kind == "html_block":
                _, elements = html_to_elements(tok.content)
                out.extend(elements)
                self.i += 1
            else:
                # blockquote_open/close, hr, and the closers of containers: their content
                # (if any) is walked as ordinary blocks.
                self.i += 1
        return out

    def list_items(self, close: str) -> list[str]:
        items: list[str] = []
        while self.i < len(self.tokens):
            kind = self.tokens[self.i].type
            if kind == close:
                self.i += 1
                break
            if kind == "list_item_open":
                self.i += 1
                inner = self.blocks(until="list_item_close")
                item = _item_text(inner)
                if item:
                    items.append(item)
            else:
                self.i += 1
        return items

    def table_rows(self) -> list[list[str]]:
        rows: list[list[str]] = []
        row: list[str] = []
        while self.i < len(self.tokens):
            tok = self.tokens[self.i]
            self.i += 1
            if tok.type == "table_close":
                break
            if tok.type == "tr_open":
                row = []
            elif tok.type == "inline":
                row.append(_inline_text(tok))
            elif tok.type == "tr_close" and any(row):
                rows.append(row)
        return rows


def _item_text(inner: list[Element]) -> str:
    own: list[str] = []
    children: list[str] = []
    for el in inner:
        if isinstance(el, Block) and el.kind in ("ordered", "unordered"):
            children.extend(el.items)
        elif isinstance(el, Block):
            (children if children else own).append(el.plain_text())
        else:
            own.append(el.text)
    return flatten_item(clean_inline(" ".join(own)), children)


def markdown_elements(text: str) -> list[Element]:
    """The element stream of Markdown source (already stripped of front matter)."""
    tokens = _parser().parse(clean_source(text))
    return _TokenWalker(tokens).blocks()


def read_markdown(text: str, doc_id: str, fallback_title: str, fmt: str = "markdown") -> Document:
    meta, body = split_front_matter(text.lstrip("\ufeff"))
    title = meta.get("title")
    title = clean_inline(title) if isinstance(title, str) and title.strip() else None
    elements = markdown_elements(body)
    description = meta.get("description") or meta.get("summary")
    if isinstance(description, str) and description.strip():
        elements.insert(0, Block("paragraph", text=clean_inline(description)))
    return assemble(elements, doc_id=doc_id, fmt=fmt, title=title, fallback_title=fallback_title)
