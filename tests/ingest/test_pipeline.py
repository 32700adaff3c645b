"""The ingest stage end to end on the real shared corpus: versions, pairs, dataset, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sopforge.contracts import ContractRegistry
from sopforge.ingest.pipeline import IngestConfig, ingest_paths
from sopforge.records import OPEN_BOOK_TASKS, check_record, split_sources
from sopforge.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
EDGE = CORPUS / "pdf_edge"


@pytest.fixture(scope="module")
def corpus_ingest(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    report = ingest_paths(ws, [CORPUS / "md", CORPUS / "pdf"], IngestConfig())
    return ws, report


def _records(dataset_dir: str) -> list[dict]:
    out = []
    for split in ("train", "eval"):
        for line in (Path(dataset_dir) / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            out.append(json.loads(line))
    return out


def test_every_corpus_document_ingests_with_four_task_families(corpus_ingest):
    ws, report = corpus_ingest
    expected = sorted((CORPUS / "md").glob("*.md")) + sorted((CORPUS / "pdf").glob("*.pdf"))
    assert len(report.files) == len(expected)
    assert not report.errors, [(f.path, f.error) for f in report.errors]
    per_doc = report.card["per_doc"]
    for f in report.files:
        tasks = per_doc[f.doc_id]["tasks"]
        assert len([t for t, n in tasks.items() if n > 0]) >= 4, (f.doc_id, tasks)


def test_every_record_validates_against_its_contract(corpus_ingest):
    _, report = corpus_ingest
    registry = ContractRegistry()
    records = _records(report.dataset_dir)
    assert len(records) == report.card["counts"]["train"] + report.card["counts"]["eval"]
    failures = []
    for rec in records:
        check_record(rec)
        body, cite = split_sources(rec["messages"][-1]["content"])
        assert bool(cite) == (rec["task"] in OPEN_BOOK_TASKS), rec["id"]
        errors = registry.get(rec["contract"]).validate(body)
        if errors:
            failures.append((rec["id"], rec["contract"], errors))
    assert failures == []
    assert {r["contract"] for r in records} >= {"bullets:3", "numbered", "json:procedure", "plain"}


def test_split_is_by_section_never_by_pair(corpus_ingest):
    _, report = corpus_ingest
    side: dict[tuple[str, str], set[str]] = {}
    for split in ("train", "eval"):
        for line in (Path(report.dataset_dir) / f"{split}.jsonl").read_text().splitlines():
            p = json.loads(line)["provenance"]
            side.setdefault((p["doc_id"], p["section_id"]), set()).add(split)
    assert all(len(s) == 1 for s in side.values())
    assert any(s == {"eval"} for s in side.values()) and any(s == {"train"} for s in side.values())


def test_dataset_loads_with_datasets_library(corpus_ingest):
    from datasets import load_dataset

    _, report = corpus_ingest
    ds = load_dataset(
        "json", data_files=str(Path(report.dataset_dir) / "train.jsonl"), split="train"
    )
    assert ds.num_rows == report.card["counts"]["train"]
    assert ds[0]["messages"][-1]["role"] == "assistant"


@pytest.mark.parametrize("task", sorted(OPEN_BOOK_TASKS))
def test_open_book_pairs_carry_context_and_a_valid_citation(corpus_ingest, task):
    _, report = corpus_ingest
    ob = [r for r in _records(report.dataset_dir) if r["task"] == task]
    assert ob
    for r in ob[:50]:
        user, answer = r["messages"][1]["content"], r["messages"][-1]["content"]
        assert "Question:" in user and user.count("Source [") >= 2
        cite = answer.rsplit("Source: ", 1)[1]
        assert cite in user  # the cited section is one of the sources shown
        assert f"v{r['provenance']['version'][:8]}]" in cite


def test_reingest_unchanged_adds_nothing(corpus_ingest):
    ws, report = corpus_ingest
    n_pairs = ws.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
    n_versions = ws.db.execute("SELECT COUNT(*) FROM versions").fetchone()[0]
    again = ingest_paths(ws, [CORPUS / "md", CORPUS / "pdf"], IngestConfig())
    assert {f.status for f in again.files} == {"unchanged"}
    assert ws.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] == n_pairs
    assert ws.db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == n_versions
    assert again.dataset_id == report.dataset_id


def test_changed_section_regenerates_only_its_pairs(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in (
        "dxw_claiming_expenses.md",
        "18f_purchase_requests.md",
        "pagerduty_severity_levels.md",
    ):
        shutil.copy(CORPUS / "md" / name, docs / name)
    ws = Workspace(tmp_path / "ws")
    first = ingest_paths(ws, [docs], IngestConfig())
    target = docs / "dxw_claiming_expenses.md"
    before = {
        r["section_id"]: r["content_hash"]
        for r in ws.db.execute(
            "SELECT section_id, content_hash FROM sections s JOIN versions v USING (doc_id, version)"
            " WHERE v.status='current' AND s.doc_id='dxw_claiming_expenses'"
        )
    }
    pairs_before = {
        r["pair_id"]: (r["section_id"], r["content_hash"])
        for r in ws.db.execute("SELECT * FROM pairs WHERE status='active'")
    }
    text = target.read_text(encoding="utf-8")
    # Change one fact in one section (a sentence that appears exactly once).
    old_sentence = next(
        line
        for line in text.splitlines()
        if len(line) > 60 and text.count(line) == 1 and not line.startswith("#")
    )
    target.write_text(
        text.replace(old_sentence, old_sentence + " Claims over 500 pounds need director approval.")
    )

    second = ingest_paths(ws, [docs], IngestConfig())
    status = {Path(f.path).name: f.status for f in second.files}
    assert status == {
        "dxw_claiming_expenses.md": "updated",
        "18f_purchase_requests.md": "unchanged",
        "pagerduty_severity_levels.md": "unchanged",
    }
    changed = [f for f in second.files if f.status == "updated"][0]
    assert changed.changes == {"added": 0, "changed": 1, "removed": 0}
    changed_id = changed.diffs[0]["section_id"]
    assert "director approval" in changed.diffs[0]["diff"]
    # only the changed section got new pairs; its old pairs are retired (superseded), others untouched
    new_pairs = ws.db.execute("SELECT * FROM pairs WHERE status='active'").fetchall()
    fresh = [r for r in new_pairs if r["pair_id"] not in pairs_before]
    assert fresh and {r["section_id"] for r in fresh} == {changed_id}
    assert {r["doc_id"] for r in fresh} == {"dxw_claiming_expenses"}
    retired = ws.db.execute("SELECT * FROM pairs WHERE status='retired'").fetchall()
    assert retired and {(r["section_id"], r["content_hash"]) for r in retired} == {
        (changed_id, before[changed_id])
    }
    unchanged_pairs = {
        k for k, (sid, _) in pairs_before.items() if sid != changed_id or not k.startswith("dxw")
    }
    still = {r["pair_id"] for r in new_pairs}
    assert {k for k in pairs_before if not k.startswith("dxw_claiming_expenses:")} <= still
    assert unchanged_pairs <= still  # every pair of an unchanged section is still active
    # the changed section's old pairs are retired, or active again bound to the new text when the
    # change left their sentence alone (same pair id): never active with the old content hash
    for k, (sid, _) in pairs_before.items():
        if sid == changed_id and k.startswith("dxw"):
            row = ws.db.execute(
                "SELECT status, content_hash FROM pairs WHERE pair_id=?", (k,)
            ).fetchone()
            assert row["status"] == "retired" or row["content_hash"] != before[changed_id]
    versions = ws.db.execute(
        "SELECT status FROM versions WHERE doc_id='dxw_claiming_expenses' ORDER BY ingested_at"
    ).fetchall()
    assert [v["status"] for v in versions] == ["superseded", "current"]
    # the new dataset cites the new version everywhere; no record carries the superseded one
    new_version = ws.db.execute(
        "SELECT version FROM versions WHERE doc_id='dxw_claiming_expenses' AND status='current'"
    ).fetchone()[0]
    recs = [
        r
        for r in _records(second.dataset_dir)
        if r["provenance"]["doc_id"] == "dxw_claiming_expenses"
    ]
    assert recs and {r["provenance"]["version"] for r in recs} == {new_version}
    assert second.dataset_id != first.dataset_id


def test_edge_pdfs_fail_alone_with_their_own_errors(tmp_path):
    batch = [
        EDGE,
        CORPUS / "md" / "18f_piv_card.md",
        CORPUS / "pdf" / "sans_password_protection_policy.pdf",
    ]
    ws = Workspace(tmp_path / "ws")
    report = ingest_paths(ws, batch, IngestConfig())
    by_name = {Path(f.path).name: f for f in report.files}
    scanned = by_name["edge_scanned_no_text_fssa_security_policy.pdf"]
    assert scanned.status == "error" and scanned.error_code == "scanned_no_text"
    assert "OCR" in scanned.error
    for name in (
        "edge_encrypted_aes_physical_security_procedures.pdf",
        "edge_encrypted_aes_mitre_cyber_exercise_playbook.pdf",
    ):  # owner-password-only AES PDFs: they open
        assert by_name[name].status == "new", by_name[name].error
        assert by_name[name].sections >= 3 and by_name[name].pairs > 0
    assert by_name["18f_piv_card.md"].status == "new" and by_name["18f_piv_card.md"].pairs > 0
    assert by_name["sans_password_protection_policy.pdf"].status == "new"
    assert report.card["counts"]["train"] > 0


def test_bad_files_in_a_batch(tmp_path):
    from pypdf import PdfReader, PdfWriter

    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    (bad / "notes.pdf").write_text("this is not a pdf at all\n" * 20)
    real = (CORPUS / "pdf" / "sans_remote_access_policy.pdf").read_bytes()
    (bad / "truncated.pdf").write_bytes(real[: len(real) // 3])
    writer = PdfWriter(clone_from=PdfReader(CORPUS / "pdf" / "sans_remote_access_policy.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    with open(bad / "locked.pdf", "wb") as f:
        writer.write(f)
    (bad / "table.xlsx").write_bytes(b"PK\x03\x04")
    shutil.copy(CORPUS / "md" / "18f_going_out_of_office.md", bad / "ok.md")
    ws = Workspace(tmp_path / "ws")
    report = ingest_paths(ws, [bad, bad / "table.xlsx", bad / "missing.md"], IngestConfig())
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["ok.md"].status == "new" and by_name["ok.md"].pairs > 0
    assert by_name["empty.pdf"].error_code == "empty_file"
    assert by_name["notes.pdf"].error_code == "corrupt_file"
    assert by_name["truncated.pdf"].error_code == "corrupt_file"
    assert by_name["locked.pdf"].error_code == "password_required"
    assert "password" in by_name["locked.pdf"].error
    assert by_name["table.xlsx"].error_code == "unsupported_format"
    assert by_name["missing.md"].status == "error" and "not found" in by_name["missing.md"].error
    for f in report.errors:
        assert f.error and len(f.error) > 20  # a sentence a person can act on


def test_size_limit(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("Step one. " * 200_000)
    ws = Workspace(tmp_path / "ws")
    report = ingest_paths(ws, [big], IngestConfig(max_file_mb=1))
    assert report.files[0].error_code == "file_too_large"
    assert ws.db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0


def test_cli_ingest_prints_summary(tmp_path, capsys):
    from sopforge.cli import main

    rc = main(
        [
            "-w",
            str(tmp_path / "ws"),
            "ingest",
            str(CORPUS / "md" / "18f_piv_card.md"),
            "eval_fraction=0.3",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "18f_piv_card.md" in out and "new" in out and "dataset" in out
    card = json.loads(next((tmp_path / "ws" / "datasets").glob("*/card.json")).read_text())
    assert card["split"]["eval_fraction"] == 0.3


def test_cli_takes_overrides_after_an_option(tmp_path, capsys):
    """Paths and key=value words may come before or after the options; a stray option still fails."""
    from sopforge.cli import main

    doc = str(CORPUS / "md" / "18f_piv_card.md")
    rc = main(["-w", str(tmp_path / "ws"), "ingest", doc, "--no-progress", "eval_fraction=0.3"])
    assert rc == 0
    card = json.loads(next((tmp_path / "ws" / "datasets").glob("*/card.json")).read_text())
    assert card["split"]["eval_fraction"] == 0.3
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["-w", str(tmp_path / "ws"), "ingest", doc, "--no-such-flag", "eval_fraction=0.3"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_cli_rejects_unknown_config_key(tmp_path, capsys):
    from sopforge.cli import main

    rc = main(
        [
            "-w",
            str(tmp_path / "ws"),
            "ingest",
            str(CORPUS / "md" / "18f_piv_card.md"),
            "eval_fractoin=0.3",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "eval_fractoin" in err and "default.yaml" in err


def test_open_book_tasks_setting_rebinds_pairs_without_regenerating(tmp_path, capsys):
    """`open_book_tasks=[...]` asks more tasks the way the chat asks them (sources in the prompt,
    citation in the answer): the stored pairs are reused, only the dataset is materialized anew."""
    from sopforge.cli import main

    ws_dir, doc = str(tmp_path / "ws"), str(CORPUS / "md" / "18f_piv_card.md")
    assert main(["-w", ws_dir, "ingest", doc, "eval_fraction=0.3", "--no-progress"]) == 0
    ws = Workspace(tmp_path / "ws")
    n_pairs = ws.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
    before = {r["id"]: r for d in (tmp_path / "ws" / "datasets").glob("*/") for r in _records(d)}
    args = ["-w", ws_dir, "ingest", doc, "eval_fraction=0.3", "--no-progress"]
    assert main([*args, "open_book_tasks=[json,open_book,summary]"]) == 0
    assert ws.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] == n_pairs
    cards = {
        tuple(json.loads((d / "card.json").read_text())["open_book_tasks"]): d
        for d in (tmp_path / "ws" / "datasets").glob("*/")
    }
    after = _records(cards[("json", "open_book", "summary")])
    assert len(after) == len(before)
    summaries = [r for r in after if r["task"] == "summary"]
    assert summaries and all(r["id"] not in before for r in summaries)
    registry = ContractRegistry()
    for r in after:
        body, cite = split_sources(r["messages"][-1]["content"])
        assert bool(cite) == (r["task"] in {"json", "open_book", "summary"}), r["id"]
        assert registry.get(r["contract"]).validate(body) == []
        if r["task"] == "summary":  # it cites a source it was shown
            assert cite.removeprefix("Source: ") in r["messages"][1]["content"]
        elif r["task"] not in ("json", "open_book"):
            assert r["id"] in before  # the other tasks are untouched
    capsys.readouterr()
    assert main([*args, "open_book_tasks=[json,sumary]"]) == 1
    err = capsys.readouterr().err
    assert "open_book_tasks" in err and "sumary" in err and "summary" in err


def test_ingest_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from sopforge.cli import main; "
        f"rc = main(['-w', {str(tmp_path / 'ws')!r}, 'ingest', {str(CORPUS / 'md' / '18f_piv_card.md')!r}, '--no-progress']); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'ingest imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_alpaca_roundtrip(corpus_ingest, tmp_path):
    from sopforge.ingest.alpaca import export_alpaca, import_alpaca

    _, report = corpus_ingest
    out = tmp_path / "alpaca.jsonl"
    n = export_alpaca(Path(report.dataset_dir), out, split="eval")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert n == len(rows) == report.card["counts"]["eval"]
    assert {"instruction", "input", "output"} <= set(rows[0])
    mine = tmp_path / "ours.jsonl"
    mine.write_text(
        json.dumps(
            {
                "instruction": "List the 3 rules for visitors.",
                "input": "",
                "output": "- a\n- b\n- c",
            }
        )
        + "\n"
        + json.dumps({"instruction": "Bad one", "input": "", "output": "only prose"})
        + "\n"
    )
    ws = Workspace(tmp_path / "ws2")
    rep = import_alpaca(ws, mine, contract="bullets:3", cfg=IngestConfig(eval_fraction=0.0))
    assert rep.files[0].pairs == 1 and rep.files[0].rejects == 1
    recs = _records(rep.dataset_dir)
    assert [r["messages"][-1]["content"] for r in recs] == ["- a\n- b\n- c"]
    (tmp_path / "broken.jsonl").write_text('{"instruction": "x"}\n')
    rep = import_alpaca(ws, tmp_path / "broken.jsonl", contract="plain", cfg=IngestConfig())
    assert rep.files[0].status == "error" and "line 1" in rep.files[0].error
