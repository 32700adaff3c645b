"""Chunking: sections bounded by the tokenizer's count, header-aware document splitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sopforge.ingest.chunk import (
    TokenizerFileError,
    approx_token_count,
    chunk_document,
    chunk_section,
    load_token_counter,
)


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tokenizer.json (word-level, split on whitespace and punctuation): one token per
    word or punctuation mark, so counts are easy to check by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "the a badge is lost report it to security within one hour . , 1 2 3".split()
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def test_token_counter_uses_the_tokenizer_file(word_tokenizer):
    count = load_token_counter(str(word_tokenizer))
    assert count("Report it to security within one hour.") == 8
    assert count("unknown words count too") == 4
    # a model folder holding tokenizer.json works too
    assert load_token_counter(str(word_tokenizer.parent))("a badge") == 2


def test_token_counter_falls_back_to_the_documented_estimate():
    count = load_token_counter(None)
    assert count is approx_token_count
    assert count("") == 1
    assert count("x" * 400) == 101


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerFileError, match="tokenizer file .* not found"):
        load_token_counter(str(tmp_path / "nope.json"))


def test_loading_the_counter_imports_no_torch_or_transformers(word_tokenizer):
    code = (
        "import sys\n"
        "from sopforge.ingest.chunk import load_token_counter, chunk_section\n"
        f"count = load_token_counter({str(word_tokenizer)!r})\n"
        "chunk_section('a badge. ' * 50, max_tokens=10, count_tokens=count)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_short_sections_stay_whole_and_empty_ones_vanish():
    body = "Report it to security.\n\n1. one\n2. two"
    assert chunk_section(body, max_tokens=100, count_tokens=approx_token_count) == [body]
    assert chunk_section("  \n ", max_tokens=100, count_tokens=approx_token_count) == []


def test_long_sections_split_at_block_boundaries_within_the_bound(word_tokenizer):
    count = load_token_counter(str(word_tokenizer))
    paragraph = "The badge is lost. Report it to security within one hour."
    items = "\n".join(f"{i}. Report it to security." for i in (1, 2, 3))
    body = "\n\n".join([paragraph, items, paragraph, paragraph])
    chunks = chunk_section(body, max_tokens=30, count_tokens=count)
    assert len(chunks) > 1
    assert all(count(c) <= 30 for c in chunks)
    # verbatim, in order, nothing lost, and a list is not cut while it fits in one chunk
    pos = 0
    for c in chunks:
        found = body.find(c, pos)
        assert found >= pos
        pos = found + len(c)
    assert "".join(c.replace(" ", "").replace("\n", "") for c in chunks) == body.replace(
        " ", ""
    ).replace("\n", "")
    assert any(c == items for c in chunks)


def test_sentences_are_the_next_boundary_when_a_paragraph_is_too_long(word_tokenizer):
    count = load_token_counter(str(word_tokenizer))
    body = " ".join(["Report it to security within one hour."] * 6)
    chunks = chunk_section(body, max_tokens=20, count_tokens=count)
    assert len(chunks) == 3
    assert all(c.endswith("hour.") for c in chunks)


def test_chunk_document_is_header_aware():
    markdown = (
        "# Badges\n\nIntro text.\n\n## Lost badge\n\nReport it.\n\n"
        "## New badge\n\n" + "Collect it from the desk. " * 40
    )
    chunks = chunk_document(markdown, max_tokens=60, count_tokens=approx_token_count)
    assert chunks[0].headers == {"h1": "Badges"}
    lost = [c for c in chunks if c.headers.get("h2") == "Lost badge"]
    assert len(lost) == 1 and "Report it." in lost[0].text and "Collect" not in lost[0].text
    new = [c for c in chunks if c.headers.get("h2") == "New badge"]
    assert len(new) > 1 and all(approx_token_count(c.text) <= 60 for c in new)
