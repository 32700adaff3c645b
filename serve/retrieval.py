"""Retrieval over the current procedures, and the citation check.

The index is BM25 (bm25s) over every section of every *current* document version in the workspace
(versions.status = 'current' joined with sections). Top-k sections go into the prompt through
records.open_book_prompt, the exact form the open-book training pairs used, so the model sees at
serving time what it learned from.

Answers cite sections as ``[Document § Section, v1a2b3c4]`` (records.citation). Before an answer
is shown its citations are checked against the index: one that names no current section (a made-up
section, a superseded version) is replaced by INVALID_MARK. The sources shown beside an answer are
always the retrieved sections, whatever the model wrote.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from sopforge.records import ContextSection, citation, cut_section
from sopforge.workspace import Workspace

CITATION_RE = re.compile(r"\[([^\[\]\n]+?) § ([^\[\]\n]+?), v([0-9a-fA-F]{4,64})\]")
INVALID_MARK = "[citation removed: not a current procedure section]"
_MAX_PENDING = 400  # a '[' left open longer than this is not a citation


@dataclass(frozen=True)
class IndexedSection:
    doc_id: str
    version: str
    section_id: str
    doc_title: str
    title: str
    body: str

    @property
    def citation(self) -> str:
        return citation(self.doc_title, self.title, self.version)

    def context(self, max_chars: int = 0) -> ContextSection:
        return ContextSection(
            self.doc_title, self.title, self.version, cut_section(self.body, max_chars)
        )

    def to_dict(self) -> dict[str, str]:
        return {
            "citation": self.citation,
            "doc_id": self.doc_id,
            "version": self.version,
            "section_id": self.section_id,
            "document": self.doc_title,
            "section": self.title,
        }


def load_current_sections(ws: Workspace) -> list[IndexedSection]:
    rows = ws.db.execute(
        "SELECT s.doc_id, s.version, s.section_id, v.title AS doc_title, s.title, s.body"
        " FROM sections s JOIN versions v ON v.doc_id = s.doc_id AND v.version = s.version"
        " WHERE v.status = 'current' ORDER BY s.doc_id, s.ord"
    ).fetchall()
    return [IndexedSection(**dict(r)) for r in rows if r["body"].strip()]


def current_signature(ws: Workspace) -> tuple[tuple[str, str], ...]:
    """Which document versions are current: the index is rebuilt when this changes."""
    rows = ws.db.execute(
        "SELECT doc_id, version FROM versions WHERE status = 'current' ORDER BY doc_id"
    ).fetchall()
    return tuple((r["doc_id"], r["version"]) for r in rows)


class SectionIndex:
    """BM25 over sections; also the set of citations that count as valid."""

    def __init__(self, sections: Sequence[IndexedSection]):
        import bm25s

        self.sections = list(sections)
        self.citations = {s.citation: s for s in self.sections}
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
        self._bm25 = None
        if self.sections:
            texts = [f"{s.doc_title}\n{s.title}\n{s.body}" for s in self.sections]
            tokens = self._tokenizer.tokenize(texts, show_progress=False)
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[IndexedSection, float]]:
        """Up to k sections sharing terms with the query, best first (score > 0 only)."""
        if self._bm25 is None or k <= 0:
            return []
        ids = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False)
        if not ids or not any(ids[0]):
            return []
        k = min(k, len(self.sections))
        docs, scores = self._bm25.retrieve(ids, k=k, show_progress=False, n_threads=1)
        return [
            (self.sections[int(i)], float(s))
            for i, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        ]

    def is_valid(self, cite: str) -> bool:
        return _normalize(cite) in self._normalized

    @property
    def _normalized(self) -> set[str]:
        cached = getattr(self, "_norm_cache", None)
        if cached is None:
            cached = {_normalize(c) for c in self.citations}
            self._norm_cache = cached
        return cached


def _normalize(cite: str) -> str:
    """Citation identity: doc, section, first 8 hex of the version; case of the hex ignored."""
    m = CITATION_RE.fullmatch(cite.strip())
    if not m:
        return cite.strip()
    doc, section, version = m.groups()
    return f"[{doc.strip()} § {section.strip()}, v{version.lower()[:8]}]"


class Retriever:
    """Keeps a SectionIndex in step with the workspace's current versions."""

    def __init__(self, ws: Workspace, top_k: int = 3, max_section_chars: int = 1200):
        self.ws = ws
        self.top_k = top_k
        self.max_section_chars = max_section_chars
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, str], ...] | None = None
        self._index: SectionIndex | None = None

    def index(self) -> SectionIndex:
        signature = current_signature(self.ws)
        with self._lock:
            if self._index is None or signature != self._signature:
                self._index = SectionIndex(load_current_sections(self.ws))
                self._signature = signature
            return self._index

    def retrieve(self, question: str) -> list[IndexedSection]:
        return [s for s, _ in self.index().search(question, self.top_k)]

    def contexts(self, sections: Sequence[IndexedSection]) -> list[ContextSection]:
        return [s.context(self.max_section_chars) for s in sections]


def find_citations(text: str) -> list[str]:
    return [m.group(0) for m in CITATION_RE.finditer(text)]


def check_citations(answer: str, index: SectionIndex) -> tuple[list[str], list[str]]:
    """(valid, invalid) citations in `answer`, each list in order of appearance, deduplicated."""
    valid: list[str] = []
    invalid: list[str] = []
    for cite in find_citations(answer):
        bucket = valid if index.is_valid(cite) else invalid
        if cite not in bucket:
            bucket.append(cite)
    return valid, invalid


class CitationFilter:
    """Streams text through, holding back a '[' ... ']' span until it can be checked.

    A complete citation that is not in the index is replaced by INVALID_MARK before anyone sees it;
    any other bracketed text (JSON arrays, "[sic]") passes unchanged once it closes, spans a line
    break, or grows past _MAX_PENDING characters.
    """

    def __init__(self, index: SectionIndex):
        self.index = index
        self.pending = ""
        self.valid: list[str] = []
        self.invalid: list[str] = []

    def feed(self, delta: str) -> str:
        out: list[str] = []
        for ch in delta:
            if self.pending:
                if ch == "[":  # a new bracket: what was pending was not a citation
                    out.append(self.pending)
                    self.pending = ch
                    continue
                self.pending += ch
                if ch == "]":
                    out.append(self._resolve(self.pending))
                    self.pending = ""
                elif ch == "\n" or len(self.pending) > _MAX_PENDING:
                    out.append(self.pending)
                    self.pending = ""
            elif ch == "[":
                self.pending = ch
            else:
                out.append(ch)
        return "".join(out)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return rest

    def _resolve(self, span: str) -> str:
        if not CITATION_RE.fullmatch(span):
            return span
        if self.index.is_valid(span):
            if span not in self.valid:
                self.valid.append(span)
            return span
        if span not in self.invalid:
            self.invalid.append(span)
        return INVALID_MARK


def clean_citations(answer: str, index: SectionIndex) -> tuple[str, list[str], list[str]]:
    """(answer with invalid citations replaced, valid, invalid)."""
    f = CitationFilter(index)
    text = f.feed(answer) + f.flush()
    return text, f.valid, f.invalid
