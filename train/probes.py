"""Stale-procedure probes: after a procedure changes, does the model give the new answer, not the old?

For every section recorded as *changed* between a document's superseded and current version, the
sentences that changed are paired up (old sentence ↔ new sentence, by similarity). For each pair:

- the facts that differ are the content tokens only in the new sentence (``new_facts``, e.g. "1000",
  "director") and only in the old one (``old_facts``, e.g. "500", "manager");
- the question is one the dataset already asks about the new section whose reference answer states
  the new sentence (so the model was taught to answer it), or, if there is none, a question that
  quotes the sentence's unchanged opening. An `open_book` record is preferred: it is asked with
  its sources in the prompt, as the chat asks (retrieved sections of the current versions), so the
  probe fails a model that repeats the old fact it memorised while the new procedure is in front
  of it; a closed-book `qa` record is the fallback.

A probe passes when the model's answer contains every new fact and none of the old ones.
Pure functions on plain data; `probes_from_workspace` is the one place that reads the DB.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sopforge.records import question_of

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9.,%$£€/-]*[a-z0-9%]|[a-z0-9]")
_STOP = frozenset(
    "a an the and or but if then of to in on at by for with from as is are was were be been being this that "
    "these those it its your you we our they their he she his her them us i me my will would can could may "
    "might must shall should do does did not no yes so such than too very there here who whom which what when "
    "where why how all any each every both either neither one more most other some into over under about".split()
)


@dataclass(frozen=True)
class Probe:
    doc_id: str
    section_id: str
    old_version: str
    new_version: str
    question: str
    new_sentence: str
    old_sentence: str
    new_facts: tuple[str, ...]
    old_facts: tuple[str, ...]
    messages: tuple[tuple[str, str], ...] = field(default=())  # the prompt (role, content) to ask

    def prompt(self) -> list[dict[str, str]]:
        if self.messages:
            return [{"role": r, "content": c} for r, c in self.messages]
        return [{"role": "user", "content": self.question}]


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    answer: str
    has_new: bool
    has_old: bool

    @property
    def passed(self) -> bool:
        return self.has_new and not self.has_old

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.probe)
        d.update(answer=self.answer, has_new=self.has_new, has_old=self.has_old, passed=self.passed)
        return d


def sentences(text: str) -> list[str]:
    text = re.sub(r"^\s*(?:[-*]|\d+[.)])\s+", "", text, flags=re.MULTILINE)  # list markers
    return [s.strip() for s in _SENT.split(text) if len(s.strip()) > 3]


def tokens(text: str) -> list[str]:
    return [t.rstrip(".,") for t in _TOKEN.findall(text.lower())]


def content_tokens(text: str) -> set[str]:
    return {t for t in tokens(text) if t not in _STOP}


def changed_sentence_pairs(
    old_body: str, new_body: str, min_ratio: float = 0.4
) -> list[tuple[str, str]]:
    """(old, new) sentence pairs that were edited (not purely added or removed)."""
    old_s, new_s = sentences(old_body), sentences(new_body)
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old_s, b=new_s, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "replace":
            continue
        for n in new_s[j1:j2]:
            best = max(old_s[i1:i2], key=lambda o: difflib.SequenceMatcher(a=o, b=n).ratio())
            if difflib.SequenceMatcher(a=best, b=n).ratio() >= min_ratio:
                out.append((best, n))
    return out


def fact_difference(
    old_sentence: str, new_sentence: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    new_c, old_c = content_tokens(new_sentence), content_tokens(old_sentence)
    return tuple(sorted(new_c - old_c)), tuple(sorted(old_c - new_c))


def contains_fact(answer: str, fact: str) -> bool:
    return fact in set(tokens(answer))


def _user_text(rec: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(rec["messages"]) if m["role"] == "user")


def _question(rec: dict[str, Any]) -> str:
    return question_of(_user_text(rec))


def _overlap(question: str, sentence: str) -> int:
    return len(content_tokens(question) & content_tokens(sentence))


def fallback_question(section_title: str, new_sentence: str, new_facts: Sequence[str]) -> str:
    """A question quoting the sentence's opening up to (not including) the first changed word."""
    words = new_sentence.split()
    opening: list[str] = []
    for w in words:
        if content_tokens(w) & set(new_facts):
            break
        opening.append(w)
    opening = opening[:12] or words[:3]
    return f'In the procedure "{section_title}", what is the rule that starts "{" ".join(opening)} ..."?'


