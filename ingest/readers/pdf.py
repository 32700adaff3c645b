"""PDF reader: pypdf text extraction with the layout signals plain extraction throws away.

Each page is extracted once, with a `visitor_text` callback that sees every text run together
with its font and text matrix. From those runs we rebuild lines that know their font size,
boldness, monospacing, position and whether they start with a symbol-font glyph; repeated page
headers/footers, page numbers, footnotes and tables of contents are dropped; `layout` then
recovers headings, numbered steps, bullets and paragraphs from the lines.
"""

from __future__ import annotations

import logging
import math
import re
from io import BytesIO
from typing import Any

from pypdf import PasswordType, PdfReader

from sopforge.ingest.document import Document
from sopforge.ingest.errors import (
    CorruptFileError,
    NoContentError,
    PasswordRequiredError,
    ScannedPDFError,
)
from sopforge.ingest.readers.common import assemble, clean_inline
from sopforge.ingest.readers.layout import (
    Line,
    body_size,
    drop_toc,
    heading_number,
    is_toc_line,
    lines_to_elements,
)

log = logging.getLogger(__name__)

_BOLD_NAME = re.compile(r"bold|black|heavy|semibold|demi|,b$|-b$", re.IGNORECASE)
_MONO_NAME = re.compile(r"courier|mono|consol|menlo|inconsolata|typewriter", re.IGNORECASE)
_SYMBOL_NAME = re.compile(r"symbol|wingding|webding|dingbat", re.IGNORECASE)
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "↪": ""})
_PAGE_NUMBER = re.compile(
    r"^(?:page\s*)?[-–—]?\s*(?:\d{1,4}|[ivxlc]{1,7})\s*[-–—]?(?:\s*(?:of|/)\s*\d{1,4})?$",
    re.IGNORECASE,
)
_BLANK_PAGE = re.compile(r"^this page (?:is )?intentionally (?:left )?blank\.?$", re.IGNORECASE)
_BAD_META_TITLE = re.compile(r"\.(?:pdf|docx?|rtf|odt)$|^microsoft word|^untitled", re.IGNORECASE)

# Header/footer zones, as a fraction of the page height from the bottom.
_FOOTER_ZONE = 0.13
_HEADER_ZONE = 0.87


def _obj(value: Any) -> Any:
    return value.get_object() if hasattr(value, "get_object") else value


