"""Alpaca-style (instruction, input, output) files: export a dataset, import pairs written elsewhere.

An imported file is versioned like a document (id = file stem, version = sha256 of its bytes), and
each of its records is one "section", so re-importing a changed file supersedes the old pairs and the
train/eval split stays by record. Every output is validated against the chosen contract first.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from sopforge.contracts import ContractRegistry
from sopforge.ingest.errors import CorruptFileError, IngestError
from sopforge.records import SYSTEM_PROMPT, make_record
from sopforge.workspace import Workspace, atomic_write_text

IMPORT_GEN_KEY = "import"


def export_alpaca(dataset_dir: Path, out: Path, split: str = "all") -> int:
    splits = ["train", "eval"] if split == "all" else [split]
    rows = []
    for s in splits:
        for line in (dataset_dir / f"{s}.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            msgs = rec["messages"]
            system = next((m["content"] for m in msgs if m["role"] == "system"), "")
            user = [m["content"] for m in msgs if m["role"] == "user"]
            rows.append(
                {
                    "instruction": user[-1] if user else "",
                    "input": "",
                    "output": msgs[-1]["content"],
                    "system": system,
                    "task": rec["task"],
                    "contract": rec["contract"],
                    "split": s,
                }
            )
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def parse_alpaca(path: Path, data: bytes) -> list[dict[str, str]]:
    """Records from a JSON list or JSONL file; a malformed record names its line/index."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorruptFileError(str(path), f"not UTF-8 text ({e}); save it as UTF-8") from e
    stripped = text.lstrip()
    items: list[tuple[str, Any]] = []
    try:
        if stripped.startswith("["):
            items = [(f"item {i}", r) for i, r in enumerate(json.loads(text))]
        else:
            items = [
                (f"line {i}", json.loads(line))
                for i, line in enumerate(text.splitlines(), 1)
                if line.strip()
            ]
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            str(path), f"not valid JSON/JSONL: {e.msg} at line {e.lineno}"
        ) from e
    out = []
    for where, r in items:
        if (
            not isinstance(r, dict)
            or not isinstance(r.get("instruction"), str)
            or not isinstance(r.get("output"), str)
        ):
            raise CorruptFileError(
                str(path), f"{where}: each record needs string fields 'instruction' and 'output'"
            )
        if "input" in r and not isinstance(r["input"], str):
            raise CorruptFileError(str(path), f"{where}: 'input' must be a string")
        out.append(
            {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
        )
    if not out:
        raise CorruptFileError(str(path), "no records found")
    return out


def import_alpaca(ws: Workspace, path: Path, *, contract: str, cfg):
    from sopforge.ingest.pipeline import FileResult, IngestReport, build_dataset

    report = IngestReport()
    res = FileResult(path=str(path), format="alpaca")
    report.files.append(res)
    try:
        data = path.read_bytes()
        records = parse_alpaca(path, data)
        checker = ContractRegistry(cfg.formats_dir or None).get(contract)
    except OSError as e:
        res.status, res.error, res.error_code = (
            "error",
            f"cannot read the file ({e.strerror})",
            "os_error",
        )
        return report
    except IngestError as e:
        res.status, res.error, res.error_code = "error", e.message, e.code
        return report
    doc_id = "alpaca-" + "".join(c if c.isalnum() else "-" for c in path.stem.lower())
    version = hashlib.sha256(data).hexdigest()
    res.doc_id, res.title, res.sections = doc_id, path.name, len(records)
    now = time.time()
    _, blob = ws.store_blob(data, path.suffix)
    with ws.transaction() as db:
        row = db.execute(
            "SELECT version FROM versions WHERE doc_id=? AND status='current'", (doc_id,)
        ).fetchone()
        if row and row["version"] == version:
            res.status = "unchanged"
            return report
        db.execute(
            "INSERT OR IGNORE INTO documents (doc_id, name, created_at) VALUES (?, ?, ?)",
            (doc_id, path.name, now),
        )
        if row:
            db.execute(
                "UPDATE versions SET status='superseded', superseded_at=? WHERE doc_id=? AND version=?",
                (now, doc_id, row["version"]),
            )
            db.execute(
                "UPDATE pairs SET status='retired', retired_at=? WHERE doc_id=? AND status='active'",
                (now, doc_id),
            )
        db.execute(
            "INSERT OR REPLACE INTO versions (doc_id, version, status, filename, format, title, pages, blob, text,"
            " ingested_at) VALUES (?, ?, 'current', ?, 'alpaca', ?, 0, ?, '', ?)",
            (doc_id, version, path.name, path.name, blob.name, now),
        )
        for i, r in enumerate(records):
            user = (r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")).strip()
            section_id = f"record {i + 1}"
            content_hash = hashlib.sha256(json.dumps([user, r["output"]]).encode()).hexdigest()[:16]
            db.execute(
                "INSERT OR REPLACE INTO sections (doc_id, version, section_id, ord, title, level, content_hash, body,"
                " span_start, span_end) VALUES (?, ?, ?, ?, ?, 1, ?, ?, 0, 0)",
                (doc_id, version, section_id, i, r["instruction"][:80], content_hash, r["output"]),
            )
            errors = checker.validate(r["output"])
            if errors:
                res.rejects += 1
                db.execute(
                    "INSERT INTO rejects (doc_id, version, section_id, content_hash, gen_key, task, contract, generator,"
                    " reason, at) VALUES (?, ?, ?, ?, ?, 'qa', ?, 'import', ?, ?)",
                    (
                        doc_id,
                        version,
                        section_id,
                        content_hash,
                        IMPORT_GEN_KEY,
                        contract,
                        "; ".join(errors),
                        now,
                    ),
                )
                continue
            rec = make_record(
                user,
                r["output"],
                task="qa",
                contract=contract,
                generator="import",
                system=SYSTEM_PROMPT,
                provenance={
                    "doc_id": doc_id,
                    "version": version,
                    "section_id": section_id,
                    "section_title": r["instruction"][:80],
                    "content_hash": content_hash,
                    "span": [0, 0],
                },
            )
            db.execute(
                "INSERT OR REPLACE INTO pairs (pair_id, doc_id, version, section_id, content_hash, task, contract,"
                " generator, record, gen_key, status, created_at) VALUES (?, ?, ?, ?, ?, 'qa', ?, 'import', ?, ?, 'active', ?)",
                (
                    f"{doc_id}:{rec['id']}",
                    doc_id,
                    version,
                    section_id,
                    content_hash,
                    contract,
                    json.dumps(rec),
                    IMPORT_GEN_KEY,
                    now,
                ),
            )
            res.pairs += 1
    res.status = "updated" if row else "new"
    if cfg.build_dataset:
        build_dataset(ws, cfg, report)
    return report
