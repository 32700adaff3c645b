"""The data the task families share: what goes in (a section), how they are configured, what
comes out (records and rejects), and the candidate pair every family produces.

A family turns a `FamilyContext` (one section, or one chunk of a long section) into `Candidate`s;
`sopforge.ingest.tasks.generate_section_pairs` validates every candidate and keeps only the good
ones as dataset records.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from sopforge.contracts import ContractRegistry
from sopforge.ingest.document import Document, Section
from sopforge.ingest.tasks.material import Material
from sopforge.ingest.tasks.text import is_generic_title, title_phrase
from sopforge.records import make_record

TASK_FAMILIES = ("qa", "steps", "summary", "json", "scenario", "open_book")


@dataclass(frozen=True)
class SectionInput:
    """One section of one document version, as the task generators see it."""

    doc_id: str
    doc_title: str
    version: str
    section_id: str
    section_title: str
    path: tuple[str, ...]
    section: Section
    body: str  # Markdown of the section's own blocks (children excluded)
    content_hash: str
    span: tuple[int, int]  # character range of the section in Document.render()

    @property
    def body_start(self) -> int:
        """Offset of `body` inside the rendered document (after the heading line)."""
        return self.span[1] - len(self.body)


def section_inputs(doc: Document, version: str) -> list[SectionInput]:
    """Every section of `doc` (one version) as a SectionInput, spans pointing into render()."""
    out = []
    for ref in doc.section_refs():
        out.append(
            SectionInput(
                doc_id=doc.doc_id,
                doc_title=doc.title,
                version=version,
                section_id=ref.section_id,
                section_title=ref.path[-1],
                path=ref.path,
                section=ref.section,
                body=ref.section.body(),
                content_hash=ref.content_hash,
                span=(ref.start, ref.end),
            )
        )
    return out


@dataclass(frozen=True)
class TeacherConfig:
    """A stronger model that writes pairs: any OpenAI-compatible endpoint, or a local HF model."""

    backend: Literal["openai", "hf"] = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"  # OpenAI-compatible server (vLLM, Ollama, ...)
    model: str = ""  # model name on the server, or a local HF model folder for "hf"
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (not the key)
    temperature: float = 0.7
    max_retries: int = 2  # follow-up requests carrying the validation errors
    timeout: float = 120.0  # seconds per request
    pairs_per_task: int = 3  # pairs asked for per task family and contract
    max_new_tokens: int = 1024  # generation budget for the local backend (the serving engine)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"teacher.max_retries must be >= 0, got {self.max_retries}")
        if self.pairs_per_task < 1:
            raise ValueError(f"teacher.pairs_per_task must be >= 1, got {self.pairs_per_task}")


@dataclass(frozen=True)
class TaskConfig:
    """How pairs are generated from each section (the `tasks:` section of the ingest config)."""

    tasks: list[str] = field(default_factory=lambda: list(TASK_FAMILIES))
    phrasings_per_task: int = 3  # instruction phrasings per question/answer, drawn per section
    summary_bullets: list[int] = field(default_factory=lambda: [3, 5])  # used when enough material
    json_schema: str = "procedure"  # the json task's contract is json:<json_schema>
    generator: Literal["extractive", "teacher"] = "extractive"
    seed: int = 0
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    max_questions: int = 5  # qa / open_book questions per section (or chunk)
    chunk_max_tokens: int = 320  # longer sections run qa/summary/open_book per chunk
    tokenizer: str | None = None  # tokenizer.json (or its folder) for token counts
    max_answer_tokens: int = 600  # longer answers are rejected (training max length ~1024)
    min_section_words: int = 8  # sections with fewer words produce nothing

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASK_FAMILIES]
        if unknown:
            raise ValueError(
                f"tasks: unknown task(s) {unknown}; choose from {', '.join(TASK_FAMILIES)}"
            )
        bad = [n for n in self.summary_bullets if not 1 <= n <= 50]
        if bad:
            raise ValueError(f"summary_bullets: counts must be 1..50, got {bad}")
        if self.phrasings_per_task < 1:
            raise ValueError("phrasings_per_task must be >= 1")
        if self.chunk_max_tokens < 16:
            raise ValueError("chunk_max_tokens must be >= 16")


@dataclass(frozen=True)
class Reject:
    """A candidate that failed its contract (or the faithfulness check) and was not written."""

    task: str
    contract: str
    reason: str


@dataclass
class GenerationResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def extend(self, other: GenerationResult) -> None:
        self.records.extend(other.records)
        self.rejects.extend(other.rejects)


@dataclass(frozen=True)
class Candidate:
    """A generated pair before validation. `user` already carries the format hint."""

    task: str
    contract: str
    user: str
    answer: str
    span: tuple[int, int]


@dataclass
class FamilyContext:
    """What a family sees: the section, the material it works from (the whole section or one
    chunk of it), the config, the contracts, and the span that material covers."""

    section: SectionInput
    material: Material
    cfg: TaskConfig
    registry: ContractRegistry
    span: tuple[int, int]
    text: str = ""  # the Markdown this context covers: the section body or one chunk of it
    part: tuple[int, int] | None = None  # (k, m): chunk k of m of a long section
    seen: set[tuple[str, str]] = field(default_factory=set)  # question keys used by earlier chunks

    def rng(self, *keys: object) -> random.Random:
        """A random stream fixed by (seed, section content, keys): reruns give the same pairs."""
        text = "\0".join(map(str, (self.cfg.seed, self.section.content_hash, *keys)))
        return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))

    @property
    def topic(self) -> str:
        """How instructions name the section: its title, qualified by the document when vague."""
        title = title_phrase(self.section.section_title)
        doc = title_phrase(self.section.doc_title)
        if is_generic_title(self.section.section_title) and doc.lower() != title.lower():
            title = f"the {title[:1].lower() + title[1:]} of {self.section.doc_title.strip()}"
        return title

    @property
    def part_topic(self) -> str:
        """The topic naming which part of a long section a chunk is (summaries of chunks)."""
        if self.part and self.part[1] > 1:
            return f"{self.topic} (part {self.part[0]} of {self.part[1]})"
        return self.topic

    def user(self, instruction: str, contract: str) -> str:
        """The user message: the instruction, then the contract's format hint where it has one."""
        hint = self.registry.get(contract).prompt_hint()
        return f"{instruction} {hint}" if hint else instruction

    def candidate(self, task: str, contract: str, instruction: str, answer: str) -> Candidate:
        return Candidate(
            task=task,
            contract=contract,
            user=self.user(instruction, contract),
            answer=answer,
            span=self.span,
        )


def draw(rng: random.Random, phrasings: list[str], k: int) -> list[str]:
    """k distinct phrasings (all of them when there are fewer)."""
    return rng.sample(phrasings, min(k, len(phrasings)))


NUMBER_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}


def provenance(section: SectionInput, span: tuple[int, int]) -> dict[str, Any]:
    return {
        "doc_id": section.doc_id,
        "version": section.version,
        "section_id": section.section_id,
        "section_title": section.section_title,
        "content_hash": section.content_hash,
        "span": [span[0], span[1]],
    }


def to_record(section: SectionInput, cand: Candidate, generator: str) -> dict[str, Any]:
    return make_record(
        cand.user,
        cand.answer,
        task=cand.task,
        contract=cand.contract,
        generator=generator,
        provenance=provenance(section, cand.span),
    )