class _FontFlags:
    """bold / monospaced / symbol for each font dictionary, computed once per font."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, bool, bool, bool]] = {}

    def of(self, font: Any) -> tuple[bool, bool, bool]:
        if font is None:
            return False, False, False
        hit = self._cache.get(id(font))
        if hit is not None and hit[0] is font:
            return hit[1], hit[2], hit[3]
        name = str(_obj(font.get("/BaseFont", "")) or "")
        bold = bool(_BOLD_NAME.search(name))
        if not bold:
            descriptor = _obj(font.get("/FontDescriptor"))
            if descriptor is not None and hasattr(descriptor, "get"):
                weight = _obj(descriptor.get("/FontWeight", 0))
                bold = isinstance(weight, (int, float)) and weight >= 600
        flags = (bold, bool(_MONO_NAME.search(name)), bool(_SYMBOL_NAME.search(name)))
        self._cache[id(font)] = (font, *flags)
        return flags


class _PageCollector:
    """Builds `Line`s from the text runs pypdf reports for one page."""

    def __init__(self, page_no: int, fonts: _FontFlags):
        self.page_no = page_no
        self.fonts = fonts
        self.lines: list[Line] = []
        # Runs of the current line: (text, size, bold, mono, symbol, x, y)
        self.runs: list[tuple[str, float, bool, bool, bool, float, float]] = []

    def visit(self, text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if not text:
            return
        # Effective matrix = tm x cm; its y scale gives the rendered font size.
        a, b, c, d, e, f = cm
        tc, td, te, tf = tm[2], tm[3], tm[4], tm[5]
        sy = math.hypot(tc * a + td * c, tc * b + td * d)
        x = te * a + tf * c + e
        y = te * b + tf * d + f
        bold, mono, symbol = self.fonts.of(font)
        eff = abs(size * sy) if sy else abs(size)
        parts = text.split("\n")
        for k, part in enumerate(parts):
            if k:
                self.finish_line()
            if part:
                self.runs.append((part, eff, bold, mono, symbol, x, y))

    def finish_line(self) -> None:
        runs = self.runs
        self.runs = []
        text = "".join(r[0] for r in runs)
        if not text.strip():
            self.lines.append(Line("", page=self.page_no))
            return
        sizes: dict[float, int] = {}
        n_bold = n_mono = n = 0
        first = None
        cells: list[str] = [""]
        cell_xs: list[float] = []
        end = 0.0
        for part, size, bold, mono, symbol, x, y in runs:
            visible = len(part) - part.count(" ")
            if visible <= 0:
                cells[-1] += part
                continue
            if first is None:
                first = (symbol, x, y)
                cell_xs.append(x)
            elif x - end > 1.5 * size:
                # A wide jump to the right: the run starts a new table cell. The end of the
                # previous run is estimated generously (0.6 em per character) so that runs
                # split inside ordinary text are not taken for cells.
                cells.append("")
                cell_xs.append(x)
            cells[-1] += part
            end = max(end, x + len(part) * size * 0.6)
            n += visible
            sizes[size] = sizes.get(size, 0) + visible
            n_bold += visible if bold else 0
            n_mono += visible if mono else 0
        assert first is not None
        cells = [clean_inline(c) for c in cells]
        self.lines.append(
            Line(
                text=text.translate(_LIGATURES).strip(),
                size=max(sizes, key=lambda s: sizes[s]),
                bold=n_bold >= 0.7 * n,
                mono=n_mono >= 0.8 * n,
                x=first[1],
                y=first[2],
                page=self.page_no,
                symbol_lead=first[0],
                cells=tuple(cells) if len(cells) > 1 and all(cells) else (),
                cell_xs=tuple(cell_xs) if len(cells) > 1 and all(cells) else (),
            )
        )


def _collapse_overprint(text: str) -> str:
    """'Jason KickJason Kick' (text drawn 2-5 times for fake bold) -> 'Jason Kick'."""
    changed = True
    while changed:
        changed = False
        n = len(text)
        for k in (2, 3, 5):
            if n % k == 0 and n >= 2 * k and text == text[: n // k] * k:
                text, changed = text[: n // k], True
                break
    return text


def _collapse_letterspacing(text: str) -> str:
    """'C O M P U T E R   S E C U R I T Y' -> 'COMPUTER SECURITY'."""
    tokens = text.split()
    if len(tokens) < 5 or any(len(t) > 1 for t in tokens):
        return text
    gaps = [len(g) for g in re.findall(r" +", text.strip())]
    letter_gap = min(gaps)
    words = re.split(f" {{{letter_gap + 1},}}", text.strip())
    return " ".join(w.replace(" ", "") for w in words)


def _has_images(page: Any) -> bool:
    try:
        resources = _obj(page.get("/Resources"))
        xobjects = _obj(resources.get("/XObject")) if resources else None
        return bool(xobjects) and any(
            _obj(_obj(xo).get("/Subtype")) == "/Image" for xo in xobjects.values()
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def _pages(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"page {numbers[0]} has"
    return f"pages {', '.join(map(str, numbers))} have"


def _norm_key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", text.lower())).strip()


def _drop_page_furniture(pages: list[list[Line]], heights: list[tuple[float, float]]) -> None:
    """Remove running headers/footers (the same short text near the top or bottom edge of many
    pages, digits ignored) and page numbers, in place."""
    counts: dict[str, int] = {}
    zoned: list[list[tuple[int, str]]] = []
    for lines, (bottom, height) in zip(pages, heights, strict=True):
        here: list[tuple[int, str]] = []
        seen: set[str] = set()
        for k, line in enumerate(lines):
            if not line.text or height <= 0:
                continue
            rel = (line.y - bottom) / height
            if _FOOTER_ZONE < rel < _HEADER_ZONE or len(line.text.split()) > 15:
                continue
            key = _norm_key(line.text)
            here.append((k, key))
            if key not in seen:
                seen.add(key)
                counts[key] = counts.get(key, 0) + 1
        zoned.append(here)
    threshold = max(2, math.ceil(0.3 * len(pages)))
    for lines, here in zip(pages, zoned, strict=True):
        drop = {k for k, key in here if counts[key] >= threshold}
        drop |= {k for k, _ in here if _PAGE_NUMBER.match(lines[k].text)}
        if drop:
            lines[:] = [line for k, line in enumerate(lines) if k not in drop]


def _is_toc_page(lines: list[Line]) -> bool:
    content = [line for line in lines if line.text]
    return len(content) >= 4 and sum(is_toc_line(line.text) for line in content) >= 0.5 * len(
        content
    )


def _raise_top_headings(lines: list[Line], body: float) -> list[Line]:
    """Move a page title drawn last but placed at the top of the page (slides, flowcharts) to the
    start of its page, so it heads the page's content rather than trailing it."""
    content = [line for line in lines if line.text]
    if len(content) < 2:
        return lines
    top = max(line.y for line in content)
    lifted: list[Line] = []
    for k, line in enumerate(content):
        big = line.size >= body * 1.12 and line.size >= body + 1
        if k and big and line.y >= top - 1.5 * line.size:
            lifted.append(line)
        elif lifted and big and content[k - 1] is lifted[-1] and line.size == lifted[-1].size:
            lifted.append(line)  # the title's second line
    if not lifted:
        return lines
    rest = [line for line in lines if not any(line is t for t in lifted)]
    return lifted + rest


