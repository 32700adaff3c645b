"""Each task family on a hand-built section: the form of its answers, and what it skips."""

from __future__ import annotations

import dataclasses
import json

from sopforge.contracts import ContractRegistry
from sopforge.ingest.chunk import approx_token_count
from sopforge.ingest.document import Block, Document, Section
from sopforge.ingest.tasks import TaskConfig, generate_section_pairs, section_inputs
from sopforge.ingest.tasks.base import Candidate
from sopforge.ingest.tasks.faithfulness import unsupported_words
from sopforge.ingest.tasks.generate import section_source, validate_candidates
from sopforge.records import answer_of, check_record


def _by_task(records: list[dict], task: str) -> list[dict]:
    return [r for r in records if r["task"] == task]


def test_every_family_produces_valid_records(badge_section, registry):
    result = generate_section_pairs(badge_section, registry=registry, cfg=TaskConfig())
    tasks = {r["task"] for r in result.records}
    assert tasks == {"qa", "steps", "summary", "json", "scenario", "open_book"}
    assert result.rejects == []
    for rec in result.records:
        check_record(rec)
        assert registry.get(rec["contract"]).validate(answer_of(rec)) == []
        assert rec["generator"] == "extractive"
        assert rec["provenance"] == {
            "doc_id": "badges",
            "version": "ab" * 32,
            "section_id": "Badges > Replacing a lost badge",
            "section_title": "Replacing a lost badge",
            "content_hash": badge_section.content_hash,
            "span": list(badge_section.span),
        }


def test_steps_are_the_numbered_list_in_order(badge_section, registry):
    recs = _by_task(
        generate_section_pairs(badge_section, registry=registry, cfg=TaskConfig()).records, "steps"
    )
    assert len(recs) == 3  # phrasings_per_task
    assert {r["contract"] for r in recs} == {"numbered"}
    assert answer_of(recs[0]) == (
        "1. Report the lost badge to the Security Officer within one hour.\n"
        "2. Fill in the badge request form on the intranet.\n"
        "3. The Security Officer reviews the request and approves it.\n"
        "4. Collect the new badge from the facilities desk with photo ID."
    )
    users = [r["messages"][1]["content"] for r in recs]
    assert len(set(users)) == 3  # three different phrasings
    assert all(u.endswith(registry.get("numbered").prompt_hint()) for u in users)
    assert any("replace a lost badge" in u or "replacing a lost badge" in u for u in users)


def test_summary_has_exactly_n_dash_bullets_from_the_section(badge_section, registry):
    cfg = TaskConfig(summary_bullets=[3, 5])
    recs = _by_task(
        generate_section_pairs(badge_section, registry=registry, cfg=cfg).records, "summary"
    )
    assert {r["contract"] for r in recs} == {"bullets:3", "bullets:5"}
    source = badge_section.body
    for rec in recs:
        n = int(rec["contract"].split(":")[1])
        lines = answer_of(rec).split("\n")
        assert len(lines) == n
        assert all(line.startswith("- ") and len(line) > 4 for line in lines)
        # every bullet is one of the section's sentences, in the section's order
        positions = [_position(source, line[2:]) for line in lines]
        assert positions == sorted(positions)


def _position(source: str, sentence: str) -> int:
    probe = sentence.split()[:3]
    return source.replace("**", "").find(" ".join(probe))


def test_summary_count_is_skipped_without_enough_material(registry):
    doc = Document(
        doc_id="d",
        title="Doc",
        format="md",
        sections=[
            Section(
                title="Short rules",
                blocks=[
                    Block(
                        "paragraph",
                        text="Lock your screen when you leave your desk. Never share your password with anyone.",
                    )
                ],
            )
        ],
    )
    (section,) = section_inputs(doc, "v")
    result = generate_section_pairs(
        section, registry=registry, cfg=TaskConfig(summary_bullets=[2, 3])
    )
    contracts = {r["contract"] for r in _by_task(result.records, "summary")}
    assert contracts == {"bullets:2"}
    assert not _by_task(result.records, "steps")  # no steps: family skipped, no reject
    assert result.rejects == []
    # json still renders the section's rules as the procedure's actions, under the schema
    obj = json.loads(answer_of(_by_task(result.records, "json")[0]))
    assert obj["purpose"] == "Doc: Short rules"
    assert [s["action"] for s in obj["steps"]] == [
        "Lock your screen when you leave your desk.",
        "Never share your password with anyone.",
    ]


