"""Document readers: one entry point, `read_document`, for every supported format.

The file extension chooses the reader; the content is sniffed too, so a file whose extension
lies fails with a message that says what it really is. Every failure is an `IngestError`
subclass naming the file and what to do, so a batch can report it and go on.
"""

from __future__ import annotations

from pathlib import Path

from sopforge.ingest.document import Document
from sopforge.ingest.errors import (
    CorruptFileError,
    EmptyFileError,
    FileTooLargeError,
    NoContentError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from sopforge.ingest.readers.common import decode_text, humanize, looks_binary, slugify

__all__ = ["SUPPORTED_EXTENSIONS", "read_document", "doc_id_for", "sniff_format"]

# extension -> format name used in Document.format
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}
_HINTS = {
    ".doc": "Open it in Word or LibreOffice and save it as .docx.",
    ".rtf": "Open it in Word or LibreOffice and save it as .docx or .pdf.",
    ".odt": "Open it in LibreOffice and save it as .docx (File > Save As).",
    ".pages": "Export it from Pages as .docx or .pdf.",
    ".pptx": "Export the slides to PDF first.",
    ".xlsx": "Export the sheet to PDF first, or copy the procedure into a document.",
}
DEFAULT_MAX_BYTES = 50 * 2**20


def doc_id_for(path: str | Path) -> str:
    """Default document id: the slug of the file stem ('Lost Badge (v2).md' -> 'lost-badge-v2')."""
    return slugify(Path(path).stem)


def sniff_format(data: bytes) -> str | None:
    """What the bytes are, whatever the name says: 'pdf', 'docx', 'office' (another Office
    zip), 'zip', 'ole', 'html', 'text' or None (binary of some other kind)."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        if b"word/" in data[:65536]:
            return "docx"
        return "office" if b"[Content_Types].xml" in data[:4096] else "zip"
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if looks_binary(data):
        return None
    lowered = decode_text(data[:2048]).lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<body" in lowered[:2048]:
        return "html"
    return "text"


_DESCRIBE = {
    "pdf": "a PDF",
    "docx": "a Word document",
    "office": "an Office document (spreadsheet or slides)",
    "zip": "a zip archive",
    "ole": "an old binary Office file",
    "html": "an HTML page",
    "text": "plain text",
    None: "binary data",
}


def _supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_EXTENSIONS))


def _load(path: Path, data: bytes | None, max_bytes: int) -> bytes:
    name = str(path)
    if data is None:
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise FileTooLargeError(name, _too_large(size, max_bytes))
            data = path.read_bytes()
        except IsADirectoryError as exc:
            raise UnreadableFileError(name, "this is a folder, not a file.") from exc
        except FileNotFoundError as exc:
            raise UnreadableFileError(name, "the file does not exist. Check the path.") from exc
        except OSError as exc:
            raise UnreadableFileError(
                name, f"the file could not be read ({exc.strerror or exc}). Check its permissions."
            ) from exc
    if len(data) > max_bytes:
        raise FileTooLargeError(name, _too_large(len(data), max_bytes))
    if not data:
        raise EmptyFileError(name, "the file is empty (0 bytes). Upload the document again.")
    return data


def _too_large(size: int, limit: int) -> str:
    return (
        f"the file is {size / 2**20:.1f} MiB, over the {limit / 2**20:.1f} MiB limit. Split it "
        "into smaller documents, or compress its images, and upload again."
    )


def _expected_format(path: Path, data: bytes) -> str:
    ext = path.suffix.lower()
    if ext in SUPPORTED_EXTENSIONS:
        return SUPPORTED_EXTENSIONS[ext]
    if not ext:
        # No extension to go by: trust the content when it is a format we read.
        sniffed = sniff_format(data)
        if sniffed in ("pdf", "docx", "html", "text"):
            return "markdown" if sniffed == "text" else sniffed  # type: ignore[return-value]
    hint = _HINTS.get(ext, "")
    shown = f"'{ext}' files are" if ext else "files without an extension are"
    raise UnsupportedFormatError(
        str(path),
        f"{shown} not supported. Supported formats: {_supported_list()}. {hint}".rstrip(),
    )


def _decode_text_file(path: Path, data: bytes, fmt: str) -> str:
    _check_content(path, data, fmt, ("text", "html"))
    text = decode_text(data)
    if not text.strip():
        raise EmptyFileError(
            str(path), "the file contains only whitespace. Upload the document with its text."
        )
    return text


def read_document(
    path: str | Path,
    *,
    data: bytes | None = None,
    doc_id: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Document:
    """Read a PDF, DOCX, Markdown, text or HTML file into a structured `Document`.

    `data` is the file's content when the caller already has it (an upload); `path` then only
    names it. `doc_id` defaults to the slug of the file stem. Raises an `IngestError` subclass
    for anything that cannot be read: empty, too large, unsupported, corrupt, password
    protected, scanned without text, or without any text content.
    """
    path = Path(path)
    raw = _load(path, data, max_bytes)
    fmt = _expected_format(path, raw)
    doc_id = doc_id or doc_id_for(path)
    fallback = humanize(path.stem)
    name = str(path)
    doc = _read(fmt, path, raw, doc_id, fallback)
    if not any(s.plain_text() for _, s in doc.iter_sections()) and not any(
        b.plain_text() for b in doc.preamble
    ):
        raise NoContentError(
            name, "the document was read but contains no text. Check that it is the right file."
        )
    return doc


def _check_content(path: Path, data: bytes, fmt: str, accepted: tuple[str | None, ...]) -> None:
    """The extension says `fmt`; fail clearly when the bytes are something else."""
    sniffed = sniff_format(data)
    if sniffed in accepted:
        return
    expected = {"pdf": "a PDF", "docx": "a Word document", "html": "HTML"}.get(fmt, "text")
    raise CorruptFileError(
        str(path),
        f"the file is named {path.suffix or '(no extension)'} but its content is "
        f"{_DESCRIBE[sniffed]}, not {expected}. Upload the original file, or rename it with its "
        f"real extension (supported: {_supported_list()}).",
    )


def _read(fmt: str, path: Path, raw: bytes, doc_id: str, fallback: str) -> Document:
    name = str(path)
    if fmt == "pdf":
        _check_content(path, raw, fmt, ("pdf",))
        from sopforge.ingest.readers.pdf import read_pdf

        return read_pdf(raw, name, doc_id, fallback)
    if fmt == "docx":
        _check_content(path, raw, fmt, ("docx", "office", "zip", "ole", None))
        from sopforge.ingest.readers.docx import read_docx

        return read_docx(raw, name, doc_id, fallback)
    text = _decode_text_file(path, raw, fmt)
    if fmt == "html":
        from sopforge.ingest.readers.html import read_html

        return read_html(text, doc_id, fallback)
    if fmt == "markdown":
        from sopforge.ingest.readers.markdown import read_markdown

        return read_markdown(text, doc_id, fallback)
    from sopforge.ingest.readers.text import read_text

    return read_text(text, doc_id, fallback)
