"""Stale-procedure probes: changed facts are found, and answers are judged new vs old."""

from __future__ import annotations

import shutil
from pathlib import Path

from sopforge.train.probes import (
    build_probes,
    changed_sentence_pairs,
    check,
    fact_difference,
    probes_from_workspace,
    run_probes,
    summary,
)

OLD = (
    "Submit the claim within 30 days of purchase. Claims over 500 pounds need approval from your line "
    "manager. Keep the receipt."
)
NEW = (
    "Submit the claim within 30 days of purchase. Claims over 1000 pounds need approval from the finance "
    "director. Keep the receipt. A new sentence was added here."
)

# one changed section of a claims procedure, as build_probes takes it
CLAIMS = dict(
    doc_id="d",
    section_id="s",
    section_title="Claims",
    old_version="a",
    new_version="b",
    old_body=OLD,
    new_body=NEW,
)


def test_changed_sentences_and_facts():
    pairs = changed_sentence_pairs(OLD, NEW)
    assert len(pairs) == 1
    old_s, new_s = pairs[0]
    assert "500" in old_s and "1000" in new_s
    new_f, old_f = fact_difference(old_s, new_s)
    assert set(new_f) == {"1000", "finance", "director"}
    assert set(old_f) == {"500", "line", "manager"}


def test_probe_uses_dataset_question_and_judges_answers():
    rec = {
        "task": "qa",
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Who approves large claims?"},
            {
                "role": "assistant",
                "content": "Claims over 1000 pounds need approval from the finance director.",
            },
        ],
    }
    probes = build_probes(**CLAIMS, qa_records=[rec])
    assert len(probes) == 1
    p = probes[0]
    assert p.question == "Who approves large claims?" and p.prompt()[0]["role"] == "system"
    assert check(p, "Over 1000 pounds: the finance director approves.").passed
    stale = check(p, "Claims over 500 pounds need approval from your line manager.")
    assert not stale.passed and stale.has_old and not stale.has_new
    mixed = check(p, "Over 1000 pounds, the finance director; it used to be 500.")
    assert not mixed.passed and mixed.has_old
    results = run_probes(
        probes, lambda prompts: ["The finance director approves claims over 1000 pounds."]
    )
    s = summary(results)
    assert s["passed"] == 1 and s["pass_rate"] == 1.0 and s["gave_old_answer"] == 0


def test_fallback_question_does_not_leak_the_answer():
    probes = build_probes(**CLAIMS)
    assert "1000" not in probes[0].question and "director" not in probes[0].question
    assert "Claims over" in probes[0].question


def test_pure_additions_make_no_probe():
    assert (
        build_probes(
            doc_id="d",
            section_id="s",
            section_title="t",
            old_version="a",
            new_version="b",
            old_body="Keep the receipt.",
            new_body="Keep the receipt. Also photograph it.",
        )
        == []
    )


def test_probes_from_a_real_update(tmp_path):
    from sopforge.ingest.pipeline import IngestConfig, ingest_paths
    from sopforge.workspace import Workspace

    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "md"
    doc = tmp_path / "18f_travel_reimbursement.md"
    shutil.copy(corpus / doc.name, doc)
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [doc], IngestConfig())
    text = doc.read_text()
    assert "5 business days" in text or "days" in text
    # change one fact: a deadline
    import re

    m = re.search(r"\b(\d+) (business )?days\b", text)
    assert m, "expected a deadline in the document"
    new_text = text[: m.start(1)] + str(int(m.group(1)) + 7) + text[m.end(1) :]
    doc.write_text(new_text)
    report = ingest_paths(ws, [doc], IngestConfig())
    probes = probes_from_workspace(ws, report.dataset_dir)
    assert probes, "a changed deadline must give a probe"
    p = probes[0]
    assert any(str(int(m.group(1)) + 7) in f for f in p.new_facts)
    assert check(p, p.new_sentence).passed and not check(p, p.old_sentence).passed


def test_probe_prefers_the_open_book_question_the_chat_would_ask():
    answer = "Claims over 1000 pounds need approval from the finance director."
    closed = {
        "task": "qa",
        "messages": [
            {"role": "user", "content": "Who approves large claims?"},
            {"role": "assistant", "content": answer},
        ],
    }
    open_book = {
        "task": "open_book",
        "messages": [
            {"role": "system", "content": "Answer from the sources."},
            {"role": "user", "content": f"Sources:\n[Claims]\n{NEW}\n\nQuestion: Who signs off?"},
            {"role": "assistant", "content": answer + "\n\nSource: [Claims § Claims, vb]"},
        ],
    }
    unrelated = {
        "task": "open_book",
        "messages": [
            {"role": "user", "content": "Sources: ...\n\nQuestion: When do I submit?"},
            {"role": "assistant", "content": "Within 30 days of purchase."},
        ],
    }
    (p,) = build_probes(**CLAIMS, qa_records=[closed, unrelated, open_book])
    assert p.question.endswith("Question: Who signs off?")
    assert p.prompt()[1]["content"].startswith("Sources:") and len(p.prompt()) == 2
    # without an open-book record that states the new fact, the closed-book one is asked
    (p,) = build_probes(**CLAIMS, qa_records=[unrelated, closed])
    assert p.question == "Who approves large claims?"


def test_probe_asks_the_open_book_question_closest_to_the_changed_sentence():
    # Both records state the new fact; the second asks about it, the first about the section at large
    # (as "How long does out of hours alerts take?" did in the 2026-12 walk-through).
    answer = "Claims over 1000 pounds need approval from the finance director."

    def open_book(question: str) -> dict:
        return {
            "task": "open_book",
            "messages": [
                {"role": "user", "content": f"Sources:\n[Claims]\n{NEW}\n\nQuestion: {question}"},
                {"role": "assistant", "content": answer + "\n\nSource: [Claims § Claims, vb]"},
            ],
        }

    vague = open_book("What does the claims section say?")
    close = open_book("Which claims need approval, and from whom?")
    (p,) = build_probes(**CLAIMS, qa_records=[vague, close])
    assert p.question.endswith("Question: Which claims need approval, and from whom?")
    # the order of the records does not decide it
    (p,) = build_probes(**CLAIMS, qa_records=[close, vague])
    assert p.question.endswith("Question: Which claims need approval, and from whom?")


def test_probe_never_asks_a_question_that_states_the_new_fact():
    answer = "Claims over 1000 pounds need approval from the finance director."
    leaky = {
        "task": "open_book",
        "messages": [
            {
                "role": "user",
                "content": f"Sources:\n{NEW}\n\nQuestion: Who approves claims over 1000 pounds?",
            },
            {"role": "assistant", "content": answer},
        ],
    }
    closed = {
        "task": "qa",
        "messages": [
            {"role": "user", "content": "Who approves large claims?"},
            {"role": "assistant", "content": answer},
        ],
    }
    (p,) = build_probes(**CLAIMS, qa_records=[leaky, closed])
    assert p.question == "Who approves large claims?"
    # only leaky questions: the fallback question, which stops before the first changed word
    (p,) = build_probes(**CLAIMS, qa_records=[leaky])
    assert "1000" not in p.question and p.question.startswith('In the procedure "Claims"')