def test_json_answer_is_compact_ordered_and_extracted(badge_section, registry):
    recs = _by_task(
        generate_section_pairs(badge_section, registry=registry, cfg=TaskConfig()).records, "json"
    )
    assert recs and {r["contract"] for r in recs} == {"json:procedure"}
    text = answer_of(recs[0])
    assert "\n" not in text and text.startswith('{"title": ')
    obj = json.loads(text)
    assert list(obj)[:4] == ["title", "purpose", "roles", "steps"]
    assert obj["title"] == "Replacing a lost badge"
    assert obj["purpose"] == "A lost badge is a security risk, so it must be replaced quickly."
    assert "Security Officer" in obj["roles"] and "facilities desk" in obj["roles"]
    assert [s["order"] for s in obj["steps"]] == [1, 2, 3, 4]
    # an actor only where the step names its doer; imperative steps have none
    assert "actor" not in obj["steps"][0]
    assert obj["steps"][2]["actor"] == "Security Officer"
    assert obj["notes"] == ["If you find the old badge later, return it to the facilities desk."]


def test_scenario_is_built_from_section_sentences(badge_section, registry):
    recs = _by_task(
        generate_section_pairs(badge_section, registry=registry, cfg=TaskConfig()).records,
        "scenario",
    )
    assert recs
    rec = recs[0]
    user = rec["messages"][1]["content"]
    assert "I find the old badge later" in user
    assert answer_of(rec) == (
        'The procedure "Replacing a lost badge" applies because you find the old badge later. '
        "First, return it to the facilities desk. Then, it will be destroyed the same day."
    )


def test_qa_and_open_book_answers_are_section_sentences(badge_section, registry):
    result = generate_section_pairs(badge_section, registry=registry, cfg=TaskConfig())
    qa = _by_task(result.records, "qa")
    ob = _by_task(result.records, "open_book")
    questions = {r["messages"][1]["content"]: answer_of(r) for r in qa}
    who = [
        a
        for q, a in questions.items()
        if q.startswith(
            ("Who approves", "Whose approval", "Who signs", "Who has to give", "Which approvals")
        )
    ]
    assert who and "The Security Officer approves every replacement badge." in who[0]
    what_if = [a for q, a in questions.items() if "I find the old badge later" in q]
    assert what_if == [what_if[0]] * len(what_if)
    assert what_if[0] == "If you find the old badge later, return it to the facilities desk."
    assert ob and all(r["contract"] == "plain" for r in ob)
    # open_book carries the bare question (the pipeline adds the context and citation)
    assert all("Source" not in r["messages"][1]["content"] for r in ob)
    source = section_source(badge_section)
    for rec in qa + ob:
        assert unsupported_words(answer_of(rec), source, "plain") == []


def test_generation_is_deterministic_and_seeded(badge_section, registry):
    cfg = TaskConfig()
    first = generate_section_pairs(badge_section, registry=registry, cfg=cfg).records
    again = generate_section_pairs(badge_section, registry=registry, cfg=cfg).records
    assert [r["id"] for r in first] == [r["id"] for r in again]
    other = generate_section_pairs(
        badge_section, registry=registry, cfg=dataclasses.replace(cfg, seed=7)
    ).records
    assert {r["id"] for r in other} != {r["id"] for r in first}
    # the answers do not depend on the seed, only the phrasings do
    assert {answer_of(r) for r in other} == {answer_of(r) for r in first}


def test_tasks_option_limits_families(badge_section, registry):
    cfg = TaskConfig(tasks=["steps", "json"], phrasings_per_task=1)
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)
    assert sorted(r["task"] for r in result.records) == ["json", "steps"]


def test_nearly_empty_sections_produce_nothing(registry, badge_sections):
    sections = badge_sections
    heading_only = next(s for s in sections if s.section_title == "Badges")
    tiny = next(s for s in sections if s.section_title == "See also")
    for section in (heading_only, tiny):
        result = generate_section_pairs(section, registry=registry, cfg=TaskConfig())
        assert result.records == [] and result.rejects == []


