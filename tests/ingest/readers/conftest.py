"""Fixtures for the reader tests: a session cache of parsed documents and tree helpers.

Real documents come from the shared corpus beside the repository
(`Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus"`); tests that need it skip
when it is absent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest

from sopforge.ingest.document import Block, Document, Section
from sopforge.ingest.readers import read_document


@functools.cache
def _read_cached(path: str) -> Document:
    return read_document(path)


@pytest.fixture(scope="session")
def read_doc() -> Callable[[object], Document]:
    """Parse a file once per session (the large corpus PDFs take seconds each)."""
    return lambda path: _read_cached(str(path))


def _walk(sections: list[Section]) -> Iterator[Section]:
    for s in sections:
        yield s
        yield from _walk(s.children)


def _blocks(doc: Document) -> Iterator[Block]:
    yield from doc.preamble
    for section in _walk(doc.sections):
        yield from section.blocks


def _section(doc: Document, title_part: str) -> tuple[tuple[str, ...], Section]:
    for path, section in doc.iter_sections():
        if title_part.lower() in section.title.lower():
            return path, section
    titles = [s.title for _, s in doc.iter_sections()]
    raise AssertionError(f"no section containing {title_part!r} in {doc.doc_id}: {titles}")


@pytest.fixture(scope="session")
def blocks() -> Callable[[Document], list[Block]]:
    """All blocks of a document, preamble first, in reading order."""
    return lambda doc: list(_blocks(doc))


@pytest.fixture(scope="session")
def headed() -> Callable[[Document], list[Section]]:
    """Every section that comes from a heading (the preamble's "Overview" excluded)."""
    return lambda doc: list(_walk(doc.sections))


@pytest.fixture(scope="session")
def section() -> Callable[[Document, str], tuple[tuple[str, ...], Section]]:
    """(path, section) of the first section whose title contains the given text."""
    return _section
