"""Retrieval over current sections, and the citation check (whole answers and streamed ones)."""

from __future__ import annotations

from typing import Any

import pytest

from sopforge.records import citation, open_book_prompt
from sopforge.serve.guard import build_messages
from sopforge.serve.retrieval import (
    INVALID_MARK,
    CitationFilter,
    Retriever,
    SectionIndex,
    check_citations,
    clean_citations,
    load_current_sections,
)
from sopforge.workspace import Workspace


def _cite(ws: Workspace, title: str) -> str:
    return next(s.citation for s in load_current_sections(ws) if s.title == title)


def test_top_section_is_the_one_that_answers(ws: Workspace) -> None:
    r = Retriever(ws, top_k=2)
    hits = r.retrieve("I lost my badge, who do I tell?")
    assert hits[0].title == "Lost badge" and hits[0].doc_title == "Badge Policy"
    assert len(hits) <= 2
    assert r.retrieve("zebra quantum") == []  # no shared term, no made-up source


def test_superseded_version_citations_become_invalid(ws: Workspace, helpers: Any) -> None:
    r = Retriever(ws)
    old = _cite(ws, "Approval")
    assert r.index().is_valid(old)
    with ws.transaction() as db:
        db.execute("UPDATE versions SET status='superseded' WHERE doc_id='expenses'")
    helpers.add_document(
        ws,
        "expenses",
        "Expense Policy",
        [("Approval", "The finance director approves expenses over 900 dollars.")],
    )
    index = r.index()  # rebuilt: the set of current versions changed
    new = _cite(ws, "Approval")
    assert new != old
    assert index.is_valid(new) and not index.is_valid(old)
    assert "finance director" in r.retrieve("who approves expenses")[0].body


def test_prompt_is_the_open_book_form_with_retrieved_sections(ws: Workspace) -> None:
    from sopforge.contracts import default_registry

    r = Retriever(ws, top_k=2)
    contract = default_registry().get("plain")
    sections = r.retrieve("lost badge")
    messages = build_messages("lost badge", contract, r.contexts(sections))
    assert messages[-1]["content"] == open_book_prompt(
        "lost badge", [s.context() for s in sections]
    )
    assert f"Source {sections[0].citation}" in messages[-1]["content"]


def test_check_citations_splits_valid_from_invented(ws: Workspace) -> None:
    index = Retriever(ws).index()
    good = _cite(ws, "Lost badge")
    made_up = citation("Badge Policy", "Teleporting", "f" * 64)
    wrong_version = good[: good.rindex("v") + 1] + "00000000]"
    answer = f"Tell security {good}. Also {made_up} and {wrong_version}. {good}"
    valid, invalid = check_citations(answer, index)
    assert valid == [good]
    assert invalid == [made_up, wrong_version]


def test_invalid_citations_are_removed_before_they_are_shown(ws: Workspace) -> None:
    index = Retriever(ws).index()
    good = _cite(ws, "Receipts")
    bad = citation("Expense Policy", "Bribes", "1234abcd")
    text, valid, invalid = clean_citations(f"Attach receipts {good}, see {bad}.", index)
    assert text == f"Attach receipts {good}, see {INVALID_MARK}."
    assert (valid, invalid) == ([good], [bad])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 11])
def test_streamed_citation_check_matches_the_whole_text_check(ws: Workspace, size: int) -> None:
    index = Retriever(ws).index()
    good = _cite(ws, "Checklist")
    bad = citation("Deployment SOP", "Skip tests", "deadbeef")
    answer = f'Steps [1] {good}\n{{"roles": ["a", "b"]}} [unclosed\n{bad} end [x'
    f = CitationFilter(index)
    pieces = [f.feed(answer[i : i + size]) for i in range(0, len(answer), size)] + [f.flush()]
    expected, _, _ = clean_citations(answer, index)
    assert "".join(pieces) == expected
    assert bad not in expected and good in expected and '["a", "b"]' in expected
    assert f.invalid == [bad]


def test_empty_workspace_retrieves_nothing(tmp_path) -> None:
    index = SectionIndex([])
    assert index.search("anything", 3) == []
    assert Retriever(Workspace(tmp_path / "w")).retrieve("badge") == []
