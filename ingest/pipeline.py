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
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sopforge.contracts import ContractRegistry
from sopforge.ingest.document import Document, SectionRef
from sopforge.ingest.errors import FileTooLargeError, IngestError
from sopforge.ingest.readers import SUPPORTED_EXTENSIONS, read_document
from sopforge.ingest.readers.common import slugify
from sopforge.ingest.tasks import (
    TASK_FAMILIES,
    GenerationResult,
    SectionInput,
    TaskConfig,
    generate_section_pairs,
)
from sopforge.records import (
    OPEN_BOOK_TASKS,
    ContextSection,
    citation,
    cut_section,
    make_record,
    open_book_prompt,
)
from sopforge.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    """What `sopforge ingest` does; loaded from configs/ingest/*.yaml (strict, dotted overrides)."""

    tasks: TaskConfig = field(default_factory=TaskConfig)
    eval_fraction: float = 0.15  # share of sections held out for evaluation (split by section)
    split_seed: str = "sopforge"  # changing it reshuffles which sections are held out
    open_book_distractors: int = 2  # other sections shown beside the right one in open-book prompts
    # Distractors are cut like the server cuts retrieved sections (serve.retrieval.max_section_chars);
    # the right section is shown whole, since its answer may come from anywhere in it.
    open_book_max_chars: int = 1200
    # Tasks whose pairs are materialized open-book (sources in the prompt, citation in the answer),
    # the way the served assistant always asks; the rest are asked from memory.
    open_book_tasks: tuple[str, ...] = tuple(sorted(OPEN_BOOK_TASKS))
    max_file_mb: float = 50.0
    formats_dir: str = ""  # contract folder; empty = the shipped configs/formats
    build_dataset: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.open_book_tasks) - set(TASK_FAMILIES))
        if unknown:
            raise ValueError(
                f"open_book_tasks: unknown task(s) {unknown}; choose from {list(TASK_FAMILIES)}"
            )


@dataclass
class FileResult:
    path: str  # the file as given (CLI), or the cleaned file name (upload)
    doc_id: str = ""
    status: str = ""  # new | updated | unchanged | duplicate | error
    name: str = ""  # the file name shown in reports (cleaned of separators and control characters)
    duplicate_of: str = ""  # duplicate: the document whose current version has the same bytes
    note: str = ""  # what happened, in words, when the status alone does not say it
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


# ---- step 1b: names -----------------------------------------------------------------------------

MAX_NAME_CHARS = 160  # shown and stored file names; longer ones keep their extension
MAX_DOC_ID_CHARS = 64
# Unicode categories never kept in a name: controls, formats (bidi overrides, zero-width),
# surrogates, private use, unassigned.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SEPARATORS = re.compile(r"[/\\]")


