"""open_book: the qa questions, asked bare; the pipeline adds the retrieved context.

The user content is only the question: the ingest pipeline wraps it with the section and
distractors via `sopforge.records.open_book_prompt` and appends the citation to the answer, the
same way the served assistant is prompted. The answer is the grounded extractive one, drawn with
phrasings independent of the qa family's.
"""

from __future__ import annotations

from sopforge.ingest.tasks import qa
from sopforge.ingest.tasks.base import Candidate, FamilyContext

CONTRACT = qa.CONTRACT


def candidates(ctx: FamilyContext) -> list[Candidate]:
    return qa.candidates(ctx, task="open_book")
