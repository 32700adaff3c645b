"""Upload file names are untrusted: cleaned to a safe name and document id, or refused."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sopforge.ingest.pipeline import (
    MAX_DOC_ID_CHARS,
    MAX_NAME_CHARS,
    clean_file_name,
    document_id,
)

DOC_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@pytest.mark.parametrize(
    ("name", "cleaned", "doc_id"),
    [
        ("../../etc/passwd.md", "passwd.md", "passwd"),
        ("..\\..\\Windows\\win.ini.md", "win.ini.md", "win-ini"),
        ("/srv/sopforge/workspace/sopforge.db.md", "sopforge.db.md", "sopforge-db"),
        ("C:\\Users\\bob\\Expense Policy.docx", "Expense Policy.docx", "expense-policy"),
        ("evil.php\x00.md", "evil.php.md", "evil-php"),
        ("invoice\u202efdp.md", "invoicefdp.md", "invoicefdp"),  # 'invoicedm.pdf' on screen
        ("zero\u200bwidth.md", "zerowidth.md", "zerowidth"),
        ("Proce\u0301dure d'accueil.md", "Procédure d'accueil.md", "procedure-d-accueil"),
        ("<img src=x onerror=alert(1)>.md", "<img src=x onerror=alert(1)>.md", None),
        ("  .hidden policy.md  ", "hidden policy.md", "hidden-policy"),
        ("tab\tand\nnewline.md", "tab and newline.md", "tab-and-newline"),
        ("Lost Badge (v2).md", "Lost Badge (v2).md", "lost-badge-v2"),
    ],
)
def test_names_are_cleaned_to_a_safe_name_and_id(name: str, cleaned: str, doc_id: str | None):
    assert clean_file_name(name) == cleaned
    got = document_id(cleaned)
    assert DOC_ID.match(got)
    if doc_id:
        assert got == doc_id


@pytest.mark.parametrize("name", ["", "..", "../", "/", "\\", "\x00", "\u202e", " . . ", "a/.."])
def test_names_with_nothing_usable_left_are_empty(name: str) -> None:
    assert clean_file_name(name) == ""


def test_a_300_character_name_is_cut_keeping_its_extension() -> None:
    name = "Very long procedure name " * 12 + ".md"
    cleaned = clean_file_name(name)
    assert len(cleaned) <= MAX_NAME_CHARS and cleaned.endswith(".md")
    assert cleaned.startswith("Very long procedure name")
    doc_id = document_id(cleaned)
    assert len(doc_id) <= MAX_DOC_ID_CHARS and DOC_ID.match(doc_id)
    # Two long names sharing the first 60 characters stay two documents.
    other = document_id("Very long procedure name " * 4 + "other ending.md")
    assert document_id("Very long procedure name " * 4 + "one ending.md") != other


def test_emoji_and_non_latin_names_get_distinct_ids() -> None:
    ids = {document_id(n) for n in ("🚀.md", "🎉.md", "安全手順.md", "手順.md")}
    assert len(ids) == 4 and all(i.startswith("doc-") and DOC_ID.match(i) for i in ids)
    assert document_id("🚀.md") == document_id("🚀.md")  # stable: re-uploads are new versions
    assert document_id("🚀 Launch plan.md") == "launch-plan"


def test_ordinary_names_keep_the_ids_they_always_had() -> None:
    """Existing workspaces keep their documents: the id is still the slug of the stem."""
    from sopforge.ingest.readers import doc_id_for

    for name in ("18f_piv_card.md", "NIST SP 800-61r2.pdf", "expense-policy.docx", "été.md"):
        assert document_id(name) == doc_id_for(name)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_name_cleans_to_something_safe(name: str) -> None:
    cleaned = clean_file_name(name)
    assert len(cleaned) <= MAX_NAME_CHARS
    assert "/" not in cleaned and "\\" not in cleaned and "\x00" not in cleaned
    assert not cleaned.startswith((".", " ")) and cleaned == cleaned.strip()
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in cleaned)
    assert clean_file_name(cleaned) == cleaned  # cleaning is idempotent
    if cleaned:
        doc_id = document_id(cleaned)
        assert DOC_ID.match(doc_id) and len(doc_id) <= MAX_DOC_ID_CHARS