def clean_file_name(name: str) -> str:
    """A file name from an untrusted source (a browser upload) made safe to store and show.

    Keeps only the last path component (either separator: '../../x.md' and 'C:\\x.md' give 'x.md'),
    drops controls and invisible format characters (NUL, the right-to-left override U+202E that
    disguises 'fdp.md' as 'dm.pdf', zero-width spaces), composes combining marks (NFC), collapses
    whitespace, strips leading dots (no '..', no hidden files), and caps the length keeping the
    extension. Returns '' when nothing usable is left. The result is never used as a path to
    write to: originals are stored content-addressed.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        " " if unicodedata.category(c) in ("Zl", "Zp") else c
        for c in text
        if unicodedata.category(c) not in _INVISIBLE or c in "\t\n\r"
    )
    text = re.sub(r"\s+", " ", text)
    last = _SEPARATORS.split(text)[-1].strip(" .")
    if len(last) <= MAX_NAME_CHARS:
        return last
    stem, dot, ext = last.rpartition(".")
    if dot and stem and 0 < len(ext) <= 10:
        return stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip(" .") + "." + ext
    return last[:MAX_NAME_CHARS].rstrip(" .")


def _short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def document_id(file_name: str) -> str:
    """A document's id from its file name: the slug of the stem ('Lost Badge (v2).md' ->
    'lost-badge-v2'), so re-uploading a file under the same name makes a new version of it.

    Names with nothing ASCII to slug (only emoji, CJK, symbols) get 'doc-<hash of the name>', so
    two such files stay two documents instead of both becoming 'document'; slugs over
    MAX_DOC_ID_CHARS are cut and end in a hash of the whole slug, so they stay distinct too."""
    stem = Path(file_name).stem
    slug = slugify(stem)
    ascii_folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    if not re.search(r"[A-Za-z0-9]", ascii_folded):
        return "doc-" + _short_hash(unicodedata.normalize("NFC", stem))
    if len(slug) > MAX_DOC_ID_CHARS:
        return slug[: MAX_DOC_ID_CHARS - 9].rstrip("-_") + "-" + _short_hash(slug, 8)
    return slug


def shown_name(name: str, limit: int = 80) -> str:
    """A refused name as the report shows it: invisible characters written as escapes."""
    return "".join(
        c if c.isprintable() and unicodedata.category(c) not in _INVISIBLE else f"\\u{ord(c):04x}"
        for c in name
    )[:limit]


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
                # A regenerated pair identical to one retired with an earlier version of the
                # section (a sentence the change left alone) is the same pair_id: bring it back,
                # bound to the new version, rather than leave it retired and lose it.
                "INSERT INTO pairs (pair_id, doc_id, version, section_id, content_hash, task,"
                " contract, generator, record, gen_key, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)"
                " ON CONFLICT(pair_id) DO UPDATE SET status='active', retired_at=NULL,"
                " version=excluded.version, section_id=excluded.section_id,"
                " content_hash=excluded.content_hash, record=excluded.record,"
                " gen_key=excluded.gen_key, created_at=excluded.created_at"
                " WHERE pairs.status='retired'",
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
    max_chars: int = 0,
    *,
    open_book: bool,
) -> dict[str, Any]:
    """Bind a stored pair to its section's current version: provenance, and for open-book pairs
    (`open_book`: the task is in the config's `open_book_tasks`) the retrieved context (the right
    section + distractors from the same split) and the citation.

    Stored pairs never embed another section's text or a version id, so an unchanged section's pairs
    stay valid when its document gets a new version."""
    prov = dict(
        rec["provenance"], version=sec["version"], span=[sec["span_start"], sec["span_end"]]
    )
    user = rec["messages"][1]["content"]
    answer = rec["messages"][-1]["content"]
    if open_book:
        own = ContextSection(sec["doc_title"], sec["title"], sec["version"], sec["body"])
        others = [
            p for p in pool if (p["doc_id"], p["section_id"]) != (sec["doc_id"], sec["section_id"])
        ]
        others.sort(key=lambda p: _stable_fraction(rec["id"], p["doc_id"], p["section_id"]))
        contexts = [
            ContextSection(
                p["doc_title"], p["title"], p["version"], cut_section(p["body"], max_chars)
            )
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
        stored = json.loads(row["record"])
        rec = materialize(
            stored,
            sec,
            split_pool[split],
            cfg.open_book_distractors,
            cfg.open_book_max_chars,
            open_book=stored["task"] in cfg.open_book_tasks,
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
        "open_book_tasks": sorted(cfg.open_book_tasks),
    }


# ---- the whole stage -----------------------------------------------------------------------------

Upload = tuple[str, bytes | Path]  # (file name as sent, content or a temp file holding it)


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    cfg: IngestConfig | None = None,
    *,
    progress: bool = False,
    uploads: Mapping[str, bytes] | Iterable[Upload] | None = None,
) -> IngestReport:
    """Ingest files (and folders) into the workspace and build the dataset. Bad files fail alone.

    `uploads` are (file name, content) pairs from an untrusted source (the admin upload): the
    name, as the user's browser sent it, is cleaned (`clean_file_name`) and only names the
    document; the content is bytes, or a Path to read them from (a server temp file, which is
    never recorded). A mapping of name -> bytes is accepted too."""
    cfg = cfg or IngestConfig()
    registry = ContractRegistry(cfg.formats_dir or None)
    report = IngestReport()
    pending = [_Pending(p, p.name) for p in expand_paths(paths)]
    items = uploads.items() if isinstance(uploads, Mapping) else (uploads or [])
    pending += [_upload_entry(name, source) for name, source in items]
    bar = _progress_fn() if progress else None
    docs: dict[str, Document] = {}
    batch = _Batch()
    it: Iterable[_Pending] = bar(pending, len(pending), "reading") if bar else pending
    for entry in it:
        report.files.append(_ingest_one(ws, entry, cfg, docs, batch))
    counts = generate_pairs(ws, docs, cfg, registry, progress=bar)
    for fr in report.files:  # a document's new pairs are counted on its current file only
        current = batch.by_doc.get(fr.doc_id) is fr
        fr.pairs, fr.rejects = counts.get(fr.doc_id, (0, 0)) if current else (0, 0)
    if cfg.build_dataset:
        build_dataset(ws, cfg, report)
    return report


@dataclass
class _Pending:
    """One file to ingest: where its bytes are, the name it goes by, and, for an upload whose
    name has nothing usable left, why it is refused before reading."""

    source: Path | None  # a file to read (CLI path, or an upload's server temp file)
    name: str  # the file name the document is named after
    data: bytes | None = None  # an upload's content already in memory
    upload: bool = False  # shown by its name only (a server temp path means nothing to anyone)
    refused: str = ""

    @property
    def shown(self) -> str:
        return self.name if self.upload or self.source is None else str(self.source)


def _upload_entry(name: str, source: bytes | Path) -> _Pending:
    cleaned = clean_file_name(name)
    if isinstance(source, (bytes, bytearray)):
        entry = _Pending(None, cleaned, bytes(source), upload=True)
    else:
        entry = _Pending(Path(source), cleaned, upload=True)
    if not cleaned:
        entry.name = shown_name(name) or "(empty name)"
        entry.refused = (
            "the file name has nothing usable left once path parts, dots and control "
            "characters are removed; rename the file (e.g. 'expense-policy.pdf') and upload it again"
        )
    return entry


@dataclass
class _Batch:
    """What this run has ingested so far, by content (sha256) and by document id."""

    by_content: dict[str, FileResult] = field(default_factory=dict)
    by_doc: dict[str, FileResult] = field(default_factory=dict)


def _load_bytes(entry: _Pending, max_bytes: int, max_mb: float) -> bytes:
    if entry.data is not None:
        return entry.data
    path = entry.source
    assert path is not None
    if not path.is_file():
        raise IngestError(entry.shown, "file not found (check the path)")
    size = path.stat().st_size
    if size > max_bytes:
        raise FileTooLargeError(
            entry.shown,
            f"file is {size / 2**20:.1f} MB, over the {max_mb:g} MB limit "
            "(raise max_file_mb in the ingest config or split the document)",
        )
    return path.read_bytes()


def _failed(entry: _Pending, message: str, code: str) -> FileResult:
    return FileResult(
        path=entry.shown, name=entry.name, status="error", error=message, error_code=code
    )


def _ingest_one(
    ws: Workspace,
    entry: _Pending,
    cfg: IngestConfig,
    docs: dict[str, Document],
    batch: _Batch,
) -> FileResult:
    if entry.refused:
        return _failed(entry, entry.refused, "bad_name")
    max_bytes = int(cfg.max_file_mb * 2**20)
    doc_id = document_id(entry.name)
    try:
        data = _load_bytes(entry, max_bytes, cfg.max_file_mb)
        digest = hashlib.sha256(data).hexdigest()
        duplicate = _duplicate(ws, batch, doc_id, digest)
        if duplicate is not None:
            duplicate.path, duplicate.name = entry.shown, entry.name
            return duplicate
        doc = read_document(Path(entry.name), data=data, doc_id=doc_id, max_bytes=max_bytes)
    except IngestError as e:
        log.warning("%s", e)
        return _failed(entry, e.message, e.code)
    except OSError as e:
        return _failed(entry, f"cannot read the file ({e.strerror})", "os_error")
    docs[doc.doc_id] = doc
    res = store_version(ws, Path(entry.name), data, doc)
    res.path, res.name = entry.shown, entry.name
    if res.status == "unchanged":
        res.note = "same content as the current version; nothing to do"
    _note_same_document(batch, res)
    batch.by_content[digest] = res
    return res


def _duplicate(ws: Workspace, batch: _Batch, doc_id: str, digest: str) -> FileResult | None:
    """A file whose bytes were ingested earlier in this run, or are the current version of
    *another* document, is not stored a second time: all its pairs would be duplicates. The
    same bytes under the same document id are 'unchanged' instead (store_version says so)."""
    earlier = batch.by_content.get(digest)
    if earlier is not None:
        where = f"{earlier.name} earlier in this upload"
        if earlier.doc_id != doc_id:
            where += f" (document {earlier.doc_id})"
        return FileResult(
            path="",
            doc_id=earlier.doc_id,
            status="duplicate",
            duplicate_of=earlier.doc_id,
            title=earlier.title,
            note=f"same content as {where}; not stored twice",
        )
    rows = ws.db.execute(
        "SELECT doc_id, title, filename FROM versions WHERE version=? AND status='current'"
        " ORDER BY ingested_at",
        (digest,),
    ).fetchall()
    if not rows or any(r["doc_id"] == doc_id for r in rows):
        return None
    row = rows[0]
    return FileResult(
        path="",
        doc_id=row["doc_id"],
        status="duplicate",
        duplicate_of=row["doc_id"],
        title=row["title"],
        note=(
            f"same content as document {row['doc_id']} (uploaded as {row['filename']}); not stored "
            f"twice. To replace {row['doc_id']}, upload the new version under its name."
        ),
    )


def _note_same_document(batch: _Batch, res: FileResult) -> None:
    """Two different files of one run with the same document id (the same name, or names with
    the same slug): the later one becomes the current version; both results say so."""
    earlier = batch.by_doc.get(res.doc_id)
    batch.by_doc[res.doc_id] = res
    if earlier is None:
        return
    earlier.warnings.append(f"superseded in this upload by {res.name} (same document {res.doc_id})")
    res.warnings.append(
        f"{earlier.name} in this upload is the same document ({res.doc_id}); this file is now "
        "its current version and the earlier one is kept as superseded"
    )


def _progress_fn() -> Callable[[Iterable[Any], int, str], Iterable[Any]]:
    from tqdm import tqdm

    def bar(it: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
        return tqdm(it, total=total, desc=desc, unit="item", leave=False, dynamic_ncols=True)

    return bar
