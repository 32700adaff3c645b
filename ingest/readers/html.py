"""HTML reader (BeautifulSoup): headings, paragraphs, lists and tables; page chrome dropped.

Also used by the Markdown reader for raw HTML blocks embedded in Markdown (tables written as
HTML are common in handbooks).
"""

from __future__ import annotations

import warnings

from bs4 import BeautifulSoup, Comment, MarkupResemblesLocatorWarning, NavigableString, Tag

from sopforge.ingest.document import Block, Document
from sopforge.ingest.readers.common import Element, Heading, assemble, clean_inline, flatten_item

# Never content: code, styling, navigation and embedded objects.
_DROP = {
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "svg",
    "iframe",
    "object",
    "embed",
    "canvas",
    "button",
    "select",
    "input",
    "textarea",
    "head",
}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_LISTS = {"ul": "unordered", "ol": "ordered", "menu": "unordered"}
_BLOCK_CONTAINERS = {
    "html",
    "body",
    "main",
    "article",
    "section",
    "div",
    "header",
    "footer",
    "aside",
    "blockquote",
    "figure",
    "figcaption",
    "details",
    "summary",
    "form",
    "fieldset",
    "center",
    "dl",
    "dt",
    "dd",
    "address",
    "li",
}


def _text(node: Tag | NavigableString) -> str:
    """Inline text: adjacent inline elements join without an added space ("<b>cage</b>.")."""
    if isinstance(node, NavigableString):
        return str(node)
    return node.get_text("")


def _list_items(node: Tag) -> list[str]:
    """Items of a ul/ol; a nested list is flattened into its parent item."""
    items = []
    for li in node.find_all("li", recursive=False):
        own: list[str] = []
        children: list[str] = []
        for child in li.children:
            if isinstance(child, Tag) and child.name in _LISTS:
                children.extend(_list_items(child))
            elif isinstance(child, (Tag, NavigableString)) and not isinstance(child, Comment):
                own.append(_text(child))
        item = flatten_item(clean_inline("".join(own)), children)
        if item:
            items.append(item)
    return items


def _table_rows(node: Tag) -> list[list[str]]:
    rows = []
    for tr in node.find_all("tr"):
        if tr.find_parent("table") is not node:
            continue  # rows of a nested table belong to that table's cell text
        cells = [clean_inline(c.get_text(" ")) for c in tr.find_all(["th", "td"], recursive=False)]
        if any(cells):
            rows.append(cells)
    return rows


class _Walker:
    def __init__(self) -> None:
        self.out: list[Element] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        text = clean_inline("".join(self.inline))
        self.inline.clear()
        if text:
            self.out.append(Block("paragraph", text=text))

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                self.inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HEADINGS:
                self.flush()
                text = clean_inline(child.get_text(" "))
                if text:
                    self.out.append(Heading(text, (_HEADINGS[name],)))
            elif name == "p":
                self.flush()
                self.inline.append(_text(child))
                self.flush()
            elif name in _LISTS:
                self.flush()
                items = _list_items(child)
                if items:
                    self.out.append(Block(_LISTS[name], items=items))  # type: ignore[arg-type]
            elif name == "table":
                self.flush()
                rows = _table_rows(child)
                if rows:
                    self.out.append(Block("table", rows=rows))
            elif name == "pre":
                self.flush()
                code = child.get_text().strip("\n")
                if code.strip():
                    self.out.append(Block("code", text=code))
            elif name == "br":
                self.inline.append(" ")
            elif name in ("hr", "img"):
                continue
            elif name in _BLOCK_CONTAINERS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.inline.append(_text(child))
        self.flush()


def html_to_elements(markup: str) -> tuple[str | None, list[Element]]:
    """(the <title>, the element stream) of an HTML document or fragment."""
    with warnings.catch_warnings():
        # A short fragment such as "notes.md" makes bs4 warn that it looks like a file name.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(markup, "html.parser")
    title_tag = soup.find("title")
    title = clean_inline(title_tag.get_text(" ")) if title_tag else None
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(sorted(_DROP)):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": "navigation"}):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with(" ")
    walker = _Walker()
    walker.walk(soup)
    return title or None, walker.out


def read_html(text: str, doc_id: str, fallback_title: str) -> Document:
    title, elements = html_to_elements(text)
    return assemble(elements, doc_id=doc_id, fmt="html", title=title, fallback_title=fallback_title)