def test_invalid_candidates_become_rejects_never_records(badge_section, registry):
    cands = [
        Candidate("summary", "bullets:3", "Summarize.", "- one\n- two", badge_section.span),
        Candidate(
            "qa", "plain", "Who?", "The Security Officer approves unicorns.", badge_section.span
        ),
        Candidate(
            "qa",
            "plain",
            "Who approves?",
            "The Security Officer approves every replacement badge.",
            badge_section.span,
        ),
    ]
    result = validate_candidates(
        badge_section,
        cands,
        registry=registry,
        cfg=TaskConfig(),
        count_tokens=approx_token_count,
        generator="extractive",
        check_faithfulness=True,
    )
    assert [answer_of(r) for r in result.records] == [cands[2].answer]
    assert [(r.task, r.contract) for r in result.rejects] == [
        ("summary", "bullets:3"),
        ("qa", "plain"),
    ]
    assert result.rejects[0].reason == "expected exactly 3 bullets, found 2"
    assert result.rejects[1].reason == "unsupported words: unicorns"


def test_json_rejected_when_the_configured_schema_does_not_fit(badge_section, tmp_path):
    schema = {
        "type": "object",
        "required": ["title", "owner"],
        "properties": {"owner": {"type": "string"}},
    }
    (tmp_path / "badge.schema.json").write_text(json.dumps(schema))
    registry = ContractRegistry(tmp_path)
    cfg = TaskConfig(tasks=["json"], json_schema="badge")
    result = generate_section_pairs(badge_section, registry=registry, cfg=cfg)
    assert result.records == []
    assert result.rejects and all(r.contract == "json:badge" for r in result.rejects)
    assert "'owner' is a required property" in result.rejects[0].reason


def test_long_sections_run_qa_and_summary_per_chunk(registry):
    paragraphs = [
        Block(
            "paragraph",
            text=(
                f"Rule {i}: the on-call engineer must check queue {i} every morning. "
                f"If queue {i} is over {i * 10} items, the engineer escalates to the team lead. "
                f"Tickets in queue {i} are closed within {i} business days by the support analyst."
            ),
        )
        for i in range(1, 13)
    ]
    doc = Document(
        doc_id="q",
        title="Queues",
        format="md",
        sections=[Section("Queue checks", blocks=paragraphs)],
    )
    rendered, _ = doc.render()
    (section,) = section_inputs(doc, "v")
    cfg = TaskConfig(chunk_max_tokens=120)
    result = generate_section_pairs(section, registry=registry, cfg=cfg)
    summaries = _by_task(result.records, "summary")
    spans = {tuple(r["provenance"]["span"]) for r in summaries}
    assert len(spans) > 1  # one summary set per chunk
    for start, end in spans:
        assert section.span[0] <= start < end <= section.span[1]
        assert approx_token_count(rendered[start:end]) <= 120
    assert any("(part 2 of" in r["messages"][1]["content"] for r in summaries)
    # qa questions are not repeated across chunks of one section
    qa_users = [r["messages"][1]["content"] for r in _by_task(result.records, "qa")]
    assert len(qa_users) == len(set(qa_users))
    steps_spans = {
        tuple(r["provenance"]["span"]) for r in result.records if r["task"] in ("json", "scenario")
    }
    assert steps_spans <= {section.span}


def test_badge_document_renders_spans_that_match_sections(badge_document):
    doc = badge_document
    rendered, refs = doc.render()
    for section in section_inputs(doc, "v"):
        start, end = section.span
        assert rendered[start:end].endswith(section.body)
        assert rendered[section.body_start : end] == section.body


def test_json_roles_are_the_first_few_the_section_names(registry):
    from sopforge.ingest.tasks.json_task import MAX_ROLES
    from sopforge.ingest.tasks.text import find_roles

    text = (
        "The line manager, the finance director, the Security Officer, the help desk, the "
        "system owners, the team members, the network administrators and the Incident "
        "Commander must all be told about the incident."
    )
    named = find_roles(text)
    assert len(named) > MAX_ROLES  # the section names more roles than the object lists
    section = Section(
        title="Telling people",
        level=2,
        blocks=[
            Block("paragraph", text=text),
            Block("ordered", items=["Call the help desk.", "Email the line manager."]),
        ],
    )
    doc = Document(doc_id="tell", title="Incidents", format="md", sections=[section])
    (sec,) = section_inputs(doc, "cd" * 32)
    recs = _by_task(
        generate_section_pairs(sec, registry=registry, cfg=TaskConfig()).records, "json"
    )
    assert recs
    obj = json.loads(answer_of(recs[0]))
    assert obj["roles"] == named[:MAX_ROLES]