def _mark_gaps(lines: list[Line]) -> list[Line]:
    """Blank lines and large vertical jumps become `gap_before` on the next content line."""
    out: list[Line] = []
    pending = True
    prev: Line | None = None
    for line in lines:
        if not line.text:
            pending = True
            continue
        if prev is not None and prev.page == line.page and not pending:
            drop = prev.y - line.y
            pending = drop > 1.9 * max(prev.size, line.size, 1.0)
        line.gap_before = pending
        out.append(line)
        pending = False
        prev = line
    return out


def _meta_title(reader: PdfReader) -> str | None:
    try:
        meta = reader.metadata
        title = clean_inline(str(meta.title)) if meta and meta.title else ""
    except Exception:  # noqa: BLE001 - broken metadata must not stop reading the text
        return None
    if sum(c.isalpha() for c in title) < 3 or _BAD_META_TITLE.search(title):
        return None
    return title


def _first_page_title(lines: list[Line], body: float) -> str | None:
    """The largest text on the first page that has text, merged over consecutive lines."""
    if not lines:
        return None
    first_page = lines[0].page
    candidates = [
        line
        for line in lines
        if line.page == first_page and sum(c.isalpha() for c in line.text) >= 3
    ]
    if not candidates:
        return None
    biggest = max(line.size for line in candidates)
    if biggest < body * 1.12:
        return None
    parts: list[str] = []
    for line in candidates:
        if parts and (
            line.gap_before or abs(line.size - biggest) >= 0.5 or heading_number(line.text)
        ):
            break
        if abs(line.size - biggest) < 0.5:
            parts.append(line.text)
    title = clean_inline(" ".join(parts))
    return title if 3 <= len(title) <= 200 else None


