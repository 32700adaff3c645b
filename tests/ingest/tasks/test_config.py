"""TaskConfig loads from YAML through the project's strict loader."""

from __future__ import annotations

import pytest

from sopforge.config import ConfigError, load_config
from sopforge.ingest.tasks import TASK_FAMILIES, TaskConfig


def test_defaults():
    cfg = TaskConfig()
    assert cfg.tasks == list(TASK_FAMILIES)
    assert cfg.phrasings_per_task == 3 and cfg.summary_bullets == [3, 5]
    assert cfg.json_schema == "procedure" and cfg.generator == "extractive" and cfg.seed == 0
    assert cfg.teacher.max_retries == 2


def test_yaml_with_nested_teacher_and_overrides(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "tasks: [qa, summary]\nsummary_bullets: [4]\ngenerator: teacher\n"
        "teacher:\n  base_url: http://127.0.0.1:9000/v1\n  model: qwen\n  temperature: 0.2\n"
    )
    cfg = load_config(TaskConfig, path, ["seed=5", "teacher.max_retries=1"])
    assert cfg.tasks == ["qa", "summary"] and cfg.summary_bullets == [4] and cfg.seed == 5
    assert cfg.teacher.model == "qwen" and cfg.teacher.temperature == 0.2
    assert cfg.teacher.max_retries == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tasks=[qa, essay]", "unknown task"),
        ("summary_bullets=[0]", "counts must be 1..50"),
        ("generator=magic", "must be one of"),
        ("teacher.colour=red", "unknown key"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TaskConfig, None, [override])
