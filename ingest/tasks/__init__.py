"""Task families: turn a section into validated instruction/answer records.

    from sopforge.ingest.tasks import TaskConfig, generate_section_pairs, section_inputs
    for section in section_inputs(document, version):
        result = generate_section_pairs(section, registry=registry, cfg=TaskConfig())
        # result.records: dataset records; result.rejects: what failed validation, and why

Families (one module each): qa, steps, summary, json (json_task), scenario, open_book.
Generators: extractive (default; deterministic, offline) and teacher (teacher.py).
"""

from sopforge.ingest.tasks.base import (
    TASK_FAMILIES,
    GenerationResult,
    Reject,
    SectionInput,
    TaskConfig,
    TeacherConfig,
    section_inputs,
)
from sopforge.ingest.tasks.generate import generate_section_pairs

__all__ = [
    "TASK_FAMILIES",
    "GenerationResult",
    "Reject",
    "SectionInput",
    "TaskConfig",
    "TeacherConfig",
    "generate_section_pairs",
    "section_inputs",
]
