"""The llama.cpp backend on the tiny model exported to GGUF: same prompt and same greedy text as the
transformers path, stop strings, prefix reuse, schema-constrained JSON, clear errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sopforge.contracts import Contract
from sopforge.serve.llamacpp import LlamaCppBackend, LlamaCppError, physical_cores, stop_at

CONVERSATION = [
    {"role": "system", "content": "You are the company's procedures assistant."},
    {"role": "user", "content": "Who approves an expense over 500 dollars?"},
    {"role": "assistant", "content": "The department manager approves it within five days."},
    {"role": "user", "content": "How do I reset my password?"},
]
QUESTION = [{"role": "user", "content": "Summarize the badge replacement procedure in 3 bullets."}]


def require_llama_cpp() -> None:
    """Skip when llama-cpp-python is missing (optional extra; .ci/run builds it and then requires it)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        if (
            os.environ.get("SOPFORGE_REQUIRE_LLAMACPP") == "1"
        ):  # set by .ci/run once it built llama.cpp
            raise
        pytest.skip("llama-cpp-python is not installed: pip install 'sopforge[llamacpp]'")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_llama_cpp()
    from sopforge.train.export_gguf import export_gguf

    out = tmp_path_factory.mktemp("serve-gguf") / "tiny.f16.gguf"
    return export_gguf(tiny_model_dir, None, out, dtype="f16")


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    """Raw greedy decoding (no loop guard), compared with transformers' generate()."""
    b = LlamaCppBackend(tiny_gguf, n_ctx=512, n_threads=1, loop_guard=False)
    yield b
    b.close()


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def hf_answer(hf: tuple[Any, Any], messages: list[dict[str, str]], n: int) -> str:
    """What the transformers backend answers: greedy, special tokens skipped."""
    import torch

    model, tokenizer = hf
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def test_prompt_is_the_transformers_chat_prompt(backend: LlamaCppBackend, hf) -> None:
    _, tokenizer = hf
    for messages in (CONVERSATION, QUESTION):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        assert backend.prompt_text(messages) == text
        assert backend.prompt_tokens(messages) == ids["input_ids"]


def test_greedy_answer_equals_transformers_streamed_or_not(backend: LlamaCppBackend, hf) -> None:
    for messages in (CONVERSATION, QUESTION):
        expected = hf_answer(hf, messages, 24)
        deltas = list(backend.generate(messages, max_new_tokens=24, stop=None, stream=True))
        assert len(deltas) > 1 and "".join(deltas) == expected
        whole = list(backend.generate(messages, max_new_tokens=24, stop=None, stream=False))
        assert whole == [expected]


def test_loop_guard_gives_the_transformers_backends_answer(tiny_gguf: Path, tiny_model_dir) -> None:
    """The random tiny model loops at once (a run of line breaks, then one word again and
    again): the guard turns each loop away, token for token as the local backend's guard does."""
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import LocalBackend, ModelSpec

    cfg = EngineConfig(dtype="float32", threads=1)
    local = LocalBackend(ModelSpec("tiny", str(tiny_model_dir)), cfg)
    guarded = LlamaCppBackend(tiny_gguf, n_ctx=512, n_threads=1)
    raw = LlamaCppBackend(tiny_gguf, n_ctx=512, n_threads=1, loop_guard=False)
    try:
        for messages in (CONVERSATION, QUESTION):
            expected = "".join(local.stream(messages, None, 40))
            assert "".join(guarded.stream(messages, None, 40)) == expected
            assert "".join(raw.stream(messages, None, 40)) != expected
    finally:
        guarded.close()
        raw.close()


def test_stop_strings_end_the_answer_before_them(backend: LlamaCppBackend, hf) -> None:
    full = hf_answer(hf, QUESTION, 24)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    got = "".join(backend.generate(QUESTION, max_new_tokens=24, stop=[stop, "\x00never"]))
    assert got == full[: full.index(stop)]


def test_stop_at_holds_back_a_stop_string_split_across_deltas() -> None:
    assert list(stop_at(iter(["Step 1", " then <", "|end", "|> more"]), ["<|end|>"])) == [
        "Step 1",
        " then ",
    ]
    assert "".join(stop_at(iter(["a<", "b"]), ["<|end|>"])) == "a<b"  # not a stop: released


