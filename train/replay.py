"""General-instruction replay: the base model's own answers to general prompts.

Mixing a few of these into every training set keeps the adapter from drifting away from what the
base model already did well (a cheap guard against forgetting: self-distillation on general data).
The prompts live in configs/train/general_instructions.jsonl; `split: eval` ones are held out for
the evaluation's general-ability check. Answers are generated once per base model and cached in
<workspace>/cache/replay/.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sopforge.errors import UserError
from sopforge.records import make_record
from sopforge.workspace import Workspace, atomic_write_text

log = logging.getLogger(__name__)


class ReplayError(UserError):
    pass


@dataclass(frozen=True)
class GeneralPrompt:
    id: str
    prompt: str
    split: str  # train | eval
    expect: tuple[str, ...] = ()  # any-of keywords a correct answer contains (eval only)


def read_instructions(path: Path) -> list[GeneralPrompt]:
    if not path.is_file():
        raise ReplayError(f"general instructions file {path} not found (replay.instructions)")
    items: list[GeneralPrompt] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            item = GeneralPrompt(
                str(d["id"]),
                str(d["prompt"]),
                str(d.get("split", "train")),
                tuple(d.get("expect", ())),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ReplayError(
                f"{path}:{lineno}: expected {{'id', 'prompt', 'split'?, 'expect'?}} ({e})"
            ) from e
        if item.split not in ("train", "eval"):
            raise ReplayError(f"{path}:{lineno}: split must be 'train' or 'eval'")
        items.append(item)
    return items


def model_fingerprint(model_dir: Path) -> str:
    """Identity of a base model folder without hashing gigabytes: names, sizes, mtimes."""
    h = hashlib.sha256(str(model_dir.resolve()).encode())
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_path(
    workspace: Workspace, model_dir: Path, instructions: Path, max_new_tokens: int
) -> Path:
    key = hashlib.sha256(
        f"{model_fingerprint(model_dir)}|{max_new_tokens}|".encode() + instructions.read_bytes()
    ).hexdigest()[:16]
    return workspace.path("cache", "replay", f"{key}.jsonl")


def base_answers(
    workspace: Workspace, model_dir: Path, instructions: Path, max_new_tokens: int
) -> list[dict[str, Any]]:
    """[{id, prompt, split, expect, answer}] for every general prompt, generated once and cached.

    Asked as a plain user turn, so the base model answers under its own default system prompt:
    the reference of what it does without sopforge.
    """
    path = cache_path(workspace, model_dir, instructions, max_new_tokens)
    if path.is_file():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    from sopforge.train.generate import engine_answers, plain_items

    items = read_instructions(instructions)
    log.info("generating base-model replay answers for %d general prompts (cached)", len(items))
    # the serving engine, raw (no grammar, no loop sampler): what the base model itself says
    answers = engine_answers(
        model_dir,
        None,
        plain_items([[{"role": "user", "content": it.prompt}] for it in items], max_new_tokens),
        guard=False,
        desc="replay answers",
    )
    rows = [
        {
            "id": it.id,
            "prompt": it.prompt,
            "split": it.split,
            "expect": list(it.expect),
            "answer": a,
        }
        for it, a in zip(items, answers, strict=True)
    ]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def replay_records(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to `n` training records (task 'replay') from the train split, in file order.

    The training record carries sopforge's system prompt (what the served assistant sees), so the
    model learns that general questions under that prompt still get its general answers.
    """
    out = []
    for row in rows:
        if len(out) >= n:
            break
        if row["split"] != "train" or not row["answer"].strip():
            continue
        out.append(
            make_record(
                row["prompt"],
                row["answer"],
                task="replay",
                contract="plain",
                generator="replay",
                provenance={"source": "general_instructions", "id": row["id"]},
            )
        )
    return out


def replay_count(n_train: int, ratio: float) -> int:
    return int(round(n_train * ratio))
