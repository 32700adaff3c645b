"""Benchmark: ingest the whole shared corpus; compare with bare pypdf text extraction in one run.

    python bench/ingest/run.py [--corpus ../shared/corpus] [--repeat 3]

Prints pages/s of bare `pypdf` `page.extract_text()` over the corpus PDFs, of sopforge's PDF reader
(structure recovery included) and of the full `sopforge ingest` of the same PDFs (read, version,
generate and validate pairs, write the dataset), and each one's time ratio to bare pypdf.
Every timing is the best of --repeat runs (the machine is noisy), each ingest into a new workspace.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from pypdf import PdfReader

from sopforge.ingest.pipeline import IngestConfig, ingest_paths
from sopforge.ingest.readers import read_document
from sopforge.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def bare_pypdf(pdfs: list[Path]) -> tuple[float, int, int]:
    t = time.perf_counter()
    pages = chars = 0
    for p in pdfs:
        reader = PdfReader(p)
        if reader.is_encrypted:
            reader.decrypt("")
        for page in reader.pages:
            chars += len(page.extract_text() or "")
            pages += 1
    return time.perf_counter() - t, pages, chars


def sopforge_read(pdfs: list[Path]) -> tuple[float, int]:
    t = time.perf_counter()
    sections = 0
    for p in pdfs:
        sections += len(read_document(p).section_refs())
    return time.perf_counter() - t, sections


def sopforge_ingest(paths: list[Path]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        report = ingest_paths(Workspace(d), paths, IngestConfig())
        return time.perf_counter() - t, report.card["counts"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()
    pdfs = sorted((args.corpus / "pdf").glob("*.pdf"))
    bare = min((bare_pypdf(pdfs) for _ in range(args.repeat)), key=lambda r: r[0])
    read = min((sopforge_read(pdfs) for _ in range(args.repeat)), key=lambda r: r[0])
    ing = min((sopforge_ingest(pdfs) for _ in range(args.repeat)), key=lambda r: r[0])
    whole = min(
        (sopforge_ingest([args.corpus / "md", args.corpus / "pdf"]) for _ in range(args.repeat)),
        key=lambda r: r[0],
    )
    pages = bare[1]
    rows = [
        ("bare pypdf extract_text", bare[0]),
        ("sopforge read (structure)", read[0]),
        ("sopforge ingest (PDFs, pairs+dataset)", ing[0]),
    ]
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
    )
    print(f"corpus: {len(pdfs)} PDFs, {pages} pages, {bare[2]} characters")
    print(f"{'':40s} {'seconds':>8s} {'pages/s':>8s} {'ratio':>6s}")
    for name, secs in rows:
        print(f"{name:40s} {secs:8.2f} {pages / secs:8.1f} {secs / bare[0]:6.2f}x")
    print(
        f"whole corpus ingest (md + pdf): {whole[0]:.2f} s, {whole[1]['train']} train + {whole[1]['eval']} eval pairs"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "pages": pages,
                    "bare_s": bare[0],
                    "read_s": read[0],
                    "ingest_pdf_s": ing[0],
                    "whole_s": whole[0],
                    "read_ratio": read[0] / bare[0],
                    "ingest_ratio": ing[0] / bare[0],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
