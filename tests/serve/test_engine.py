"""The local engine: streaming, merged adapters, hot swap, constrained JSON, which model is served."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sopforge.records import SYSTEM_PROMPT
from sopforge.serve.config import EngineConfig
from sopforge.serve.engine import (
    Engine,
    EngineError,
    LocalBackend,
    ModelSpec,
    cpu_supports_bf16,
    load_merged,
    promoted_model,
    resolve_model,
    torch_dtype,
)
from sopforge.workspace import Workspace

FP32 = EngineConfig(dtype="float32", max_new_tokens=20, threads=1)
MESSAGES = [
    {"role": "system", "content": SYSTEM_PROMPT},
    {"role": "user", "content": "I lost my badge"},
]


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny model with non-zero B (init_lora_weights=False), so it matters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    cfg = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def greedy_ids(model: Any, tokenizer: Any, n: int = 20) -> list[int]:
    inputs = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=n, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_merged_adapter_equals_unmerged_peft_model(tiny_model_dir: Path, adapter_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), adapter_dir
    ).eval()
    merged, _ = load_merged(ModelSpec("m", str(tiny_model_dir), str(adapter_dir)), torch.float32)
    base, _ = load_merged(ModelSpec("b", str(tiny_model_dir)), torch.float32)

    assert not any("lora" in name for name, _ in merged.named_parameters())  # really merged
    ids = tok("Report the lost badge to security", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        l_merged, l_unmerged, l_base = (m(input_ids=ids).logits for m in (merged, unmerged, base))
    assert torch.allclose(l_merged, l_unmerged, atol=1e-4)
    assert not torch.allclose(l_merged, l_base, atol=1e-2)  # the adapter changes the model
    assert greedy_ids(merged, tok) == greedy_ids(unmerged, tok)


def test_stream_deltas_join_to_the_full_answer_and_match_generate(talking_model_dir: Path) -> None:
    backend = LocalBackend(ModelSpec("talk", str(talking_model_dir)), FP32)
    engine = Engine(backend, FP32)
    deltas = list(engine.generate(MESSAGES))
    full = engine.generate(MESSAGES, stream=False)
    assert len(deltas) > 1  # streamed piece by piece, not in one block
    assert "".join(deltas) == full
    expected = backend.tokenizer.decode(
        greedy_ids(backend.model, backend.tokenizer), skip_special_tokens=True
    )
    assert full == expected
    assert full.startswith("- Report the lost badge")


def test_abandoned_stream_stops_generation_and_frees_the_model(talking_model_dir: Path) -> None:
    cfg = EngineConfig(dtype="float32", max_new_tokens=400, threads=1)
    engine = Engine(LocalBackend(ModelSpec("talk", str(talking_model_dir)), cfg), cfg)
    stream = engine.generate(MESSAGES)
    next(stream)
    start = time.time()
    stream.close()  # the client went away
    assert time.time() - start < 5
    assert engine.generate(MESSAGES, stream=False, max_new_tokens=5)  # lock released


def test_hot_swap_finishes_in_flight_answers_on_the_old_model(
    tiny_model_dir: Path, talking_model_dir: Path
) -> None:
    old = LocalBackend(ModelSpec("old", str(talking_model_dir)), FP32)
    new = LocalBackend(ModelSpec("new", str(tiny_model_dir)), FP32)
    engine = Engine(old, FP32)
    old_answer = engine.generate(MESSAGES, stream=False)
    new_answer = "".join(new.stream(MESSAGES, None, FP32.max_new_tokens))
    assert old_answer != new_answer

    in_flight = engine.generate(MESSAGES)
    first = next(in_flight)
    assert engine.swap(new) is old
    assert first + "".join(in_flight) == old_answer
    assert engine.model_id == "new"
    assert engine.generate(MESSAGES, stream=False) == new_answer


def test_json_format_is_decoded_under_the_schema(talking_model_dir: Path) -> None:
    engine = Engine(LocalBackend(ModelSpec("talk", str(talking_model_dir)), FP32), FP32)
    free = engine.generate(MESSAGES, stream=False)
    constrained = engine.generate(
        MESSAGES, format="json:procedure", stream=False, max_new_tokens=12
    )
    assert not free.lstrip().startswith("{")
    assert constrained.lstrip().startswith("{")
    # every character so far is a valid prefix of a procedure object: only schema keys appear
    key = constrained.lstrip()[1:].lstrip()
    assert key == "" or key.startswith('"')


def test_dtype_auto_is_bf16_only_with_native_cpu_support() -> None:
    import torch

    assert torch_dtype("auto") == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    assert torch_dtype("float32") == torch.float32


def test_served_model_is_the_promoted_row_else_the_configured_base(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(EngineError, match="no model to serve"):
        resolve_model(ws, EngineConfig())
    assert resolve_model(ws, EngineConfig(base_model=str(tiny_model_dir))).base_model == str(
        tiny_model_dir
    )
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO models (model_id, run_id, base_model, adapter_path, created_at, promoted, promoted_at)"
            " VALUES ('run-7', 'r7', ?, '/adapters/r7', 1, 1, 2)",
            (str(tiny_model_dir),),
        )
    assert promoted_model(ws) == ModelSpec("run-7", str(tiny_model_dir), "/adapters/r7")
    assert resolve_model(ws, EngineConfig(base_model="/elsewhere")).model_id == "run-7"


def test_missing_adapter_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    with pytest.raises(EngineError, match="adapter_config.json"):
        load_merged(ModelSpec("x", str(tiny_model_dir), str(tmp_path)), torch.float32)


def test_concurrent_requests_are_serialized_safely(talking_model_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engine = Engine(LocalBackend(ModelSpec("talk", str(talking_model_dir)), FP32), FP32)
    expected = engine.generate(MESSAGES, stream=False)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: "".join(engine.generate(MESSAGES)), range(4)))
    assert answers == [expected] * 4  # no interleaved tokens, no crashed generations


def test_loop_guard_keeps_the_answer_out_of_loops(tiny_model_dir: Path) -> None:
    """The random tiny model loops at once; with the guard (the default) no token of the answer
    is one the guard bans, and turning it off gives the raw loop back."""
    import threading

    from sopforge.decoding import first_banned, line_end_tokens, number_tokens

    raw_cfg = EngineConfig(dtype="float32", max_new_tokens=60, threads=1, loop_guard=False)
    cfg = EngineConfig(dtype="float32", max_new_tokens=60, threads=1)
    raw = LocalBackend(ModelSpec("tiny", str(tiny_model_dir)), raw_cfg)
    guarded = LocalBackend(
        ModelSpec("tiny", str(tiny_model_dir)), cfg, model=raw.model, tokenizer=raw.tokenizer
    )
    ends, numbers = line_end_tokens(raw.tokenizer), number_tokens(raw.tokenizer)

    def answer_ids(backend: LocalBackend) -> list[int]:
        inputs = backend.prompt_ids(MESSAGES)
        width = inputs["input_ids"].shape[1]
        kwargs = backend.generation_kwargs(None, 60, threading.Event(), prompt_width=width)
        return backend.model.generate(**inputs, **kwargs)[0, width:].tolist()

    raw_ids, ids = answer_ids(raw), answer_ids(guarded)
    assert first_banned(raw_ids, ends, numbers) is not None  # the raw answer loops
    assert first_banned(ids, ends, numbers) is None and len(ids) > first_banned(
        raw_ids, ends, numbers
    )
    raw_text = Engine(raw, raw_cfg).generate(MESSAGES, stream=False)
    assert Engine(guarded, cfg).generate(MESSAGES, stream=False) != raw_text
