"""Structure recovery from lines of text: headings, numbered steps, bullets, paragraphs, code.

PDF pages and plain-text files arrive as lines, not structure. This module decides, line by line
and in one linear pass plus constant lookaround, which lines are headings (larger or bold type,
ALL CAPS, section numbers such as "3.2" or "Section 4", short bullets that introduce a nested
list), which start list items ("1.", "a)", "(i)", "Step 2:", "•", symbol-font glyphs such as
Wingdings' U+F0B7), which continue the item or paragraph above (wrapped and hyphenated lines),
and which are code (monospaced). Headings get a rank tuple so `common.assemble` can nest them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from sopforge.ingest.document import Block
from sopforge.ingest.readers.common import Element, Heading, clean_inline, flatten_item


@dataclass(slots=True)
class Line:
    """One visual line. `size` is the effective font size in points (0 when unknown), `x`/`y`
    its start position, `symbol_lead` says its first glyph came from a symbol/dingbat font, and
    `gap_before` that a blank line or a vertical gap precedes it."""

    text: str
    size: float = 0.0
    bold: bool = False
    mono: bool = False
    x: float = 0.0
    y: float = 0.0
    page: int = 0
    symbol_lead: bool = False
    gap_before: bool = False
    cells: tuple[str, ...] = ()  # the line split at wide horizontal gaps (table columns)
    cell_xs: tuple[float, ...] = ()


@dataclass(slots=True)
class Marker:
    kind: Literal["ordered", "unordered"]
    family: str  # "bullet", "num", "multi", "alpha", "roman", "paren", "step", "flow"
    label: str
    depth: int
    text: str


# Glyphs that start a bullet even without a following space ("•Form a team" in figures).
_BULLET_GLYPHS = set("•●○◦▪▫■□◆◇►▸▹‣⁃∙➢➤➣✓✔❖➔→⇒⦿⚫◾◽")
# Characters that start a bullet only when a space follows ("- item", "– item").
_DASH_BULLETS = set("-–—*·+")

_MULTI = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){1,4})\.?\s+(\S.*)$")
_NUM = re.compile(r"^(\d{1,3})[.)]\s+(\S.*)$")
_PAREN = re.compile(r"^\((\d{1,3}|[a-zA-Z]|[ivxlc]{1,6})\)\s+(\S.*)$")
_ROMAN = re.compile(r"^([ivx]{1,6})[.)]\s+(\S.*)$")
_ALPHA = re.compile(r"^([a-zA-Z])[.)]\s+(\S.*)$")
_STEP = re.compile(r"^(?:step|stage|phase)\s+(\d{1,3})\s*[:.)\-–—]\s*(\S.*)$", re.IGNORECASE)
_FLOW = re.compile(r"^([A-Z]{1,2}\d{1,2})\s+[-–—:]\s+(\S.*)$")
# Section numbers that only ever introduce headings, never list items.
_PREFIX = re.compile(
    r"^(?:section|chapter|part|appendix|annex|article)\s+([A-Z0-9]{1,3}(?:\.\d{1,2})*)\b[\s:.\-–—]*(.*)$",
    re.IGNORECASE,
)
_BARE_NUM = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\s+([A-Z].*)$")
_LETTER_NUM = re.compile(r"^([A-Z]\.\d{1,2}(?:\.\d{1,2})*)\.?\s+(\S.*)$")

_SENTENCE_END = (".", "!", "?", ":", ";", '."', ".”", ".)")
_TOC_LEADER = re.compile(r"(?:\.\s?){4,}\s*[\divxlc]*\s*$|…{2,}|_{6,}\s*\d+\s*$", re.IGNORECASE)
_TOC_TITLE = re.compile(
    r"^(?:table of contents|contents|list of (?:figures|tables|appendices|illustrations))$",
    re.IGNORECASE,
)
_ENDS_WITH_PAGE = re.compile(r"\s\d{1,3}$")
# A first "cell" that is only a list marker or a footnote number: a list item, not a table row.
_MARKER_CELL = re.compile(r"^(?:\(?[\divxlc]{1,4}[.)]?|\d+(?:\.\d+)*\.?|[a-z][.)]|\W)$")


def _depth(label: str) -> int:
    """Numbering depth: '4.1.1' -> 3; trailing zero parts do not count ('1.0' -> 1)."""
    parts = [p for p in re.split(r"\.", label) if p]
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return len(parts)


def match_marker(text: str, symbol_lead: bool = False) -> Marker | None:
    """The list marker a line starts with, if any, and the text after it."""
    if not text:
        return None
    first = text[0]
    if first in _BULLET_GLYPHS or "\ue000" <= first <= "\uf8ff":
        rest = text[1:].lstrip()
        return Marker("unordered", "bullet", first, 1, rest) if rest else None
    if len(text) > 2 and text[1] == " ":
        rest = text[2:].lstrip()
        if first in _DASH_BULLETS and rest:
            return Marker("unordered", "bullet", first, 1, rest)
        # A one-glyph word drawn in a symbol font ("x", "§" from Symbol/Wingdings) is a
        # bullet, and so is Word's Courier "o" sub-bullet.
        if rest and (symbol_lead or (first == "o" and rest[:1].isupper())):
            return Marker("unordered", "bullet", first, 1, rest)
    for pattern, family, kind in (
        (_MULTI, "multi", "ordered"),
        (_NUM, "num", "ordered"),
        (_PAREN, "paren", "ordered"),
        (_ROMAN, "roman", "ordered"),
        (_ALPHA, "alpha", "ordered"),
        (_STEP, "step", "ordered"),
        (_FLOW, "flow", "ordered"),
    ):
        m = pattern.match(text)
        if m:
            label = m.group(1)
            depth = _depth(label) if family == "multi" else 1
            return Marker(kind, family, label, depth, m.group(2))  # type: ignore[arg-type]
    return None


def heading_number(text: str) -> tuple[int, str, str] | None:
    """(depth, title, label) when a line starts with a section number that can head a section."""
    for pattern in (_PREFIX, _LETTER_NUM, _MULTI, _NUM, _BARE_NUM):
        m = pattern.match(text)
        if m:
            label = m.group(1)
            # "Appendix B" alone is its own title.
            return _depth(label), m.group(2).strip() or text.strip(), label
    return None


def is_toc_line(text: str) -> bool:
    """A table-of-contents entry: a title, dot leaders, a page number."""
    return bool(_TOC_LEADER.search(text))


def is_toc_title(text: str) -> bool:
    return bool(_TOC_TITLE.match(text.strip().rstrip(":")))


def drop_toc(lines: list[Line]) -> list[Line]:
    """Remove tables of contents: dot-leader entries anywhere, and after a 'Contents' title the
    run of short entries that end in a page number."""
    out: list[Line] = []
    in_toc = False
    for line in lines:
        text = line.text
        if is_toc_title(text):
            in_toc = True
            continue
        if is_toc_line(text):
            continue
        if in_toc and _ENDS_WITH_PAGE.search(text) and len(text.split()) <= 14:
            continue
        in_toc = False
        out.append(line)
    return out


def is_caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 4:
        return False
    return sum(c.isupper() for c in letters) >= 0.85 * len(letters)


def title_like(text: str, max_words: int = 12) -> bool:
    """Short, starts with a capital or digit, no sentence punctuation at the end."""
    words = text.split()
    if not words or len(words) > max_words or len(text) > 110:
        return False
    if text.rstrip().endswith((".", ",", ";", ":", "!", "?")) and not text.endswith("..."):
        return False
    first_alpha = next((c for c in text if c.isalpha()), "")
    return bool(first_alpha) and (first_alpha.isupper() or text[0].isdigit())


@dataclass(slots=True)
class _Info:
    line: Line
    marker: Marker | None
    heading: tuple[int, str] | None = None  # (depth, text) once decided to be a heading
    label: str = ""  # its section number ("2.4"), if numbered
    style: tuple[float, bool, bool] = (0.0, False, False)
    bullet_heading: bool = False
    run: int = 0  # id of the run of same-styled lines this line belongs to
    caps: bool = False
    table: int = -1  # id of the table this line is a row (or a row's continuation) of
    row: bool = False  # starts a table row (else it continues the previous row's cells)
    number: tuple[int, str, str] | None = None  # heading_number() of the text


@dataclass
class _ListState:
    kind: Literal["ordered", "unordered"]
    x: float
    family: str = ""
    depth: int = 1
    items: list[str] = field(default_factory=list)
    children: list[list[str]] = field(default_factory=list)

    def add_item(self, text: str) -> None:
        self.items.append(text)
        self.children.append([])

    def append_text(self, text: str) -> None:
        if self.children[-1]:
            self.children[-1][-1] = join_lines(self.children[-1][-1], text)
        else:
            self.items[-1] = join_lines(self.items[-1], text)

    def block(self) -> Block:
        items = [
            flatten_item(clean_inline(i), c) for i, c in zip(self.items, self.children, strict=True)
        ]
        return Block(self.kind, items=[i for i in items if i])


def join_lines(left: str, right: str) -> str:
    """Join a wrapped line to the text before it. A line-end hyphen is kept (it is a real
    compound hyphen far more often than a soft one in office documents) without a space."""
    left = left.rstrip()
    right = right.strip()
    if not left:
        return right
    if left.endswith("-") and len(left) > 1 and left[-2].isalpha() and right[:1].isalpha():
        return left + right
    return left + " " + right


def _ends_sentence(text: str) -> bool:
    return text.rstrip().endswith(_SENTENCE_END)


class _Recovery:
    """The state of one structure-recovery pass over a document's lines."""

    def __init__(self, lines: list[Line], body_size: float, plain_text: bool):
        self.infos = [
            _Info(
                line,
                match_marker(line.text, line.symbol_lead),
                caps=is_caps(line.text),
                number=heading_number(line.text),
            )
            for line in lines
            if line.text
        ]
        self.body = body_size
        self.plain = plain_text
        lengths = sorted(len(i.line.text) for i in self.infos if not i.line.mono)
        self.typical_len = lengths[int(len(lengths) * 0.8)] if lengths else 80

    # -- heading decisions -------------------------------------------------------------
    def big(self, line: Line) -> bool:
        return bool(self.body) and line.size >= self.body * 1.12 and line.size >= self.body + 1

    def _mark_runs(self) -> None:
        run = 0
        for k, info in enumerate(self.infos):
            line = info.line
            if k:
                prev = self.infos[k - 1].line
                if (
                    line.gap_before
                    or line.page != prev.page
                    or abs(line.size - prev.size) > 0.5
                    or line.bold != prev.bold
                    or info.caps != self.infos[k - 1].caps
                    or info.marker is not None
                    or info.number is not None
                ):
                    run += 1
            info.run = run
        self.run_spans: dict[int, tuple[int, int]] = {}
        for k, info in enumerate(self.infos):
            lo, _ = self.run_spans.get(info.run, (k, k))
            self.run_spans[info.run] = (lo, k)

    def _run_span(self, k: int) -> tuple[int, int]:
        return self.run_spans[self.infos[k].run]

    def _styled_heading(self, k: int) -> bool:
        """A heading by type alone: larger, bold or ALL CAPS, in a run of at most 3 lines."""
        line = self.infos[k].line
        if line.mono or sum(c.isalpha() for c in line.text) < 2:
            return False
        lo, hi = self._run_span(k)
        run_text = " ".join(self.infos[j].line.text for j in range(lo, hi + 1))
        if self.big(line):
            return hi - lo < 3 and len(run_text.split()) <= 30 and not run_text.endswith(",")
        if hi - lo >= 2:
            return False
        if line.bold:
            return title_like(run_text) and ": " not in run_text
        if is_caps(run_text) and len(run_text.split()) <= 10:
            return not run_text.endswith((".", ","))
        return False

    def _continued(self, k: int) -> bool:
        """The line wraps onto the next one (so it is the start of a sentence, not a title)."""
        if k + 1 >= len(self.infos):
            return False
        line, nxt = self.infos[k].line, self.infos[k + 1]
        if nxt.line.gap_before or nxt.line.page != line.page or nxt.marker is not None:
            return False
        if nxt.number is not None:
            return False
        nxt_text = nxt.line.text
        return (
            nxt_text[:1].islower()
            or (nxt.line.x > line.x + 3 and nxt.line.size <= line.size + 0.5)
            or (len(line.text) >= 0.75 * self.typical_len and not nxt.line.bold)
        )

    def _sibling_marker(self, a: _Info, b: _Info | None) -> bool:
        return (
            b is not None
            and b.marker is not None
            and a.marker is not None
            and b.marker.family == a.marker.family
            and b.marker.depth == a.marker.depth
            and abs(b.line.x - a.line.x) <= 4
        )

    def _numbered_heading(self, k: int) -> bool:
        """'4.1 Password Creation', '1. General Use' with a sub-list below: a heading unless it
        sits among siblings of the same numbering, which makes it a short list item."""
        info = self.infos[k]
        number = info.number
        if number is None:
            return False
        styled = info.line.bold or self.big(info.line)
        if not title_like(number[1].rstrip(":") if styled else number[1]):
            return False
        m = info.marker
        if m is None:
            # Bare "1 SCOPE" or "Section 4 Roles": a heading only when styled as one.
            return info.line.bold or self.big(info.line) or is_caps(number[1])
        if m.family not in ("num", "multi"):
            return False
        if info.line.bold or self.big(info.line):
            return True
        if self._continued(k):
            return False
        prev = self.infos[k - 1] if k else None
        nxt = self.infos[k + 1] if k + 1 < len(self.infos) else None
        if self._sibling_marker(info, prev) or self._sibling_marker(info, nxt):
            return False
        if (
            self.plain
            and m.family == "num"
            and nxt is not None
            and not nxt.line.gap_before
            and nxt.marker is None
        ):
            return False  # "1. Short step" directly followed by its text: a list item
        return nxt is not None

    def _bullet_heading(self, k: int) -> bool:
        """A short bullet that introduces a deeper list or a paragraph ('▶ Preinstallation'
        over its own bullets) is how some Word documents lay out sub-headings."""
        info = self.infos[k]
        m = info.marker
        if m is None or m.kind != "unordered" or not title_like(m.text, max_words=6):
            return False
        if self._continued(k):
            return False
        if k + 1 >= len(self.infos):
            return False
        nxt = self.infos[k + 1]
        prev = self.infos[k - 1] if k else None
        if prev is not None and prev.marker is not None and prev.marker.kind == "unordered":
            if abs(prev.line.x - info.line.x) <= 3 and prev.marker.label == m.label:
                return False
        if nxt.marker is not None:
            return nxt.marker.kind == "unordered" and nxt.line.x > info.line.x + 3
        if nxt.number is not None or self._styled_heading(k + 1):
            return False
        return nxt.line.x <= info.line.x + 3

    def _isolated_heading(self, k: int) -> bool:
        """Plain text: a short line standing alone between blank lines ('Purpose')."""
        info = self.infos[k]
        line = info.line
        if info.marker is not None or not (line.gap_before or k == 0):
            return False
        if k + 1 >= len(self.infos) or not title_like(line.text, max_words=8):
            return False
        nxt = self.infos[k + 1]
        return nxt.line.gap_before or nxt.marker is not None

    def _mark_tables(self) -> None:
        """Consecutive lines split into the same number (2+) of cells form a table; a line
        without cells under a row, indented to a later column, continues that row's cell."""
        infos = self.infos
        k, table_id = 0, 0
        while k < len(infos):
            cells = infos[k].line.cells
            if len(cells) < 2 or _MARKER_CELL.match(cells[0]):
                k += 1
                continue
            rows, parts = [k], [k]
            j = k + 1
            while j < len(infos):
                line = infos[j].line
                if len(line.cells) == len(cells) and not _MARKER_CELL.match(line.cells[0]):
                    rows.append(j)
                elif (
                    not line.cells
                    and line.page == infos[parts[-1]].line.page
                    and infos[rows[-1]].line.cell_xs
                    and line.x >= infos[rows[-1]].line.cell_xs[1] - 3
                ):
                    pass
                else:
                    break
                parts.append(j)
                j += 1
            if len(rows) >= 2:
                row_set = set(rows)
                for p in parts:
                    infos[p].table = table_id
                    infos[p].row = p in row_set
                table_id += 1
            k = j

    def decide_headings(self) -> None:
        self._mark_runs()
        self._mark_tables()
        for k, info in enumerate(self.infos):
            line = info.line
            if info.table >= 0:
                continue
            number = info.number
            if self._numbered_heading(k):
                assert number is not None
                info.heading = (number[0], line.text)
                info.label = number[2]
            elif info.marker is None and self._styled_heading(k):
                info.heading = (99, line.text)
            elif info.marker is not None and info.marker.kind == "unordered":
                if self._bullet_heading(k):
                    info.heading = (99, info.marker.text)
                    info.bullet_heading = True
            elif self.plain and info.marker is None and self._isolated_heading(k):
                info.heading = (99, line.text)
            if info.heading:
                rounded = round(line.size * 2) / 2
                info.style = (-rounded, not line.bold, not is_caps(info.heading[1]))

    def heading_ranks(self) -> dict[int, tuple]:
        """A rank for every heading line (by index).

        In a document numbered through ("1 Scope", "2.4 Team", "2.4.1 Models") the numbers
        decide the nesting: numbered headings rank by depth, unnumbered ones sit below the
        numbered section they appear in, and those before the first number (cover, executive
        summary) are top level. A number whose type is smaller than that depth's usual heading
        (a numbered box in a figure) counts as unnumbered. Documents whose numbering restarts in
        every section ("1. General Use" under each procedure) rank by type instead: larger,
        then bold, then ALL CAPS is higher.
        """
        styles = sorted({i.style for i in self.infos if i.heading})
        style_rank = {s: r for r, s in enumerate(styles)}
        heads = [(k, i) for k, i in enumerate(self.infos) if i.heading]
        numbered = self._consistent_numbering([i for _, i in heads])
        ranks: dict[int, tuple] = {}
        seen_number = False
        for k, info in heads:
            assert info.heading is not None
            indent = info.line.x if info.bullet_heading else 0.0
            own = style_rank[info.style]
            if numbered is None:
                ranks[k] = (own, info.heading[0], indent)
            elif id(info) in numbered:
                seen_number = True
                ranks[k] = (0, info.heading[0], 0, 0.0)
            elif seen_number:
                ranks[k] = (0, 99, own, indent)
            else:
                ranks[k] = (0, 1, 0, 0.0)
        return ranks

    @staticmethod
    def _consistent_numbering(heads: list[_Info]) -> set[int] | None:
        """ids of the headings whose numbers structure the document, or None if numbering does
        not run through it (fewer than 3 top-level numbers, or it restarts too often)."""
        sizes: dict[int, dict[tuple[float, bool], int]] = {}
        for info in heads:
            if info.label:
                key = (round(info.line.size), info.line.bold)
                per_depth = sizes.setdefault(info.heading[0], {})  # type: ignore[index]
                per_depth[key] = per_depth.get(key, 0) + 1
        usual = {d: max(c, key=lambda key: (c[key], key)) for d, c in sizes.items()}
        accepted: set[int] = set()
        top_numbers: list[int] = []
        for info in heads:
            if not info.label:
                continue
            depth = info.heading[0]  # type: ignore[index]
            size, bold = usual[depth]
            if round(info.line.size) < size - 1 or (bold and not info.line.bold):
                continue
            accepted.add(id(info))
            first = info.label.split(".")[0]
            if depth == 1 and first.isdigit():
                top_numbers.append(int(first))
        restarts = sum(1 for a, b in zip(top_numbers, top_numbers[1:], strict=False) if b <= a)
        if len(top_numbers) < 3 or restarts > 0.25 * len(top_numbers):
            return None
        return accepted

    # -- assembly ----------------------------------------------------------------------
    def elements(self) -> list[Element]:
        self.decide_headings()
        ranks = self.heading_ranks()
        out: list[Element] = []
        para: list[str] = []
        para_x = 0.0
        code: list[str] = []
        lst: _ListState | None = None
        prev: Line | None = None
        pending_heading: tuple[tuple, str, Line] | None = None
        rows: list[list[str]] = []
        row_xs: tuple[float, ...] = ()
        table_id = -1

        def flush_table() -> None:
            nonlocal table_id
            if rows:
                out.append(Block("table", rows=[[clean_inline(c) for c in r] for r in rows]))
                rows.clear()
            table_id = -1

        def flush_para() -> None:
            if para:
                text = clean_inline(_joined(para))
                if text:
                    out.append(Block("paragraph", text=text))
                para.clear()

        def flush_code() -> None:
            if code:
                out.append(Block("code", text="\n".join(code)))
                code.clear()

        def flush_list() -> None:
            nonlocal lst
            if lst is not None:
                block = lst.block()
                if block.items:
                    out.append(block)
                lst = None

        def flush_heading() -> None:
            nonlocal pending_heading
            if pending_heading is not None:
                rank, text, _ = pending_heading
                text = clean_inline(text)
                if text:
                    out.append(Heading(text, rank))
                pending_heading = None

        for index, info in enumerate(self.infos):
            line = info.line
            text = line.text
            if info.table != table_id:
                flush_table()
            if info.table >= 0:
                flush_heading(), flush_para(), flush_code(), flush_list()
                table_id = info.table
                if info.row:
                    rows.append(list(line.cells))
                    row_xs = line.cell_xs
                else:
                    # Continuation of a wrapped cell: the column whose start is left of it.
                    col = max(c for c, x in enumerate(row_xs) if x <= line.x + 3)
                    rows[-1][col] = join_lines(rows[-1][col], text)
                prev = line
                continue
            if info.heading is not None:
                flush_para(), flush_code(), flush_list()
                depth, htext = info.heading
                rank = ranks[index]
                # Consecutive lines of one heading (a title wrapped over two lines) merge.
                if (
                    pending_heading is not None
                    and self.infos[index - 1].heading is not None
                    and self.infos[index - 1].style == info.style
                    and not info.label
                    and not line.gap_before
                    and line.page == pending_heading[2].page
                    and not pending_heading[1].rstrip().endswith((".", ":"))
                ):
                    pending_heading = (pending_heading[0], pending_heading[1] + " " + htext, line)
                else:
                    flush_heading()
                    pending_heading = (rank, htext, line)
                prev = line
                continue
            flush_heading()
            if line.mono and info.marker is None:
                flush_para(), flush_list()
                code.append(text)
                prev = line
                continue
            flush_code()
            m = info.marker
            if m is not None:
                flush_para()
                same_family = lst is not None and (lst.family, lst.depth) == (m.family, m.depth)
                if lst is not None and line.x > lst.x + 6 and not same_family:
                    # Deeper than the open list: a nested item, flattened into its parent.
                    lst.children[-1].append(m.text)
                elif lst is not None and lst.kind == m.kind and (line.x > lst.x - 6 or same_family):
                    lst.add_item(m.text)
                else:
                    flush_list()
                    lst = _ListState(m.kind, line.x, m.family, m.depth)
                    lst.add_item(m.text)
                prev = line
                continue
            if lst is not None and prev is not None and self._continues_item(line, prev, lst):
                lst.append_text(text)
                prev = line
                continue
            flush_list()
            if para and prev is not None and not self._new_paragraph(line, prev, para_x):
                para.append(text)
            else:
                flush_para()
                para.append(text)
                para_x = line.x
            prev = line
        flush_heading(), flush_para(), flush_code(), flush_list(), flush_table()
        return out

    def _continues_item(self, line: Line, prev: Line, lst: _ListState) -> bool:
        if line.x > lst.x + 3:
            return True  # hanging indent: the item's own text, also after a gap or page break
        if line.gap_before or (line.page != prev.page and _ends_sentence(prev.text)):
            return False
        return not _ends_sentence(prev.text) and line.x >= lst.x - 15

    def _new_paragraph(self, line: Line, prev: Line, para_x: float) -> bool:
        if line.gap_before:
            return True
        if line.page != prev.page:
            return _ends_sentence(prev.text)
        short_prev = len(prev.text) < 0.6 * self.typical_len
        if short_prev and (_ends_sentence(prev.text) or line.text[:1].isupper()):
            return True
        return line.x > para_x + 8 and _ends_sentence(prev.text)


def _joined(parts: list[str]) -> str:
    text = parts[0]
    for part in parts[1:]:
        text = join_lines(text, part)
    return text


def body_size(lines: list[Line]) -> float:
    """The font size most characters are set in (the body text size)."""
    weights: dict[float, int] = {}
    for line in lines:
        if line.size > 0:
            key = round(line.size * 2) / 2
            weights[key] = weights.get(key, 0) + len(line.text)
    return max(weights, key=lambda s: weights[s]) if weights else 0.0


def lines_to_elements(
    lines: list[Line], *, body: float | None = None, plain_text: bool = False
) -> list[Element]:
    """Recover headings, lists, paragraphs and code blocks from lines in reading order.

    `plain_text` turns on the signals only plain text files use (a short line standing alone
    between blank lines is a heading) and off the ones only typeset documents have.
    """
    size = body_size(lines) if body is None else body
    return _Recovery(lines, size, plain_text).elements()
