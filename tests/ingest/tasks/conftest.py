"""Fixtures for the task-family tests: the shipped contracts and small hand-built sections."""

from __future__ import annotations

import pytest

from sopforge.contracts import ContractRegistry
from sopforge.ingest.document import Block, Document, Section
from sopforge.ingest.tasks import SectionInput, section_inputs

VERSION = "ab" * 32


@pytest.fixture(scope="session")
def registry() -> ContractRegistry:
    return ContractRegistry()


def _badge_document() -> Document:
    """A small SOP with one section rich enough for every task family, and one nearly empty."""
    lost = Section(
        title="Replacing a lost badge",
        level=2,
        blocks=[
            Block(
                "paragraph",
                text=(
                    "A lost badge is a security risk, so it must be replaced quickly. "
                    "The Security Officer approves every replacement badge. "
                    "Badges are printed by the facilities desk within 2 business days."
                ),
            ),
            Block(
                "ordered",
                items=[
                    "Report the lost badge to the Security Officer within one hour.",
                    "Fill in the **badge request form** on the [intranet](https://intra.example/badge).",
                    "The Security Officer reviews the request and approves it.",
                    "Collect the new badge from the facilities desk with photo ID.",
                ],
            ),
            Block(
                "paragraph",
                text=(
                    "If you find the old badge later, return it to the facilities desk. "
                    "It will be destroyed the same day. "
                    "A replacement costs $25 and is charged to your cost centre."
                ),
            ),
        ],
    )
    empty = Section(title="See also", level=2, blocks=[Block("paragraph", text="Nothing.")])
    return Document(
        doc_id="badges",
        title="Badge policy",
        format="md",
        sections=[Section(title="Badges", level=1, blocks=[], children=[lost, empty])],
    )


@pytest.fixture
def badge_document() -> Document:
    return _badge_document()


@pytest.fixture
def badge_sections() -> list[SectionInput]:
    return section_inputs(_badge_document(), VERSION)


@pytest.fixture
def badge_section(badge_sections: list[SectionInput]) -> SectionInput:
    return next(s for s in badge_sections if s.section_title == "Replacing a lost badge")
