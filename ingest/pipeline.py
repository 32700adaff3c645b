"""The ingest stage, top to bottom: files in, a validated dataset out.

    expand paths ─► read (one reader per format; a bad file fails alone)
                ─► version (doc id + sha256; unchanged → nothing; changed → new current version,
                   old one superseded, section changes recorded)
                ─► generate pairs for sections that have none yet (pairs are keyed by the section's
                   content hash, so unchanged sections keep theirs and only changed ones regenerate)
                ─► build the dataset from the active pairs of current versions (split by section)

Every step writes in one DB transaction or one atomic file rename, so an interrupted run is finished
by running the same command again, with the same result as an uninterrupted one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sopforge.contracts import ContractRegistry
from sopforge.ingest.document import Document, SectionRef
from sopforge.ingest.errors import FileTooLargeError, IngestError
from sopforge.ingest.readers import SUPPORTED_EXTENSIONS, read_document
from sopforge.ingest.tasks import GenerationResult, SectionInput, TaskConfig, generate_section_pairs
from sopforge.records import ContextSection, citation, make_record, open_book_prompt
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    """What `sopforge ingest` does; loaded from configs/ingest/*.yaml (strict, dotted overrides)."""

    tasks: TaskConfig = field(default_factory=TaskConfig)
    eval_fraction: float = 0.15  # share of sections held out for evaluation (split by section)
    split_seed: str = "sopforge"  # changing it reshuffles which sections are held out
    open_book_distractors: int = 2  # other sections shown beside the right one in open-book prompts
    max_file_mb: float = 50.0
    formats_dir: str = ""  # contract folder; empty = the shipped configs/formats
    build_dataset: bool = True


@dataclass
class FileResult:
    path: str
    doc_id: str = ""
    status: str = ""  # new | updated | unchanged | error
    title: str = ""
    format: str = ""
    pages: int = 0
    sections: int = 0
    pairs: int = 0  # pairs generated in this run for this document
    rejects: int = 0
    changes: dict[str, int] = field(default_factory=dict)  # added/changed/removed counts
    diffs: list[dict[str, str]] = field(default_factory=list)  # per changed section: id, kind, diff
    error: str = ""
    error_code: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    dataset_id: str = ""
    dataset_dir: str = ""
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "error"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- step 1: which files -----------------------------------------------------------------------


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus supported files found (recursively) in folders named."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in SUPPORTED_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            out.append(p)  # a missing or unsupported file is reported by the reader
    seen: set[Path] = set()
    return [f for f in out if not (f.resolve() in seen or seen.add(f.resolve()))]


# ---- step 2: versions ----------------------------------------------------------------------------


def _now() -> float:
    return time.time()


def store_version(ws: Workspace, path: Path, data: bytes, doc: Document) -> FileResult:
    """Record a document version. Unchanged → nothing; changed → new current, old superseded."""
    res = FileResult(
        path=str(path), doc_id=doc.doc_id, title=doc.title, format=doc.format, pages=doc.pages
    )
    res.warnings = list(doc.warnings)
    text, refs = doc.render()
    res.sections = len(refs)
    version = hashlib.sha256(data).hexdigest()
    digest, blob = ws.store_blob(data, path.suffix)
    with ws.transaction() as db:
        row = db.execute(
            "SELECT version FROM versions WHERE doc_id=? AND status='current'", (doc.doc_id,)
        ).fetchone()
        if row and row["version"] == version:
            res.status = "unchanged"
            return res
        known = db.execute(
            "SELECT 1 FROM versions WHERE doc_id=? AND version=?", (doc.doc_id, version)
        ).fetchone()
        now = _now()
        db.execute(
            "INSERT OR IGNORE INTO documents (doc_id, name, created_at) VALUES (?, ?, ?)",
            (doc.doc_id, path.name, now),
        )
        old_sections: dict[str, tuple[str, str]] = {}
        if row:
            old_sections = {
                r["section_id"]: (r["content_hash"], r["body"])
                for r in db.execute(
                    "SELECT section_id, content_hash, body FROM sections WHERE doc_id=? AND version=?",
                    (doc.doc_id, row["version"]),
                )
            }
            db.execute(
                "UPDATE versions SET status='superseded', superseded_at=? WHERE doc_id=? AND version=?",
                (now, doc.doc_id, row["version"]),
            )
        if known:  # re-uploading an older version makes it current again
            db.execute(
                "UPDATE versions SET status='current', superseded_at=NULL, ingested_at=? "
                "WHERE doc_id=? AND version=?",
                (now, doc.doc_id, version),
            )
        else:
            db.execute(
                "INSERT INTO versions (doc_id, version, status, filename, format, title, pages, blob,"
                " text, ingested_at) VALUES (?, ?, 'current', ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc.doc_id,
                    version,
                    path.name,
                    doc.format,
                    doc.title,
                    doc.pages,
                    blob.name,
                    text,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO sections (doc_id, version, section_id, ord, title, level, content_hash,"
                " body, span_start, span_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        doc.doc_id,
                        version,
                        r.section_id,
                        i,
                        r.path[-1],
                        len(r.path),
                        r.content_hash,
                        r.section.body(),
                        r.start,
                        r.end,
                    )
                    for i, r in enumerate(refs)
                ],
            )
        # Pairs already made for this content (e.g. an older version uploaded again) come back.
        db.executemany(
            "UPDATE pairs SET status='active', retired_at=NULL WHERE doc_id=? AND content_hash=?"
            " AND status='retired'",
            [(doc.doc_id, r.content_hash) for r in refs],
        )
        res.status = "updated" if row else "new"
        if row:
            res.diffs = section_changes(old_sections, refs)
            res.changes = {
                k: sum(d["kind"] == k for d in res.diffs) for k in ("added", "changed", "removed")
            }
            db.executemany(
                "INSERT INTO changes (doc_id, old_version, new_version, section_id, kind, diff, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        doc.doc_id,
                        row["version"],
                        version,
                        d["section_id"],
                        d["kind"],
                        d["diff"],
                        now,
                    )
                    for d in res.diffs
                ],
            )
            # Pairs of sections that no longer exist in the current version are retired (superseded).
            current_hashes = {r.content_hash for r in refs}
            gone = [h for h, _ in old_sections.values() if h not in current_hashes]
            db.executemany(
                "UPDATE pairs SET status='retired', retired_at=? WHERE doc_id=? AND content_hash=?"
                " AND status='active'",
                [(now, doc.doc_id, h) for h in gone],
            )
    return res


def section_changes(
    old: dict[str, tuple[str, str]], new_refs: Sequence[SectionRef]
) -> list[dict[str, str]]:
    """Added / changed / removed sections between two versions, with a unified diff of each change."""
    out: list[dict[str, str]] = []
    new_ids = set()
    for r in new_refs:
        new_ids.add(r.section_id)
        body = r.section.body()
        if r.section_id not in old:
            out.append(
                {"section_id": r.section_id, "kind": "added", "diff": _diff("", body, r.section_id)}
            )
        elif old[r.section_id][0] != r.content_hash:
            out.append(
                {
                    "section_id": r.section_id,
                    "kind": "changed",
                    "diff": _diff(old[r.section_id][1], body, r.section_id),
                }
            )
    for sid, (_, body) in old.items():
        if sid not in new_ids:
            out.append({"section_id": sid, "kind": "removed", "diff": _diff(body, "", sid)})
    return out


def _diff(a: str, b: str, name: str) -> str:
    return "\n".join(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), f"old/{name}", f"new/{name}", lineterm="", n=1
        )
    )


# ---- step 3: pairs -------------------------------------------------------------------------------


def generator_key(cfg: IngestConfig) -> str:
    """Pairs are reused only while the task settings that made them stay the same."""
    return hashlib.sha256(
        json.dumps(asdict(cfg.tasks), sort_keys=True, default=str).encode()
    ).hexdigest()[:12]


def pending_sections(ws: Workspace, gen_key: str) -> list[dict[str, Any]]:
    """Current sections whose pairs have not been generated with these settings yet."""
    rows = ws.db.execute(
        "SELECT s.*, v.title AS doc_title FROM sections s"
        " JOIN versions v ON v.doc_id=s.doc_id AND v.version=s.version AND v.status='current'"
        " WHERE v.format != 'alpaca' AND NOT EXISTS (SELECT 1 FROM generated g WHERE g.doc_id=s.doc_id"
        "   AND g.content_hash=s.content_hash AND g.gen_key=?)"
        " ORDER BY s.doc_id, s.ord",
        (gen_key,),
    ).fetchall()
    return [dict(r) for r in rows]


def generate_pairs(
    ws: Workspace,
    docs: dict[str, Document],
    cfg: IngestConfig,
    registry: ContractRegistry,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
) -> dict[str, tuple[int, int]]:
    """Generate and store pairs for every pending section. Returns {doc_id: (pairs, rejects)}."""
    key = generator_key(cfg)
    pending = pending_sections(ws, key)
    counts: dict[str, tuple[int, int]] = {}
    sections_of = {
        doc_id: {r.section_id: r for r in doc.section_refs()} for doc_id, doc in docs.items()
    }
    rows: Iterable[dict[str, Any]] = pending
    if progress:
        rows = progress(pending, len(pending), "generating pairs")
    for row in rows:
        ref = sections_of.get(row["doc_id"], {}).get(row["section_id"])
        if ref is None:  # the document was ingested in an earlier, interrupted run: re-read it
            ref = _reload_section(ws, row)
            if ref is None:
                continue
            sections_of.setdefault(row["doc_id"], {}).update({r.section_id: r for r in ref[1]})
            ref = ref[0]
        result: GenerationResult = generate_section_pairs(
            SectionInput(
                doc_id=row["doc_id"],
                doc_title=row["doc_title"],
                version=row["version"],
                section_id=row["section_id"],
                section_title=row["title"],
                path=ref.path,
                section=ref.section,
                body=row["body"],
                content_hash=row["content_hash"],
                span=(row["span_start"], row["span_end"]),
            ),
            registry=registry,
            cfg=cfg.tasks,
        )
        now = _now()
        with ws.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO pairs (pair_id, doc_id, version, section_id, content_hash, task,"
                " contract, generator, record, gen_key, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
                [
                    (
                        f"{row['doc_id']}:{rec['id']}",
                        row["doc_id"],
                        row["version"],
                        row["section_id"],
                        row["content_hash"],
                        rec["task"],
                        rec["contract"],
                        rec["generator"],
                        json.dumps(rec, ensure_ascii=False),
                        key,
                        now,
                    )
                    for rec in result.records
                ],
            )
            db.executemany(
                "INSERT INTO rejects (doc_id, version, section_id, content_hash, gen_key, task, contract,"
                " generator, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        row["doc_id"],
                        row["version"],
                        row["section_id"],
                        row["content_hash"],
                        key,
                        rj.task,
                        rj.contract,
                        cfg.tasks.generator,
                        rj.reason,
                        now,
                    )
                    for rj in result.rejects
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO generated (doc_id, content_hash, gen_key, n_pairs, n_rejects, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row["doc_id"],
                    row["content_hash"],
                    key,
                    len(result.records),
                    len(result.rejects),
                    now,
                ),
            )
        p, r = counts.get(row["doc_id"], (0, 0))
        counts[row["doc_id"]] = (p + len(result.records), r + len(result.rejects))
    return counts


def _reload_section(
    ws: Workspace, row: dict[str, Any]
) -> tuple[SectionRef, list[SectionRef]] | None:
    v = ws.db.execute(
        "SELECT blob, filename FROM versions WHERE doc_id=? AND version=?",
        (row["doc_id"], row["version"]),
    ).fetchone()
    blob = ws.path("docs", v["blob"])
    try:
        doc = read_document(Path(v["filename"]), data=blob.read_bytes(), doc_id=row["doc_id"])
    except (OSError, IngestError) as e:
        log.warning("cannot re-read %s for pending pairs: %s", v["filename"], e)
        return None
    refs = doc.section_refs()
    match = next((r for r in refs if r.section_id == row["section_id"]), None)
    return (match, refs) if match else None


# ---- step 4: the dataset -------------------------------------------------------------------------


def _stable_fraction(*parts: str) -> float:
    h = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_of(doc_id: str, section_id: str, cfg: IngestConfig) -> str:
    """Held-out by section (never by pair): all pairs of a section land on the same side."""
    return (
        "eval"
        if _stable_fraction(cfg.split_seed, doc_id, section_id) < cfg.eval_fraction
        else "train"
    )


def current_sections(ws: Workspace) -> list[dict[str, Any]]:
    rows = ws.db.execute(
        "SELECT s.doc_id, s.version, s.section_id, s.title, s.body, s.content_hash, s.span_start,"
        " s.span_end, v.title AS doc_title FROM sections s JOIN versions v"
        " ON v.doc_id=s.doc_id AND v.version=s.version AND v.status='current' ORDER BY s.doc_id, s.ord"
    ).fetchall()
    return [dict(r) for r in rows]


def materialize(
    rec: dict[str, Any],
    sec: dict[str, Any],
    pool: Sequence[dict[str, Any]],
    n_distractors: int,
) -> dict[str, Any]:
    """Bind a stored pair to its section's current version: provenance, and for open-book pairs the
    retrieved context (the right section + distractors from the same split) and the citation.

    Stored pairs never embed another section's text or a version id, so an unchanged section's pairs
    stay valid when its document gets a new version."""
    prov = dict(
        rec["provenance"], version=sec["version"], span=[sec["span_start"], sec["span_end"]]
    )
    user = rec["messages"][1]["content"]
    answer = rec["messages"][-1]["content"]
    if rec["task"] == "open_book":
        own = ContextSection(sec["doc_title"], sec["title"], sec["version"], sec["body"])
        others = [
            p for p in pool if (p["doc_id"], p["section_id"]) != (sec["doc_id"], sec["section_id"])
        ]
        others.sort(key=lambda p: _stable_fraction(rec["id"], p["doc_id"], p["section_id"]))
        contexts = [
            ContextSection(p["doc_title"], p["title"], p["version"], p["body"])
            for p in others[:n_distractors]
        ]
        contexts.insert(int(_stable_fraction(rec["id"], "pos") * (len(contexts) + 1)), own)
        user = open_book_prompt(user, contexts)
        answer = f"{answer}\n\nSource: {citation(sec['doc_title'], sec['title'], sec['version'])}"
    out = make_record(
        user,
        answer,
        task=rec["task"],
        contract=rec["contract"],
        generator=rec["generator"],
        provenance=prov,
        system=rec["messages"][0]["content"],
    )
    return out


def build_dataset(
    ws: Workspace, cfg: IngestConfig, report: IngestReport | None = None
) -> tuple[str, Path, dict]:
    """Write datasets/<id>/{train,eval}.jsonl + card.json from current active pairs (idempotent)."""
    sections = current_sections(ws)
    by_key = {(s["doc_id"], s["content_hash"]): s for s in sections}
    split_pool: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for s in sections:
        if s["body"].strip():  # a heading with only sub-sections is no useful distractor
            split_pool[split_of(s["doc_id"], s["section_id"], cfg)].append(s)
    key = generator_key(cfg)
    pair_rows = ws.db.execute(
        "SELECT doc_id, content_hash, record FROM pairs WHERE status='active' AND gen_key IN (?, 'import')"
        " ORDER BY pair_id",
        (key,),
    ).fetchall()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for row in pair_rows:
        sec = by_key.get((row["doc_id"], row["content_hash"]))
        if sec is None:  # the pair belongs to a superseded version
            continue
        split = split_of(sec["doc_id"], sec["section_id"], cfg)
        rec = materialize(
            json.loads(row["record"]), sec, split_pool[split], cfg.open_book_distractors
        )
        splits[split].append(rec)
    for recs in splits.values():
        recs.sort(key=lambda r: r["id"])
    lines = {
        s: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
        for s, recs in splits.items()
    }
    digest = hashlib.sha256((lines["train"] + "\0" + lines["eval"]).encode()).hexdigest()
    dataset_id = digest[:12]
    card = dataset_card(ws, splits, sections, key, cfg)
    card.update(dataset_id=dataset_id, hash=digest)
    out_dir = ws.path("datasets", dataset_id)
    existing = ws.db.execute("SELECT 1 FROM datasets WHERE dataset_id=?", (dataset_id,)).fetchone()
    if not (existing and (out_dir / "card.json").exists()):
        _write_dataset_dir(out_dir, lines, card)
        with ws.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO datasets (dataset_id, created_at, hash, path, n_train, n_eval, card)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset_id,
                    _now(),
                    digest,
                    str(out_dir),
                    len(splits["train"]),
                    len(splits["eval"]),
                    json.dumps(card),
                ),
            )
    else:
        card = json.loads((out_dir / "card.json").read_text())
    if report is not None:
        report.dataset_id, report.dataset_dir, report.card = dataset_id, str(out_dir), card
    return dataset_id, out_dir, card


def _write_dataset_dir(out_dir: Path, lines: dict[str, str], card: dict[str, Any]) -> None:
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        (tmp / "train.jsonl").write_text(lines["train"], encoding="utf-8")
        (tmp / "eval.jsonl").write_text(lines["eval"], encoding="utf-8")
        (tmp / "card.json").write_text(
            json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        if out_dir.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dataset_card(
    ws: Workspace,
    splits: dict[str, list[dict[str, Any]]],
    sections: list[dict[str, Any]],
    gen_key: str,
    cfg: IngestConfig,
) -> dict[str, Any]:
    per_task: dict[str, dict[str, int]] = {}
    per_doc: dict[str, dict[str, Any]] = {}
    per_contract: dict[str, int] = {}
    for split, recs in splits.items():
        for r in recs:
            per_task.setdefault(r["task"], {"train": 0, "eval": 0})[split] += 1
            per_contract[r["contract"]] = per_contract.get(r["contract"], 0) + 1
            d = per_doc.setdefault(r["provenance"]["doc_id"], {"pairs": 0, "tasks": {}})
            d["pairs"] += 1
            d["tasks"][r["task"]] = d["tasks"].get(r["task"], 0) + 1
    for s in sections:
        d = per_doc.setdefault(s["doc_id"], {"pairs": 0, "tasks": {}})
        d.setdefault("version", s["version"])
        d.setdefault("title", s["doc_title"])
        d["sections"] = d.get("sections", 0) + 1
        d.setdefault("eval_sections", 0)
        d["eval_sections"] += split_of(s["doc_id"], s["section_id"], cfg) == "eval"
    rejects: dict[str, dict[str, int]] = {}
    current = {(s["doc_id"], s["content_hash"]) for s in sections}
    for row in ws.db.execute(
        "SELECT doc_id, content_hash, task, reason FROM rejects WHERE gen_key=?", (gen_key,)
    ):
        if (row["doc_id"], row["content_hash"]) not in current:
            continue
        reason = row["reason"].split(":")[0][:80]
        bucket = rejects.setdefault(row["task"], {})
        bucket[reason] = bucket.get(reason, 0) + 1
    return {
        "created_at": _now(),
        "generator": cfg.tasks.generator,
        "gen_key": gen_key,
        "counts": {"train": len(splits["train"]), "eval": len(splits["eval"])},
        "per_task": per_task,
        "per_contract": per_contract,
        "per_doc": per_doc,
        "rejects": {"total": sum(sum(v.values()) for v in rejects.values()), "by_task": rejects},
        "split": {"by": "section", "eval_fraction": cfg.eval_fraction, "seed": cfg.split_seed},
    }


# ---- the whole stage -----------------------------------------------------------------------------


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    cfg: IngestConfig | None = None,
    *,
    progress: bool = False,
    uploads: dict[str, bytes] | None = None,
) -> IngestReport:
    """Ingest files (and folders) into the workspace and build the dataset. Bad files fail alone.

    `uploads` maps a display file name to bytes already in memory (the admin upload path)."""
    cfg = cfg or IngestConfig()
    registry = ContractRegistry(cfg.formats_dir or None)
    report = IngestReport()
    files: list[tuple[Path, bytes | None]] = [(p, None) for p in expand_paths(paths)]
    files += [(Path(name), data) for name, data in (uploads or {}).items()]
    bar = _progress_fn() if progress else None
    docs: dict[str, Document] = {}
    items: Iterable[tuple[Path, bytes | None]] = bar(files, len(files), "reading") if bar else files
    for path, data in items:
        report.files.append(_ingest_one(ws, path, data, cfg, docs))
    counts = generate_pairs(ws, docs, cfg, registry, progress=bar)
    for fr in report.files:
        fr.pairs, fr.rejects = counts.get(fr.doc_id, (0, 0)) if fr.status != "error" else (0, 0)
    if cfg.build_dataset:
        build_dataset(ws, cfg, report)
    return report


def _ingest_one(
    ws: Workspace, path: Path, data: bytes | None, cfg: IngestConfig, docs: dict[str, Document]
) -> FileResult:
    max_bytes = int(cfg.max_file_mb * 2**20)
    try:
        if data is None:
            if not path.is_file():
                raise IngestError(str(path), "file not found (check the path)")
            if path.stat().st_size > max_bytes:
                raise FileTooLargeError(
                    str(path),
                    f"file is {path.stat().st_size / 2**20:.1f} MB, over the {cfg.max_file_mb:g} MB limit "
                    "(raise max_file_mb in the ingest config or split the document)",
                )
            data = path.read_bytes()
        doc = read_document(path, data=data, max_bytes=max_bytes)
    except IngestError as e:
        log.warning("%s", e)
        return FileResult(path=str(path), status="error", error=e.message, error_code=e.code)
    except OSError as e:
        return FileResult(
            path=str(path),
            status="error",
            error=f"cannot read the file ({e.strerror})",
            error_code="os_error",
        )
    docs[doc.doc_id] = doc
    return store_version(ws, path, data, doc)


def _progress_fn() -> Callable[[Iterable[Any], int, str], Iterable[Any]]:
    from tqdm import tqdm

    def bar(it: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
        return tqdm(it, total=total, desc=desc, unit="item", leave=False, dynamic_ncols=True)

    return bar
