"""Chunking: header-aware first, then bounded by the model's tokenizer.

Documents are already split by headings into sections (the reader's section tree, or
`chunk_document` for raw Markdown, via langchain's MarkdownHeaderTextSplitter); a section longer
than the bound is then cut by RecursiveCharacterTextSplitter at the largest boundary that fits:
blocks, then lines (list items), then sentences, then words. Token counts come from the model's
own `tokenizer.json` through the `tokenizers` library (no torch, no transformers), or from a
documented approximation when no tokenizer is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sopforge.errors import UserError

# Block boundaries first, so a list or table is only cut when it alone exceeds the bound.
SEPARATORS = ["\n\n", "\n", ". ", "; ", ", ", " ", ""]
HEADERS = [
    ("#", "h1"),
    ("##", "h2"),
    ("###", "h3"),
    ("####", "h4"),
    ("#####", "h5"),
    ("######", "h6"),
]


class TokenizerFileError(UserError):
    """The configured tokenizer file is missing or unreadable."""


def approx_token_count(text: str) -> int:
    """Tokens in `text` without a tokenizer: 4 characters per token, plus one. SmolLM2's
    tokenizer averages 4.6 characters per token on the generated pairs, so this over-counts a
    little: a safe bound for chunk and answer budgets."""
    return len(text) // 4 + 1


@lru_cache(maxsize=8)
def load_token_counter(tokenizer_path: str | None) -> Callable[[str], int]:
    """A function counting tokens with the `tokenizer.json` at `tokenizer_path` (a file or a model
    folder holding one); `approx_token_count` when the path is None or empty."""
    if not tokenizer_path:
        return approx_token_count
    path = Path(tokenizer_path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise TokenizerFileError(
            f"tokenizer file {path} not found; point tasks.tokenizer at a model folder with a "
            "tokenizer.json (or leave it empty to use the 4-characters-per-token estimate)"
        )
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise TokenizerFileError(f"{path}: not a valid tokenizer.json ({e})") from e

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


def chunk_section(body: str, *, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """`body` cut into pieces of at most `max_tokens` tokens (by `count_tokens`), each a verbatim
    slice of `body`; one piece when it already fits, none when it is empty.

    A single word longer than the bound is cut by characters, so every piece fits.
    """
    body = body.strip()
    if not body:
        return []
    if count_tokens(body) <= max_tokens:
        return [body]
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        keep_separator="end",  # "a sentence. " stays whole; the next piece starts clean
        chunk_size=max_tokens,
        chunk_overlap=0,
        length_function=count_tokens,
        strip_whitespace=True,
    )
    return [c for c in splitter.split_text(body) if c.strip()]


@dataclass(frozen=True)
class Chunk:
    text: str
    headers: dict[str, str] = field(default_factory=dict)  # {"h1": "Title", "h2": "Section"}


def chunk_document(
    markdown: str, *, max_tokens: int, count_tokens: Callable[[str], int]
) -> list[Chunk]:
    """Whole-document Markdown split at headings (MarkdownHeaderTextSplitter, headings kept in
    the text), then each part bounded by `chunk_section`."""
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(HEADERS, strip_headers=False)
    out: list[Chunk] = []
    for part in splitter.split_text(markdown):
        for text in chunk_section(
            part.page_content, max_tokens=max_tokens, count_tokens=count_tokens
        ):
            out.append(Chunk(text=text, headers=dict(part.metadata)))
    return out
