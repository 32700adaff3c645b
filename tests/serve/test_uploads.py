"""Admin uploads with hostile file names and hostile HTML.

Names: path traversal, absolute paths, NUL bytes, bidi overrides, combining marks, 300 characters,
emoji, markup. The document gets a safe id (or is refused, saying why), nothing is written outside
the workspace, and the report shows a clean name as text. HTML: scripts, styles and event handlers
never reach sections or pairs, and no stored original can be fetched from the server.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from sopforge.serve import admin
from sopforge.serve.auth import User
from sopforge.workspace import Workspace

ADMIN = User("ada", "admin")
DOC_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
BLOB = re.compile(r"^[0-9a-f]{64}(\.[a-z0-9]+)?$")


def procedure(topic: str) -> bytes:
    """A small valid Markdown procedure; distinct per topic (identical bytes are duplicates)."""
    return (
        f"# {topic} procedure\n\n## First steps\n\nCall the {topic} desk and report the "
        f"problem within one hour.\n\n## Follow up\n\n1. Fill in the {topic} form.\n"
        "2. Send it to your manager.\n3. Keep a copy.\n"
    ).encode()


HOSTILE_NAMES = {
    "traversal": "../../../{tag}-outside.md",
    "windows": "..\\..\\{tag}-win.md",
    "absolute": "/tmp/{tag}-absolute.md",
    "nul": "report\x00{tag}.md",
    "rtl": "invoice-{tag}\u202efdp.md",
    "combining": "proce\u0301dure-{tag}-z\u0335\u0321\u0327.md",
    "long": "{tag}-" + "very long procedure name " * 12 + ".md",
    "emoji": "🚀 launch {tag}.md",
    "emoji-only": "🚀🎉.md",
    "html": "<img src=x onerror=alert(1)> {tag}.md",
}


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def visible(text: str) -> bool:
    """No path separators, controls or invisible format characters (bidi overrides)."""
    return not (set(text) & {"/", "\\"}) and not any(
        unicodedata.category(c) in ("Cc", "Cf") for c in text
    )


def test_hostile_names_get_safe_ids_and_nothing_leaves_the_workspace(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    ws = Workspace(tmp_path / "root" / "ws")
    before = files_under(tmp_path)
    uploads = [
        (pattern.format(tag=tag), procedure(kind)) for kind, pattern in HOSTILE_NAMES.items()
    ]
    report = admin.ingest_uploads(ADMIN, ws, uploads)

    assert [f.status for f in report.files] == ["new"] * len(uploads), [
        (f.name, f.error) for f in report.files
    ]
    doc_ids = [f.doc_id for f in report.files]
    assert len(set(doc_ids)) == len(doc_ids) and all(DOC_ID.match(d) for d in doc_ids)
    assert doc_ids[:2] == [f"{tag}-outside", f"{tag}-win"]
    for f in report.files:
        assert visible(f.name) and len(f.name) <= 160 and not f.name.startswith(".")
    # Nothing outside the workspace; inside it, originals only under content-addressed names.
    assert {p for p in files_under(tmp_path) - before if ws.root not in p.parents} == set()
    assert all(BLOB.match(p.name) for p in (ws.root / "docs").iterdir())
    for pattern in ("{tag}-outside.md", "{tag}-win.md", "{tag}-absolute.md"):
        name = pattern.format(tag=tag)
        for folder in (Path("/tmp"), Path("/"), tmp_path, tmp_path / "root", Path.cwd()):
            assert not (folder / name).exists()
    stored = ws.db.execute("SELECT doc_id, filename FROM versions").fetchall()
    assert {r["doc_id"] for r in stored} == set(doc_ids)
    assert all(visible(r["filename"]) for r in stored)
    # The report the admin tab shows: the cleaned names, as text cells.
    rows = admin.report_rows(report)
    assert [r[0] for r in rows] == [f.name for f in report.files]
    assert rows[-1][0] == f"<img src=x onerror=alert(1)> {tag}.md"  # shown literally, as text
    assert "<" not in admin.report_summary(report)  # the Markdown line holds counts only


@pytest.mark.parametrize("name", ["../", "..", "\x00", "/", "\u202e\u200b", "  ..  "])
def test_names_with_nothing_usable_are_refused_with_a_clear_message(
    tmp_path: Path, name: str
) -> None:
    ws = Workspace(tmp_path / "ws")
    report = admin.ingest_uploads(ADMIN, ws, [(name, procedure("badge")), ("ok.md", b"# Ok\n\nok")])
    refused, ok = report.files
    assert (refused.status, refused.error_code) == ("error", "bad_name")
    assert "rename the file" in refused.error
    # Shown as sent (to tell which file it was), with invisible characters as escapes.
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in refused.name)
    assert ok.status == "new"  # the rest of the upload goes on
    assert ws.db.execute("SELECT count(*) FROM versions").fetchone()[0] == 1


def test_gradio_temp_files_are_read_under_their_original_name(tmp_path: Path) -> None:
    """The UI hands over Gradio's temp files (<upload dir>/<hash>/<name>); the document is named
    after the file, and the temp path is recorded nowhere."""
    temp = tmp_path / "gradio" / "0a1b2c" / "Lost Badge (v2).md"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(procedure("badge"))
    ws = Workspace(tmp_path / "ws")
    report = admin.ingest_uploads(ADMIN, ws, [temp])
    assert [(f.doc_id, f.path, f.status) for f in report.files] == [
        ("lost-badge-v2", "Lost Badge (v2).md", "new")
    ]
    assert "0a1b2c" not in json.dumps(report.to_dict())
    rows = ws.db.execute("SELECT filename, blob FROM versions").fetchall()
    assert [r["filename"] for r in rows] == ["Lost Badge (v2).md"]
    assert (ws.root / "docs" / rows[0]["blob"]).read_bytes() == temp.read_bytes()


def test_duplicates_are_reported_in_the_admin_table(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    admin.ingest_uploads(ADMIN, ws, [("badge.md", procedure("badge"))])
    report = admin.ingest_uploads(
        ADMIN,
        ws,
        [("badge.md", procedure("badge")), ("badge copy.md", procedure("badge"))],
    )
    rows = admin.report_rows(report)
    assert [r[:2] for r in rows] == [
        ["badge.md", "unchanged"],
        ["badge copy.md", "duplicate of badge"],
    ]
    assert "nothing to do" in rows[0][-1] and "same content" in rows[1][-1]
    assert "1 unchanged, 1 duplicate" in admin.report_summary(report)


# ---- through the running server ------------------------------------------------------------


def login(server: Any, name: str) -> httpx.Client:
    c = httpx.Client(base_url=server.url, timeout=60)
    r = c.post("/login", data={"username": name, "password": server.passwords[name]})
    assert r.status_code == 303
    return c


def test_admin_api_upload_with_traversal_names(live_server: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"../../../{tag}-api.md", f"..\\..\\{tag}-api-win.md", f"/tmp/{tag}-api-abs.md", "../"]
    files = [("files", (n, procedure(f"topic{i}"), "text/markdown")) for i, n in enumerate(names)]
    r = httpx.post(
        f"{live_server.url}/admin/api/documents",
        files=files,
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    got = [(f["doc_id"], f["status"], f["name"]) for f in r.json()["files"]]
    assert got[:3] == [
        (f"{tag}-api", "new", f"{tag}-api.md"),
        (f"{tag}-api-win", "new", f"{tag}-api-win.md"),
        (f"{tag}-api-abs", "new", f"{tag}-api-abs.md"),
    ]
    assert got[3][1] == "error" and "rename the file" in r.json()["files"][3]["error"]
    for stem in ("api", "api-win", "api-abs"):
        for folder in (Path("/tmp"), Path("/"), Path.cwd(), live_server.ws.root.parent):
            assert not (folder / f"{tag}-{stem}.md").exists()


def gradio_handler(server: Any, name: str) -> Any:
    ui = server.app.state.sopforge_ui
    return next(fn.fn for fn in ui.fns.values() if fn.fn is not None and fn.fn.__name__ == name)


class FakeRequest:
    def __init__(self, username: str):
        self.username = username


def test_ui_upload_with_a_traversal_name_then_ingest(live_server: Any) -> None:
    """Gradio's /upload keeps the file in its own temp folder under the base name; the admin
    tab's Ingest names the document after it, then removes the temp copy."""
    from gradio.utils import get_upload_folder

    tag = uuid.uuid4().hex[:8]
    boss = login(live_server, "ada")
    r = boss.post(
        "/ui/gradio_api/upload",
        files={"files": (f"../../../{tag}-ui.md", procedure("laptop"), "text/markdown")},
    )
    assert r.status_code == 200, r.text
    (temp,) = [Path(p) for p in r.json()]
    assert temp.name == f"{tag}-ui.md" and temp.resolve().is_relative_to(get_upload_folder())
    assert not (Path(get_upload_folder()).parent / f"{tag}-ui.md").exists()
    # Until ingested, Gradio serves the upload back to the signed-in admin (as a download)...
    served = boss.get(f"/ui/gradio_api/file={temp}")
    assert served.status_code == 200 and "attachment" in served.headers["content-disposition"]

    summary, rows, cleared = gradio_handler(live_server, "do_ingest")(
        [str(temp)], request=FakeRequest("ada")
    )
    assert rows[0][:2] == [f"{tag}-ui.md", "new"] and cleared is None
    assert "1 file(s), 0 error(s)" in summary
    assert live_server.ws.db.execute(
        "SELECT count(*) FROM versions WHERE doc_id=?", (f"{tag}-ui",)
    ).fetchone()[0]
    # ... afterwards its copy is gone: the original lives only in the workspace.
    assert not temp.exists()
    assert boss.get(f"/ui/gradio_api/file={temp}").status_code in (403, 404)