def _open(data: bytes, name: str) -> PdfReader:
    head = data[:1024]
    if b"%PDF-" not in head:
        raise CorruptFileError(
            name,
            "the file is named .pdf but its content is not a PDF (it has no %PDF header). "
            "Export the document to PDF again, or upload it with its real extension.",
        )
    if b"%%EOF" not in data[-2048:]:
        raise CorruptFileError(
            name,
            "the PDF is truncated (its end-of-file marker is missing), probably by an "
            "interrupted download or copy. Upload the complete file again.",
        )
    try:
        reader = PdfReader(BytesIO(data), strict=False)
        if reader.is_encrypted:
            if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise PasswordRequiredError(
                    name,
                    "the PDF is encrypted and needs a password to open. Remove the password "
                    "(print or save it as an unprotected PDF) and upload the decrypted copy.",
                )
        len(reader.pages)
    except PasswordRequiredError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise CorruptFileError(
            name,
            f"the PDF could not be parsed ({type(exc).__name__}: {exc}). The file is damaged; "
            "open it in a PDF viewer and save or export it again, then upload that copy.",
        ) from exc
    return reader


def _extract(reader: PdfReader, warnings: list[str]) -> tuple[list[list[Line]], list, list[int]]:
    fonts = _FontFlags()
    pages: list[list[Line]] = []
    heights: list[tuple[float, float]] = []
    failed: list[int] = []
    for no, page in enumerate(reader.pages):
        collector = _PageCollector(no, fonts)
        try:
            page.extract_text(visitor_text=collector.visit)
            collector.finish_line()
            box = page.mediabox
            heights.append((float(box.bottom), float(box.height)))
        except Exception as exc:  # noqa: BLE001 - one damaged page must not lose the others
            log.debug("page %d failed: %s", no + 1, exc)
            failed.append(no + 1)
            collector.lines = []
            heights.append((0.0, 0.0))
        pages.append(collector.lines)
    if failed:
        warnings.append(f"{_pages(failed)} damage and could not be read; skipped")
    return pages, heights, failed


def read_pdf(data: bytes, name: str, doc_id: str, fallback_title: str) -> Document:
    reader = _open(data, name)
    warnings: list[str] = []
    pages, heights, failed = _extract(reader, warnings)
    n_pages = len(pages)
    if not n_pages:
        raise CorruptFileError(
            name, "the PDF has no pages that can be found. Export the PDF again and upload it."
        )
    if len(failed) == n_pages:
        raise CorruptFileError(
            name, "no page of the PDF could be read. Export the PDF again and upload that copy."
        )
    text_chars = sum(len(line.text) - line.text.count(" ") for p in pages for line in p)
    if text_chars < 20:
        if any(_has_images(page) for page in reader.pages):
            raise ScannedPDFError(
                name,
                "the PDF is scanned / image-only: its pages are pictures with no text layer. "
                "Run OCR on it first (e.g. ocrmypdf, or 'Recognize text' in your PDF editor) "
                "and upload the searchable PDF.",
            )
        raise NoContentError(name, "the PDF contains no text. Check that it is the right file.")
    empty = [k + 1 for k, p in enumerate(pages) if not any(line.text for line in p)]
    image_only = [k for k in empty if _has_images(reader.pages[k - 1])]
    if image_only:
        warnings.append(
            f"{_pages(image_only)} no text layer (scanned?) and would need OCR to be read"
        )

    body = body_size([line for p in pages for line in p if line.text])
    for k, lines in enumerate(pages):
        kept = []
        for line in lines:
            if line.text:
                if line.size and line.size < 0.65 * body:
                    continue  # footnotes and fine print under figures
                line.text = _collapse_letterspacing(_collapse_overprint(line.text))
                if _BLANK_PAGE.match(line.text):
                    continue
            kept.append(line)
        pages[k] = kept
    _drop_page_furniture(pages, heights)
    flat: list[Line] = []
    for lines in pages:
        if not _is_toc_page(lines):
            flat.extend(_raise_top_headings(lines, body))
    lines = _mark_gaps(drop_toc(flat))

    title = _meta_title(reader) or _first_page_title(lines, body)
    elements = lines_to_elements(lines, body=body)
    doc = assemble(
        elements,
        doc_id=doc_id,
        fmt="pdf",
        title=title,
        fallback_title=fallback_title,
        pages=n_pages,
        warnings=warnings,
    )
    if not doc.sections and not doc.preamble:
        raise NoContentError(name, "no readable text was found in the PDF.")
    return doc
