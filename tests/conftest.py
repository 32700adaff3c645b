"""Shared fixtures: a tiny random Llama with a tiny chat tokenizer, and a tiny valid dataset.

Everything is built offline in a session temp folder, so training/serving tests run in seconds
without the hub. Heavy imports (torch, transformers) happen inside the fixtures: test modules that
never ask for them (e.g. ingest tests) don't pay for them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Before anything imports torch: idle OpenMP threads sleep instead of spinning. The suite runs on
# small shared CI machines beside other jobs, where spinning threads slow torch down 2-3x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# SmolLM2-Instruct's ChatML template (without its default system prompt), so tests exercise the
# same prompt shape the real model uses.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Small built-in text for the tokenizer: procedure-like English plus JSON punctuation.
_TOKENIZER_TEXT = """
You are the company's procedures assistant. Answer from the company's standard operating
procedures, and follow the requested answer format exactly.
Summarize the badge replacement procedure in 3 bullets. Answer with exactly 3 bullet points,
each line starting with '- '. Report the lost badge to security within one hour.
Request a replacement badge from the facilities desk. Collect the new badge with photo ID.
Give me the deployment checklist as JSON. Answer with one JSON object only (required keys:
title, purpose, roles, steps). {"title": "Deploy", "purpose": "Ship safely", "roles": ["engineer"],
"steps": [{"order": 1, "action": "Open a change request"}, {"order": 2, "action": "Run tests"}]}
Who approves an expense over 500 dollars? The department manager approves it within five days.
What do I do first when a laptop is stolen? Call the IT help desk and file a police report.
How do I reset my password? 1. Open the portal. 2. Click reset. 3. Follow the email link.
Use the procedure sources below to answer. Cite the source you used. Question: When is it due?
The quick brown fox jumps over the lazy dog. Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024.
Explain what photosynthesis is. Write a short poem about the sea. Translate hello to French.
"""


def build_tiny_tokenizer() -> Any:
    """A byte-level BPE (no unknown tokens) with ChatML specials, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TOKENIZER_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(vocab_size: int, tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a saved tiny random LlamaForCausalLM (2 layers, hidden 64) and its tokenizer."""
    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval) records with valid contracts: summary/bullets, json/procedure, qa/plain."""
    from sopforge.contracts import default_registry
    from sopforge.records import make_record

    registry = default_registry()

    def prov(doc: str, section: str, text: str) -> dict[str, Any]:
        return {
            "doc_id": doc,
            "version": "a" * 64,
            "section_id": f"{doc} > {section}",
            "section_title": section,
            "content_hash": "b" * 16,
            "span": [0, len(text)],
        }

    topics = [
        ("badge", "Lost badge", "Report the lost badge to security", "security"),
        ("expense", "Approval", "Get manager approval for expenses", "manager"),
        ("deploy", "Deployment", "Open a change request before deploying", "engineer"),
        ("laptop", "Stolen laptop", "Call the IT help desk at once", "employee"),
        ("password", "Password reset", "Reset the password in the portal", "employee"),
        ("travel", "Travel booking", "Book travel through the travel desk", "traveller"),
    ]
    out: list[dict[str, Any]] = []
    for doc, section, action, role in topics:
        p = prov(doc, section, action)
        bullets = registry.get("bullets:3")
        out.append(
            make_record(
                f"Summarize the {section.lower()} procedure in 3 bullets. {bullets.prompt_hint()}",
                f"- {action}.\n- Tell the {role} in charge.\n- Keep a written record.",
                task="summary",
                contract="bullets:3",
                generator="extractive",
                provenance=p,
            )
        )
        obj = {
            "title": section,
            "purpose": action,
            "roles": [role],
            "steps": [{"order": 1, "action": action}, {"order": 2, "action": "Keep a record"}],
        }
        out.append(
            make_record(
                f"Give me the {section.lower()} procedure as JSON. "
                + registry.get("json:procedure").prompt_hint(),
                json.dumps(obj),
                task="json",
                contract="json:procedure",
                generator="extractive",
                provenance=p,
            )
        )
        out.append(
            make_record(
                f"Who is involved in the {section.lower()} procedure?",
                f"The {role} is involved: {action.lower()}.",
                task="qa",
                contract="plain",
                generator="extractive",
                provenance=p,
            )
        )
    for rec in out:  # the fixture must only ever hold valid answers
        assert registry.get(rec["contract"]).is_valid(rec["messages"][-1]["content"])
    # Split by section (last two topics held out), as ingest does.
    held_out = {"travel", "password"}
    train = [r for r in out if r["provenance"]["doc_id"] not in held_out]
    evals = [r for r in out if r["provenance"]["doc_id"] in held_out]
    return train, evals


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder like ingest writes: train.jsonl, eval.jsonl, card.json."""
    out = tmp_path_factory.mktemp("tiny-dataset")
    train, evals = tiny_records()
    for name, recs in (("train.jsonl", train), ("eval.jsonl", evals)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    tasks: dict[str, int] = {}
    for r in train + evals:
        tasks[r["task"]] = tasks.get(r["task"], 0) + 1
    card = {"n_train": len(train), "n_eval": len(evals), "tasks": tasks}
    (out / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out


def pytest_configure(config: pytest.Config) -> None:
    # Declared in pyproject too; repeated here so the marker is known even when pytest is run
    # with another rootdir/ini (e.g. a single test file from an IDE). Deselect with
    # `-m "not integration"` for the fast loop.
    config.addinivalue_line(
        "markers", "integration: uses the real bundled model (slower; CI runs them too)"
    )