HOSTILE_HTML = b"""<!doctype html>
<html><head><title>Visitor Policy</title>
<style>.SECRET_STYLE_MARKER { color: red } body { display: none }</style>
<script>window.SECRET_SCRIPT_MARKER = document.cookie; fetch('/admin/api/rollback')</script>
<script src="https://evil.example/SECRET_SRC_MARKER.js"></script>
</head>
<body onload="SECRET_ONLOAD_MARKER()">
<h1 onclick="SECRET_ONCLICK_MARKER()">Visitor Policy</h1>
<h2>Signing in</h2>
<p onmouseover="SECRET_HOVER_MARKER()">Every visitor signs in at the reception desk and wears a
visitor badge at all times.</p>
<img src="x" onerror="SECRET_ONERROR_MARKER()" alt="">
<noscript>SECRET_NOSCRIPT_MARKER</noscript>
<h2>Escorts</h2>
<ol><li>Meet your visitor at reception.</li><li>Escort them in the building.</li>
<li>Return the visitor badge at the end of the visit.</li></ol>
<a href="javascript:SECRET_HREF_MARKER()">Contact security</a> if a visitor is alone.
<iframe src="javascript:SECRET_IFRAME_MARKER()"></iframe>
<template><p>SECRET_TEMPLATE_MARKER</p></template>
</body></html>"""

