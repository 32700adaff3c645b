"""DOCX reader (python-docx): Heading styles and outline levels to sections, list numbering to
ordered/unordered lists, tables to table blocks, in document order.

The archive is checked before python-docx unpacks it: a DOCX is a zip, and a small zip can
expand to gigabytes (a zip bomb), so declared sizes and compression ratios are verified first.
zipfile never inflates past a member's declared size, so checking the declarations suffices.
"""

from __future__ import annotations

import re
import zipfile
from io import BytesIO
from typing import Any

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from sopforge.ingest.document import Block, Document
from sopforge.ingest.errors import CorruptFileError, PasswordRequiredError, UnsupportedFormatError
from sopforge.ingest.readers.common import (
    Element,
    Heading,
    assemble,
    clean_inline,
    flatten_item,
)
from sopforge.ingest.readers.layout import match_marker, title_like

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

MAX_UNCOMPRESSED = 256 * 2**20  # a whole document's XML and media, unpacked
MAX_MEMBERS = 10_000
MAX_RATIO = 100  # uncompressed / compressed, for members over BOMB_MIN_SIZE
BOMB_MIN_SIZE = 10 * 2**20

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_UNORDERED_FORMATS = {"bullet", "none", ""}


def check_archive(data: bytes, name: str) -> None:
    """Reject what is not a Word archive, and zip bombs, before anything is inflated."""
    if data.startswith(_OLE_MAGIC):
        if "EncryptionInfo".encode("utf-16-le") in data:
            raise PasswordRequiredError(
                name,
                "the Word document is password-protected. Remove the password in Word "
                "(File > Info > Protect Document) and upload the unprotected copy.",
            )
        raise UnsupportedFormatError(
            name,
            "this is an old binary Word (.doc) file renamed to .docx. Open it in Word or "
            "LibreOffice, save it as .docx, and upload that file.",
        )
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFileError(
            name,
            f"the file is not a valid DOCX (it is not a readable zip archive: {exc}). "
            "Save the document again as .docx in Word or LibreOffice and upload that copy.",
        ) from exc
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CorruptFileError(
            name,
            f"the DOCX archive has {len(infos)} entries, far more than a document has; it "
            "was rejected as unsafe. Save the document again as .docx and upload that copy.",
        )
    total = sum(i.file_size for i in infos)
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > BOMB_MIN_SIZE and ratio > MAX_RATIO:
            raise CorruptFileError(
                name,
                f"the DOCX member {info.filename!r} would expand {ratio:.0f}x to "
                f"{info.file_size / 2**20:.0f} MiB (a zip bomb); it was rejected unopened. "
                "Upload the original document instead.",
            )
    if total > MAX_UNCOMPRESSED:
        raise CorruptFileError(
            name,
            f"the DOCX would expand to {total / 2**20:.0f} MiB, more than the "
            f"{MAX_UNCOMPRESSED // 2**20} MiB limit; it was rejected unopened. Remove large "
            "embedded media or split the document, then upload it again.",
        )
    if "word/document.xml" not in archive.namelist():
        raise CorruptFileError(
            name,
            "the file is a zip archive but not a Word document (it has no word/document.xml). "
            "If it is a spreadsheet or presentation, export it to PDF or DOCX first.",
        )


def _val(el: Any, tag: str) -> str | None:
    found = el.find(_W + tag) if el is not None else None
    return found.get(_W + "val") if found is not None else None


class _Numbering:
    """numFmt ('decimal', 'bullet', ...) for each (numId, level) of the numbering part."""

    def __init__(self, document: Any):
        self.formats: dict[tuple[str, str], str] = {}
        try:
            root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            return
        abstract: dict[str, dict[str, str]] = {}
        for a in root.findall(_W + "abstractNum"):
            levels = {}
            for lvl in a.findall(_W + "lvl"):
                levels[lvl.get(_W + "ilvl", "0")] = _val(lvl, "numFmt") or ""
            abstract[a.get(_W + "abstractNumId", "")] = levels
        for num in root.findall(_W + "num"):
            levels = abstract.get(_val(num, "abstractNumId") or "", {})
            for ilvl, fmt in levels.items():
                self.formats[(num.get(_W + "numId", ""), ilvl)] = fmt

    def kind(self, num_id: str, ilvl: str) -> str:
        fmt = self.formats.get((num_id, ilvl), "decimal")
        return "unordered" if fmt in _UNORDERED_FORMATS else "ordered"


def _style_chain(paragraph: Paragraph) -> list[Any]:
    chain = []
    try:
        style = paragraph.style
    except (KeyError, ValueError, AttributeError):
        return chain
    while style is not None and len(chain) < 8:
        chain.append(style)
        style = style.base_style
    return chain


def _heading_level(paragraph: Paragraph, chain: list[Any]) -> int | None:
    for style in chain:
        m = _HEADING_STYLE.match(style.name or "")
        if m:
            return int(m.group(1))
        if (style.name or "").lower() == "title":
            return 0
    for ppr in [paragraph._p.pPr] + [getattr(s.element, "pPr", None) for s in chain]:
        level = _val(ppr, "outlineLvl")
        if level is not None and level.isdigit() and int(level) < 9:
            return int(level) + 1
    return None


