"""read_document: dispatch, content sniffing, and a clear IngestError for every bad file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from sopforge.errors import UserError
from sopforge.ingest.errors import (
    CorruptFileError,
    EmptyFileError,
    FileTooLargeError,
    IngestError,
    NoContentError,
    PasswordRequiredError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from sopforge.ingest.readers import SUPPORTED_EXTENSIONS, doc_id_for, read_document
from sopforge.ingest.readers import docx as docx_reader

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "northwind"
SAMPLE_PDF = EXAMPLES / "data-backup-restore.pdf"
SAMPLE_DOCX = EXAMPLES / "forklift-safety.docx"


def _encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(SAMPLE_PDF))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_errors_are_user_errors_with_codes() -> None:
    with pytest.raises(IngestError) as info:
        read_document("empty.md", data=b"")
    assert isinstance(info.value, UserError)
    assert info.value.code == "empty_file"
    assert info.value.path == "empty.md"


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blank.pdf"
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match=r"blank\.pdf: the file is empty \(0 bytes\)"):
        read_document(path)


@pytest.mark.parametrize("name", ["notes.md", "notes.txt", "page.html"])
def test_whitespace_only_text_is_empty(name: str) -> None:
    with pytest.raises(EmptyFileError, match="only whitespace"):
        read_document(name, data=b" \n\t\r\n  \n")


def test_too_large_from_bytes_and_from_disk(tmp_path: Path) -> None:
    with pytest.raises(FileTooLargeError, match="over the 0.0 MiB limit"):
        read_document("big.md", data=b"# x\n" * 600, max_bytes=1024)
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 5000)
    with pytest.raises(FileTooLargeError, match=r"big\.txt: the file is 0\.0 MiB"):
        read_document(path, max_bytes=4096)


def test_unsupported_extension_lists_supported_ones() -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        read_document("minutes.xyz", data=b"hello")
    for ext in SUPPORTED_EXTENSIONS:
        assert ext in info.value.message
    with pytest.raises(UnsupportedFormatError, match="save it as .docx"):
        read_document("old.doc", data=b"\xd0\xcf\x11\xe0")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_document(tmp_path / "nope.md")
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(UnreadableFileError, match="folder"):
        read_document(folder)


def test_text_renamed_pdf_is_corrupt_with_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "policy.pdf"
    path.write_text("This is just a note, not a PDF.\n")
    with pytest.raises(CorruptFileError) as info:
        read_document(path)
    assert "named .pdf but its content is plain text, not a PDF" in info.value.message


def test_docx_renamed_pdf_and_pdf_renamed_docx() -> None:
    with pytest.raises(CorruptFileError, match="content is a Word document, not a PDF"):
        read_document("x.pdf", data=SAMPLE_DOCX.read_bytes())
    with pytest.raises(CorruptFileError, match="content is a PDF, not a Word document"):
        read_document("x.docx", data=SAMPLE_PDF.read_bytes())


def test_truncated_pdf(tmp_path: Path) -> None:
    data = SAMPLE_PDF.read_bytes()
    path = tmp_path / "half.pdf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_document(path)


def test_garbage_pdf_body() -> None:
    data = b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"
    with pytest.raises(CorruptFileError, match=r"x\.pdf: the PDF"):
        read_document("x.pdf", data=data)


def test_pdf_with_user_password_needs_it(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(_encrypted(user_password="x"))
    with pytest.raises(PasswordRequiredError) as info:
        read_document(path)
    assert "needs a password" in info.value.message
    assert "upload the decrypted copy" in info.value.message


def test_pdf_with_only_an_owner_password_opens() -> None:
    doc = read_document("restricted.pdf", data=_encrypted(user_password=""))
    assert doc.title == "Data Backup and Restore"
    assert [s.title for s in doc.sections][:2] == ["1. Purpose", "2. Scope"]


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_docx_zip_bomb_is_rejected_before_extracting() -> None:
    bomb = _zip(
        {
            "[Content_Types].xml": b"<Types/>",
            "word/document.xml": b"<w:document/>",
            "word/media/huge.bin": b"\0" * (11 * 2**20),
        }
    )
    assert len(bomb) < 100_000
    with pytest.raises(CorruptFileError) as info:
        read_document("bomb.docx", data=bomb)
    assert "zip bomb" in info.value.message and "huge.bin" in info.value.message


def test_docx_total_uncompressed_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docx_reader, "MAX_UNCOMPRESSED", 1000)
    with pytest.raises(CorruptFileError, match="would expand to"):
        read_document("x.docx", data=SAMPLE_DOCX.read_bytes())


def test_docx_that_is_not_a_zip_or_not_word() -> None:
    with pytest.raises(CorruptFileError, match="not a readable zip archive"):
        read_document("x.docx", data=b"PK\x03\x04 this zip is broken")
    with pytest.raises(CorruptFileError, match="no word/document.xml"):
        read_document(
            "x.docx", data=_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"})
        )
    with pytest.raises(CorruptFileError, match="could not be parsed"):
        read_document(
            "x.docx",
            data=_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<not xml"}),
        )


def test_encrypted_or_legacy_word_file() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512
    with pytest.raises(UnsupportedFormatError, match=r"old binary Word \(\.doc\)"):
        read_document("x.docx", data=ole)
    with pytest.raises(PasswordRequiredError, match="password-protected"):
        read_document("x.docx", data=ole + "EncryptionInfo".encode("utf-16-le"))


def test_non_utf8_text_is_decoded_not_rejected() -> None:
    cp1252 = "PURPOSE\n\nClaims over €50 need a receipt – see the café résumé.\n".encode("cp1252")
    doc = read_document("notes.txt", data=cp1252)
    assert "Claims over €50 need a receipt – see the café résumé." in doc.render()[0]
    latin1 = "Größe \x81 ok".encode("latin-1")  # 0x81 is undefined in cp1252
    assert "Größe" in read_document("x.md", data=latin1).render()[0]
    utf16 = "# Title\n\n## Steps\n\n1. Öffnen".encode("utf-16")
    assert read_document("x.md", data=utf16).sections[0].blocks[0].items == ["Öffnen"]


def test_binary_in_a_text_file() -> None:
    with pytest.raises(CorruptFileError, match="named .txt but its content is binary data"):
        read_document("x.txt", data=b"\x00\x01\x02binary\x00")


def test_html_scripts_styles_and_navigation_are_dropped() -> None:
    html = b"""<!doctype html><html><head><title>Badge policy</title>
    <style>h1 {color: red}</style><script>alert('x'); var steps = 1;</script></head>
    <body><nav><a href="/">Home</a> | <a href="/hr">HR</a></nav>
    <h1>Badge policy</h1><p>Read this first.</p>
    <h2>Steps</h2><ol><li>Call security</li><li>Get a <b>temporary</b> badge</li></ol>
    <h2>Fees</h2><table><tr><th>Loss</th><th>Fee</th></tr><tr><td>Second</td><td>15</td></tr></table>
    <script>document.write('tracking')</script></body></html>"""
    doc = read_document("badge.html", data=html)
    text = doc.render()[0]
    assert doc.title == "Badge policy"
    assert "alert" not in text and "tracking" not in text and "color" not in text
    assert "Home" not in text
    steps = doc.sections[0]
    assert steps.title == "Steps" and steps.blocks[0].items == [
        "Call security",
        "Get a temporary badge",
    ]
    assert doc.sections[1].blocks[0].rows == [["Loss", "Fee"], ["Second", "15"]]


def test_document_without_any_text() -> None:
    with pytest.raises(NoContentError, match="contains no text"):
        read_document(
            "x.html", data=b"<html><body><script>x()</script><img src=a.png></body></html>"
        )


def test_doc_id_default_and_override() -> None:
    assert doc_id_for("uploads/Lost Badge (v2).md") == "lost-badge-v2"
    assert doc_id_for("Café_Policy.PDF") == "cafe_policy"
    assert doc_id_for("###.md") == "document"
    doc = read_document("Expense Claims.md", data=b"# Expenses\n\n## Limits\n\n- up to 250\n")
    assert doc.doc_id == "expense-claims"
    assert read_document("a.md", data=b"# A\n\nx", doc_id="custom").doc_id == "custom"


def test_uppercase_extension_and_data_without_file() -> None:
    doc = read_document("/nonexistent/dir/Guide.MD", data=b"# Guide\n\n## One\n\nText.\n")
    assert doc.format == "markdown" and doc.title == "Guide"
    assert [s.title for s in doc.sections] == ["One"]


def test_no_extension_is_sniffed() -> None:
    assert read_document("upload", data=SAMPLE_PDF.read_bytes()).format == "pdf"
    assert read_document("upload", data=b"# Title\n\n## Part\n\ntext").format == "markdown"
    with pytest.raises(UnsupportedFormatError, match="files without an extension"):
        read_document("upload", data=b"\x00\x01\x02\x03")
