"""The evaluation report: Markdown + self-contained HTML with plots, in runs/<id>/report/.

Files: report.md, report.html (plots embedded), loss.png, compliance.png, eval.json (the whole
summary), samples.jsonl (every eval answer of both models with its scores), general.jsonl.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from sopforge.workspace import atomic_write_bytes, atomic_write_text

METRICS = ("compliance", "rouge_l", "token_f1", "grounding", "citation_validity")


def read_losses(metrics_file: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train loss per step, eval loss per step) from a run's metrics.jsonl."""
    train, evals = [], []
    if metrics_file.is_file():
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if "loss" in row:
                train.append((int(row["step"]), float(row["loss"])))
            if "eval_loss" in row:
                evals.append((int(row["step"]), float(row["eval_loss"])))
    return train, evals


def _figure_png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def loss_plot(train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1.4)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o", label="eval loss", color="tab:red")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    data = _figure_png(fig)
    plt.close(fig)
    return data


def compliance_plot(summary: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contracts = sorted(summary["base"]["by_contract"])
    base = [summary["base"]["by_contract"][c]["compliance"] or 0 for c in contracts]
    tuned = [summary["tuned"]["by_contract"][c]["compliance"] or 0 for c in contracts]
    x = range(len(contracts))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(contracts) + 2), 3.4))
    ax.bar([i - 0.2 for i in x], base, width=0.4, label="base", color="tab:gray")
    ax.bar([i + 0.2 for i in x], tuned, width=0.4, label="tuned", color="tab:blue")
    ax.set_xticks(list(x), contracts, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("format compliance")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    data = _figure_png(fig)
    plt.close(fig)
    return data


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def metric_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = [["overall", "n", str(summary["base"]["overall"]["n"]), ""]]
    for m in METRICS:
        b, t = summary["base"]["overall"][m], summary["tuned"]["overall"][m]
        rows.append(["overall", m, _fmt(b), _fmt(t)])
    for c, s in summary["base"]["by_contract"].items():
        t = summary["tuned"]["by_contract"][c]
        rows.append([c, f"compliance (n={s['n']})", _fmt(s["compliance"]), _fmt(t["compliance"])])
        rows.append([c, "rouge_l", _fmt(s["rouge_l"]), _fmt(t["rouge_l"])])
    gb, gt = summary["base"].get("general") or {}, summary["tuned"].get("general") or {}
    if gb:
        for m in ("accuracy", "reference_nll", "rouge_l_to_reference"):
            rows.append(["general prompts", m, _fmt(gb.get(m)), _fmt(gt.get(m))])
    return rows


def decoding(summary: dict[str, Any]) -> str:
    """How the answers were decoded, as the report states it."""
    if summary.get("options", {}).get("loop_guard"):
        return (
            "decoded by the serving engine as the chat decodes (greedy, formats under their "
            "grammar, DRY loop sampler)"
        )
    return "raw greedy decoding by the serving engine (no grammars, no loop protection)"


def markdown(summary: dict[str, Any], samples: list[dict[str, Any]], n_samples: int = 6) -> str:
    lines = [
        f"# Evaluation of run {summary['run_id']}",
        "",
        f"Dataset `{summary['dataset_id']}`, {summary['n_eval']} held-out records; "
        f"{decoding(summary)}.",
        "",
        "**Verdict:** "
        + (
            "no regression vs the base model."
            if summary["passed"]
            else "regressions: " + "; ".join(summary["regressions"])
        ),
        "",
        "| group | metric | base | tuned |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(r)} |" for r in metric_rows(summary)]
    lines += [
        "",
        "Grounding = share of an answer's content words found in its source section; general "
        "accuracy = answers containing the known short answer; reference_nll = per-token NLL of "
        "the base model's own answers to the held-out general prompts (higher = more forgetting).",
        "",
        "![loss](loss.png)",
        "",
        "![compliance per contract](compliance.png)",
        "",
        "## Sample answers",
    ]
    for s in samples[:n_samples]:
        lines += [
            "",
            f"### {s['task']} · `{s['contract']}`",
            "",
            f"**Prompt:** {s['prompt'][:400]}",
            "",
            f"**Reference:** {s['reference'][:400]}",
            "",
            f"**Base** ({'valid' if s['base']['valid'] else 'invalid'}): {s['base']['answer'][:400]}",
            "",
            f"**Tuned** ({'valid' if s['tuned']['valid'] else 'invalid'}): "
            f"{s['tuned']['answer'][:400]}",
        ]
    return "\n".join(lines) + "\n"


def html_page(
    summary: dict[str, Any], samples: list[dict[str, Any]], plots: dict[str, bytes]
) -> str:
    e = html.escape
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in metric_rows(summary)
    )
    imgs = "".join(
        f'<figure><img alt="{e(k)}" src="data:image/png;base64,{base64.b64encode(v).decode()}">'
        f"<figcaption>{e(k)}</figcaption></figure>"
        for k, v in plots.items()
    )
    verdict = (
        "No regression vs the base model."
        if summary["passed"]
        else "Regressions: " + "; ".join(summary["regressions"])
    )
    sample_rows = "".join(
        f"<tr><td>{e(s['task'])}<br><code>{e(s['contract'])}</code></td>"
        f"<td>{e(s['prompt'][:600])}</td><td><pre>{e(s['reference'][:600])}</pre></td>"
        f"<td class='{'ok' if s['base']['valid'] else 'bad'}'><pre>{e(s['base']['answer'][:600])}</pre></td>"
        f"<td class='{'ok' if s['tuned']['valid'] else 'bad'}'><pre>{e(s['tuned']['answer'][:600])}</pre></td></tr>"
        for s in samples[:20]
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sopforge eval {e(summary["run_id"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
vertical-align:top}}pre{{white-space:pre-wrap;margin:0;font-size:12px}}.ok{{background:#eefbee}}
.bad{{background:#fdeeee}}figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>Evaluation of run {e(summary["run_id"])}</h1>
<p>Dataset <code>{e(summary["dataset_id"])}</code>, {summary["n_eval"]} held-out records; {e(decoding(summary))}.</p>
<p><b>Verdict:</b> {e(verdict)}</p>
<table><tr><th>group</th><th>metric</th><th>base</th><th>tuned</th></tr>{rows}</table>
{imgs}
<h2>Sample answers (green: format valid)</h2>
<table><tr><th>task</th><th>prompt</th><th>reference</th><th>base</th><th>tuned</th></tr>{sample_rows}</table>
</body></html>
"""


def write_report(
    out_dir: Path,
    summary: dict[str, Any],
    samples: list[dict[str, Any]],
    general_rows: list[dict[str, Any]],
    metrics_file: Path,
) -> Path:
    """Write every report file; returns the HTML report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train, evals = read_losses(metrics_file)
    plots = {"loss": loss_plot(train, evals), "compliance": compliance_plot(summary)}
    for name, data in plots.items():
        atomic_write_bytes(out_dir / f"{name}.png", data)
    atomic_write_text(out_dir / "eval.json", json.dumps(summary, indent=2))
    jsonl = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    atomic_write_text(out_dir / "samples.jsonl", jsonl)
    general = "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in general_rows)
    atomic_write_text(out_dir / "general.jsonl", general)
    atomic_write_text(out_dir / "report.md", markdown(summary, samples))
    atomic_write_text(out_dir / "report.html", html_page(summary, samples, plots))
    return out_dir / "report.html"