def _list_info(
    paragraph: Paragraph, chain: list[Any], numbering: _Numbering
) -> tuple[str, int] | None:
    """(kind, level) when the paragraph is a list item by numbering or list style.

    Word's "List Number 2" / "List Bullet 3" styles nest by their own numbering definition
    rather than by ilvl, so the number in the style name counts as a level too.
    """
    style_level = max((_style_level((s.name or "").lower()) for s in chain), default=0)
    for ppr in [paragraph._p.pPr] + [getattr(s.element, "pPr", None) for s in chain]:
        numpr = ppr.find(_W + "numPr") if ppr is not None else None
        if numpr is not None:
            num_id = _val(numpr, "numId") or "0"
            ilvl = _val(numpr, "ilvl") or "0"
            if num_id == "0":
                return None
            level = int(ilvl) if ilvl.isdigit() else 0
            return numbering.kind(num_id, ilvl), max(level, style_level)
    for style in chain:
        name = (style.name or "").lower()
        if name.startswith("list number"):
            return "ordered", _style_level(name)
        if name.startswith("list bullet") or name == "list paragraph":
            return "unordered", _style_level(name)
    return None


def _style_level(name: str) -> int:
    m = re.match(r"^list (?:number|bullet|continue|paragraph)\s*(\d)$", name)
    return int(m.group(1)) - 1 if m else 0


def _all_bold(paragraph: Paragraph, chain: list[Any]) -> bool:
    style_bold = any(s.font.bold for s in chain if getattr(s, "font", None) is not None)
    runs = [r for r in paragraph.runs if r.text.strip()]
    return bool(runs) and all(r.bold or (r.bold is None and style_bold) for r in runs)


class _ListBuilder:
    def __init__(self) -> None:
        self.kind: str | None = None
        self.items: list[str] = []
        self.children: list[list[str]] = []

    def add(self, kind: str, level: int, text: str, out: list[Element]) -> None:
        if level > 0 and self.items:
            self.children[-1].append(text)
            return
        if kind != self.kind:
            self.flush(out)
            self.kind = kind
        self.items.append(text)
        self.children.append([])

    def flush(self, out: list[Element]) -> None:
        if self.items and self.kind:
            items = [flatten_item(i, c) for i, c in zip(self.items, self.children, strict=True)]
            out.append(Block(self.kind, items=items))  # type: ignore[arg-type]
        self.kind, self.items, self.children = None, [], []


def _table_rows(table: Table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue  # a merged cell is reported once per grid column it spans
            seen.add(id(cell._tc))
            cells.append(clean_inline(" ".join(p.text for p in cell.paragraphs)))
        if any(cells):
            rows.append(cells)
    return rows


def _body_children(element: Any) -> list[Any]:
    """Block-level children in order, looking inside content controls (w:sdt)."""
    out = []
    for child in element.iterchildren():
        if child.tag == _W + "sdt":
            content = child.find(_W + "sdtContent")
            if content is not None:
                out.extend(_body_children(content))
        else:
            out.append(child)
    return out


def docx_elements(document: Any) -> tuple[list[Element], str | None]:
    numbering = _Numbering(document)
    out: list[Element] = []
    lists = _ListBuilder()
    title: str | None = None
    for child in _body_children(document.element.body):
        if child.tag == _W + "tbl":
            lists.flush(out)
            rows = _table_rows(Table(child, document))
            if rows:
                out.append(Block("table", rows=rows))
            continue
        if child.tag != _W + "p":
            continue
        paragraph = Paragraph(child, document)
        text = clean_inline(paragraph.text)
        if not text:
            continue
        chain = _style_chain(paragraph)
        level = _heading_level(paragraph, chain)
        if level == 0:
            lists.flush(out)
            title = title or text
            continue
        if level is not None:
            lists.flush(out)
            out.append(Heading(text, (level,)))
            continue
        info = _list_info(paragraph, chain, numbering)
        if info is not None:
            lists.add(info[0], info[1], text, out)
            continue
        marker = match_marker(text)
        if marker is not None:
            # Numbers and bullets typed by hand instead of Word's list numbering.
            lists.add(marker.kind, 0, marker.text, out)
            continue
        lists.flush(out)
        if _all_bold(paragraph, chain) and title_like(text, max_words=10):
            out.append(Heading(text, (10,)))  # a bold line used as a heading: lowest level
        else:
            out.append(Block("paragraph", text=text))
    lists.flush(out)
    return out, title


def read_docx(data: bytes, name: str, doc_id: str, fallback_title: str) -> Document:
    check_archive(data, name)
    try:
        document = docx.Document(BytesIO(data))
        elements, style_title = docx_elements(document)
        meta_title = clean_inline(document.core_properties.title or "")
    except Exception as exc:  # noqa: BLE001 - python-docx/lxml raise many types on bad parts
        raise CorruptFileError(
            name,
            f"the DOCX could not be parsed ({type(exc).__name__}: {exc}). Open it in Word or "
            "LibreOffice, save it again as .docx, and upload that copy.",
        ) from exc
    return assemble(
        elements,
        doc_id=doc_id,
        fmt="docx",
        title=meta_title or style_title,
        fallback_title=fallback_title,
    )
