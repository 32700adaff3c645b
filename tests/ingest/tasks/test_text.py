"""The rule-based text tools the families rely on."""

from __future__ import annotations

import pytest

from sopforge.ingest.document import Block
from sopforge.ingest.tasks.faithfulness import unsupported_words
from sopforge.ingest.tasks.material import blocks_from_markdown, material_from_blocks
from sopforge.ingest.tasks.steps import verb_phrase
from sopforge.ingest.tasks.text import (
    clean_inline,
    find_roles,
    gerund_to_base,
    split_sentences,
    title_phrase,
    to_first_person,
)


def test_clean_inline_only_deletes_markup():
    text = (
        'Fill in the **badge form** on the [intranet](https://x.example/a_(b)) {% page "/x" %}'
        " or mail <help@example.com>, see _Hotfixing_ and `git log`{: .cls}.<br>"
    )
    assert clean_inline(text) == (
        "Fill in the badge form on the intranet or mail help@example.com, see Hotfixing and `git log`."
    )
    assert (
        clean_inline("BEFORE YOU BEGIN: _did your dates change?")
        == "BEFORE YOU BEGIN: did your dates change?"
    )
    assert clean_inline("keep snake_case_names") == "keep snake_case_names"


def test_split_sentences_respects_abbreviations():
    text = "Call the desk (e.g. Bob) first. Then file it with the U.S. office. Done! 3 days later, close."
    assert split_sentences(text) == [
        "Call the desk (e.g. Bob) first.",
        "Then file it with the U.S. office.",
        "Done!",
        "3 days later, close.",
    ]


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        (
            "The TTS Ops team will review it and your supervisor approves.",
            ["TTS Ops team", "supervisor"],
        ),
        (
            "Ask a Tech Lead or the Head of Software Development.",
            ["Tech Lead", "Head of Software Development"],
        ),
        (
            "The purchase card holder reaches out to 18F team members.",
            ["purchase card holder", "18F team members"],
        ),
        ("Members of the team meet weekly.", []),  # vague heads need a qualifier
    ],
)
def test_find_roles(text, roles):
    assert find_roles(text) == roles


def test_gerunds_titles_and_person():
    assert [gerund_to_base(w) for w in ("Making", "Dealing", "Submitting", "Hotfixing")] == [
        "make",
        "deal",
        "submit",
        None,
    ]
    assert verb_phrase("Making a micropurchase") == "make a micropurchase"
    assert verb_phrase("How to claim expenses") == "claim expenses"
    assert verb_phrase("Hotfixing code in GovPress") == "go about hotfixing code in GovPress"
    assert verb_phrase("Business cards") is None
    assert title_phrase("3.1 The scope") == "the scope"
    assert title_phrase("Linux") == "Linux"
    assert title_phrase("Review your benefits") == "reviewing your benefits"
    assert title_phrase("What is On-Call?") == 'the "What is On-Call?" section'
    assert (
        to_first_person("you lose your badge and you're abroad") == "I lose my badge and I'm abroad"
    )
    assert to_first_person("the desk sends you a form") == "the desk sends me a form"


def test_blocks_round_trip_through_markdown():
    blocks = [
        Block("paragraph", text="Intro text here."),
        Block("ordered", items=["Open the form.", "Send the form."]),
        Block("unordered", items=["a point", "another point"]),
        Block("table", rows=[["Role", "Task"], ["QMO", "Tracks CAPAs"]]),
        Block("code", text="git log\n\ngit push"),
    ]
    body = "\n\n".join(b.render() for b in blocks)
    back = blocks_from_markdown(body)
    assert [(b.kind, b.text, b.items, b.rows) for b in back] == [
        (b.kind, b.text, b.items, b.rows) for b in blocks
    ]
    material = material_from_blocks(back)
    assert material.steps == ["Open the form.", "Send the form."]
    assert "Role: QMO; Task: Tracks CAPAs" in [u.text for u in material.units]


def test_steps_fall_back_to_imperative_bullets_then_sentences():
    bullets = [Block("unordered", items=["Lock your screen.", "Report the loss.", "a note"])]
    assert material_from_blocks(bullets).steps == [
        "Lock your screen.",
        "Report the loss.",
        "a note",
    ]
    nouns = [Block("unordered", items=["Engineering support", "Design services"])]
    assert material_from_blocks(nouns).steps == []
    prose = [Block("paragraph", text="Open the portal. The portal is slow. Click the reset link.")]
    assert material_from_blocks(prose).steps == ["Open the portal.", "Click the reset link."]


def test_unsupported_words():
    source = "Report the lost badge to the Security Officer within one hour."
    assert (
        unsupported_words("- Report the lost badge.\n- Within one hour.", source, "bullets:2") == []
    )
    assert unsupported_words("1. Report the badge to HR.", source, "numbered") == ["hr"]
    # scaffold and stop words are free, JSON keys are not checked, JSON values are
    assert (
        unsupported_words(
            "The procedure applies because you lost it. So, report it.", source, "plain"
        )
        == []
    )
    ok = '{"title": "Lost badge", "steps": [{"order": 1, "action": "Report the badge"}]}'
    assert unsupported_words(ok, source, "json:procedure") == []
    bad = '{"title": "Lost badge", "notes": ["Pay a fee"]}'
    assert unsupported_words(bad, source, "json:procedure") == ["pay", "fee"]
    assert unsupported_words('{"broken": ', source, "json:procedure") == ["broken"]