def test_a_repeated_prompt_reuses_the_kv_cache(backend: LlamaCppBackend) -> None:
    evaluated: list[int] = []
    real_eval = backend.llm.eval

    def counting_eval(tokens: Any) -> None:
        evaluated.append(len(tokens))
        real_eval(tokens)

    backend.llm.eval = counting_eval  # type: ignore[method-assign]
    backend.llm.reset()  # forget earlier tests' prompts
    try:
        first = "".join(backend.generate(CONVERSATION, max_new_tokens=8))
        prompt_len = len(backend.prompt_tokens(CONVERSATION))
        assert evaluated[0] == prompt_len
        evaluated.clear()
        assert "".join(backend.generate(CONVERSATION, max_new_tokens=8)) == first
        assert evaluated[0] <= 1  # only the last prompt token is replayed, for fresh logits
    finally:
        del backend.llm.eval


def test_a_consumer_that_stops_early_leaves_the_backend_usable(
    backend: LlamaCppBackend, hf
) -> None:
    stream = backend.generate(QUESTION, max_new_tokens=24)
    next(stream)
    stream.close()
    assert "".join(backend.generate(QUESTION, max_new_tokens=24)) == hf_answer(hf, QUESTION, 24)


def test_json_contracts_decode_under_the_schema(backend: LlamaCppBackend) -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": {"order": {"type": "integer"}, "done": {"type": "boolean"}},
        "required": ["order", "done"],
        "additionalProperties": False,
    }
    contract = Contract(spec="json:step", kind="json", schema=schema)
    answer = "".join(backend.stream(QUESTION, contract, max_new_tokens=64))
    jsonschema.validate(json.loads(answer), schema)


def test_errors_say_what_to_do(backend: LlamaCppBackend, tmp_path: Path) -> None:
    with pytest.raises(LlamaCppError, match="does not exist; export it"):
        LlamaCppBackend(tmp_path / "missing.gguf")
    long = [{"role": "user", "content": "deploy " * 600}]
    with pytest.raises(LlamaCppError, match="context holds 512"):
        list(backend.generate(long, max_new_tokens=8))
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_engine_serves_the_promoted_adapter_through_llama_cpp(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """backend=llamacpp exports base + promoted adapter to GGUF once, then answers what the
    transformers backend answers for the same merged model."""
    require_llama_cpp()
    import time

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import Engine
    from sopforge.train import registry
    from sopforge.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    adapter = tmp_path / "run-x" / "adapter"
    torch.manual_seed(3)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    peft_model.save_pretrained(adapter)
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, created_at, kind, base_model, config, status, path, metrics)"
            " VALUES ('run-x', ?, 'train', ?, '{}', 'finished', ?, '{}')",
            (time.time(), str(tiny_model_dir), str(adapter.parent)),
        )
        db.execute(
            "INSERT INTO models (model_id, run_id, base_model, adapter_path, created_at)"
            " VALUES ('run-x', 'run-x', ?, ?, ?)",
            (str(tiny_model_dir), str(adapter), time.time()),
        )
    registry.promote(ws, "run-x", force=True)

    common = {"dtype": "float32", "max_new_tokens": 16, "threads": 1}
    cpp = Engine.from_workspace(ws, EngineConfig(backend="llamacpp", llamacpp_n_ctx=512, **common))
    local = Engine.from_workspace(ws, EngineConfig(backend="local", **common))
    gguf = adapter.parent / "model.f16.gguf"
    assert cpp.model_id == local.model_id == "run-x" and gguf.is_file()
    exported_at = gguf.stat().st_mtime_ns
    for messages in (CONVERSATION, QUESTION):
        a = cpp.generate(messages, format=None, stream=False)
        b = local.generate(messages, format=None, stream=False)
        assert a == b and a
    # a second engine reuses the exported file
    Engine.from_workspace(ws, EngineConfig(backend="llamacpp", llamacpp_n_ctx=512, **common))
    assert gguf.stat().st_mtime_ns == exported_at