def build_probes(
    *,
    doc_id: str,
    section_id: str,
    section_title: str,
    old_version: str,
    new_version: str,
    old_body: str,
    new_body: str,
    qa_records: Iterable[dict[str, Any]] = (),
) -> list[Probe]:
    """Probes for one changed section. `qa_records`: the dataset's records of the new section."""
    qa = [r for r in qa_records if r.get("task") in ("qa", "open_book")]
    probes: list[Probe] = []
    for old_s, new_s in changed_sentence_pairs(old_body, new_body):
        new_f, old_f = fact_difference(old_s, new_s)
        if not new_f:  # only words removed: nothing new the model must say
            continue
        teaching = [
            r for r in qa if all(contains_fact(r["messages"][-1]["content"], f) for f in new_f)
        ]
        # Asked the way the chat asks: an open-book record (the current section in the prompt)
        # when there is one, so the probe catches a model that repeats what it memorised from
        # the old version over what the procedure in front of it says. Never a question that
        # already states a new fact ("... has taken more than four hours, what do I do?"): echoing
        # it would pass. Among the rest, the question closest to the changed sentence ("What
        # happens if it's something less severe?" over "How long does out of hours alerts take?").
        # If every question gives the answer away, the fallback question is asked.
        askable = [r for r in teaching if not any(contains_fact(_question(r), f) for f in new_f)]
        rec = max(
            askable,
            key=lambda r: (r.get("task") == "open_book", _overlap(_question(r), new_s)),
            default=None,
        )
        if rec is not None:
            question = _user_text(rec)
            messages = tuple((m["role"], m["content"]) for m in rec["messages"][:-1])
        else:
            question = fallback_question(section_title, new_s, new_f)
            messages = ()
        probes.append(
            Probe(
                doc_id,
                section_id,
                old_version,
                new_version,
                question,
                new_s,
                old_s,
                new_f,
                old_f,
                messages,
            )
        )
    return probes


def check(probe: Probe, answer: str) -> ProbeResult:
    return ProbeResult(
        probe,
        answer,
        has_new=all(contains_fact(answer, f) for f in probe.new_facts),
        has_old=any(contains_fact(answer, f) for f in probe.old_facts),
    )


def run_probes(
    probes: Sequence[Probe], generate: Callable[[list[list[dict[str, str]]]], list[str]]
) -> list[ProbeResult]:
    """Ask every probe through `generate` (a batch of chat prompts -> answers) and check them."""
    answers = generate([p.prompt() for p in probes]) if probes else []
    return [check(p, a) for p, a in zip(probes, answers, strict=True)]


def summary(results: Sequence[ProbeResult]) -> dict[str, Any]:
    n = len(results)
    passed = sum(r.passed for r in results)
    return {
        "probes": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "gave_old_answer": sum(r.has_old for r in results),
        "results": [r.to_dict() for r in results],
    }


def probes_from_workspace(ws: Any, dataset_dir: Any | None = None) -> list[Probe]:
    """Probes for every section changed in the latest update of each document still current."""
    from pathlib import Path

    from sopforge.train.data import current_changes

    rows = current_changes(ws, ("changed",))
    records: list[dict[str, Any]] = []
    if dataset_dir is not None:
        for split in ("train", "eval"):
            f = Path(dataset_dir) / f"{split}.jsonl"
            if f.exists():
                records += [
                    json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line
                ]

    def body(doc_id: str, version: str, section_id: str) -> tuple[str, str]:
        r = ws.db.execute(
            "SELECT title, body FROM sections WHERE doc_id=? AND version=? AND section_id=?",
            (doc_id, version, section_id),
        ).fetchone()
        return (r["title"], r["body"]) if r else ("", "")

    probes: list[Probe] = []
    seen: set[tuple[str, str]] = set()
    for r in reversed(rows):  # newest change of a section wins
        key = (r["doc_id"], r["section_id"])
        if key in seen:
            continue
        seen.add(key)
        title, new_body = body(r["doc_id"], r["new_version"], r["section_id"])
        _, old_body = body(r["doc_id"], r["old_version"], r["section_id"])
        mine = [
            rec
            for rec in records
            if rec["provenance"].get("doc_id") == r["doc_id"]
            and rec["provenance"].get("section_id") == r["section_id"]
        ]
        probes += build_probes(
            doc_id=r["doc_id"],
            section_id=r["section_id"],
            section_title=title,
            old_version=r["old_version"],
            new_version=r["new_version"],
            old_body=old_body,
            new_body=new_body,
            qa_records=mine,
        )
    return probes