HOSTILE_MD = b"""# Parking Policy

<script>window.SECRET_MD_SCRIPT_MARKER = 1</script>
<style>.SECRET_MD_STYLE_MARKER {}</style>

## Permits

Staff display the parking permit on the dashboard at all times. Visitors park in the visitor bays.

<div onclick="SECRET_MD_ONCLICK_MARKER()">Report a blocked bay to the facilities desk.</div>
"""


def test_scripts_styles_and_handlers_never_reach_sections_or_pairs(live_server: Any) -> None:
    ws = live_server.ws
    report = admin.ingest_uploads(
        ADMIN, ws, [("visitor-policy.html", HOSTILE_HTML), ("parking.md", HOSTILE_MD)]
    )
    assert [f.status for f in report.files] == ["new", "new"], [f.error for f in report.files]
    pairs = [
        r[0]
        for r in ws.db.execute(
            "SELECT record FROM pairs WHERE doc_id IN ('visitor-policy', 'parking')"
        )
    ]
    sections = [
        r[0]
        for r in ws.db.execute(
            "SELECT title || ' ' || body FROM sections WHERE doc_id IN ('visitor-policy', 'parking')"
        )
    ]
    texts = [r[0] for r in ws.db.execute("SELECT title || ' ' || text FROM versions")]
    dataset = "".join(
        (Path(report.dataset_dir) / f"{s}.jsonl").read_text(encoding="utf-8")
        for s in ("train", "eval")
    )
    assert pairs and sections
    everything = "\n".join(pairs + sections + texts + [dataset])
    assert "reception desk" in everything and "parking permit" in everything
    assert "blocked bay" in everything  # text inside an element with a handler is kept
    for marker in ("SECRET_", "<script", "onerror", "onclick", "onload", "javascript:"):
        assert marker not in everything, marker


def test_stored_originals_are_not_served_as_files(live_server: Any) -> None:
    ws = live_server.ws
    report = admin.ingest_uploads(ADMIN, ws, [("visitor-policy.html", HOSTILE_HTML)])
    assert report.files[0].status in ("new", "unchanged")
    blob = ws.db.execute(
        "SELECT blob FROM versions WHERE doc_id='visitor-policy' AND status='current'"
    ).fetchone()[0]
    stored = ws.root / "docs" / blob
    assert stored.read_bytes() == HOSTILE_HTML
    relative = stored.relative_to(ws.root)
    targets = [str(stored), str(relative), f"docs/{blob}", str(stored.resolve())]
    paths = [
        f"{prefix}{route}{t}"
        for prefix in ("/ui", "")
        for route in ("/gradio_api/file=", "/file=")
        for t in targets
    ]
    paths += [f"/{relative}", f"/ui/{relative}", f"/ui/gradio_api/{relative}", f"/docs/{blob}"]
    boss = login(live_server, "ada")
    bearer = {"Authorization": f"Bearer {live_server.admin_key}"}
    for path in paths:
        for client, headers in ((boss, {}), (httpx.Client(base_url=live_server.url), bearer)):
            r = client.get(path, headers=headers)
            assert r.status_code in (401, 403, 404), (path, r.status_code)
            assert b"SECRET_SCRIPT_MARKER" not in r.content
        assert boss.get(path).status_code in (403, 404), path  # even for a signed-in admin
