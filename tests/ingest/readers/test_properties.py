"""Property tests: whatever bytes arrive, a reader returns a Document or raises an IngestError."""

from __future__ import annotations

import io
import re
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sopforge.ingest.document import Document
from sopforge.ingest.errors import IngestError
from sopforge.ingest.readers import SUPPORTED_EXTENSIONS, read_document
from sopforge.ingest.readers.common import Heading
from sopforge.ingest.readers.layout import Line, lines_to_elements

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_or_ingest_error(name: str, data: bytes) -> None:
    try:
        doc = read_document(name, data=data)
    except IngestError as exc:
        assert exc.path == name and exc.message
        return
    assert isinstance(doc, Document)
    doc.render()  # a returned document is always renderable


@FAST
@given(ext=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)), data=st.binary(max_size=2048))
def test_random_bytes_under_every_extension(ext: str, data: bytes) -> None:
    _read_or_ingest_error(f"upload{ext}", data)


@FAST
@given(ext=st.sampled_from([".md", ".txt", ".html"]), text=st.text(max_size=1500))
def test_random_text(ext: str, text: str) -> None:
    _read_or_ingest_error(f"upload{ext}", text.encode("utf-8"))


_MARKUP = st.lists(
    st.sampled_from(
        [
            "# ",
            "## ",
            "- ",
            "1. ",
            "   ",
            "\n",
            "\n\n",
            "|a|b|\n|-|-|\n",
            "```",
            "<!-- ",
            " -->",
            "{% x %}",
            "---\n",
            "title: x\n",
            "<table><tr><td>",
            "</td></tr>",
            "**",
            "[l](u)",
            "!!! note",
            "\t",
            "Text ",
            "• ",
            "\uf0b7 ",
            "3.2 ",
            "(a) ",
            "PURPOSE",
            "....... 4",
            "<script>",
            "</script>",
        ]
    ),
    max_size=60,
).map("".join)


@FAST
@given(ext=st.sampled_from([".md", ".txt", ".html"]), text=_MARKUP)
def test_markup_soup(ext: str, text: str) -> None:
    _read_or_ingest_error(f"upload{ext}", text.encode("utf-8"))


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=1500))
def test_bytes_dressed_as_pdf(body: bytes) -> None:
    _read_or_ingest_error("upload.pdf", b"%PDF-1.4\n" + body + b"\n%%EOF\n")


@settings(max_examples=40, deadline=None)
@given(
    members=st.dictionaries(
        st.sampled_from(["word/document.xml", "[Content_Types].xml", "word/styles.xml", "x"]),
        st.binary(max_size=400),
        max_size=4,
    )
)
def test_zip_archives_dressed_as_docx(members: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _read_or_ingest_error("upload.docx", out.getvalue())


_LINE = st.builds(
    Line,
    text=st.text(alphabet=st.sampled_from(list("aB1. •\uf0a7-()ivx:ABC")), max_size=40),
    size=st.sampled_from([0.0, 9.0, 11.0, 14.0]),
    bold=st.booleans(),
    mono=st.booleans(),
    x=st.sampled_from([72.0, 90.0, 108.0]),
    y=st.floats(min_value=0, max_value=800),
    page=st.integers(min_value=0, max_value=2),
    symbol_lead=st.booleans(),
    gap_before=st.booleans(),
)


@FAST
@given(lines=st.lists(_LINE, max_size=40))
def test_structure_recovery_invents_no_text_and_drops_no_line(lines: list[Line]) -> None:
    elements = lines_to_elements(lines)
    out_words: set[str] = set()
    for el in elements:
        text = el.text if isinstance(el, Heading) else el.plain_text()
        out_words |= set(re.findall(r"[A-Za-z]+", text))
    in_words = {w for line in lines for w in re.findall(r"[A-Za-z]+", line.text)}
    assert out_words <= in_words
    # Letters only vanish with list markers ("a)", "iv.", "x" bullets), never with content.
    for line in lines:
        words = re.findall(r"[A-Za-z]{2,}", line.text)
        if len(words) >= 2:
            assert set(words[1:]) <= out_words
