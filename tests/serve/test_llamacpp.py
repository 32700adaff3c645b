"""The llama.cpp engine (xllamacpp) on the tiny model exported to GGUF: the transformers prompt and
greedy text, streaming, requests really decoded together, formats by construction under their
grammar (a random model cannot break them), the citation line, cancellation, clear errors, hot
swap, and the `openai` backend against llama.cpp's own OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sopforge.contracts import Contract, count_bullets, default_registry
from sopforge.llamaserver import Decoding, LlamaServerError, ServedModel, physical_cores
from sopforge.records import split_sources

CONVERSATION = [
    {"role": "system", "content": "You are the company's procedures assistant."},
    {"role": "user", "content": "Who approves an expense over 500 dollars?"},
    {"role": "assistant", "content": "The department manager approves it within five days."},
    {"role": "user", "content": "How do I reset my password?"},
]
QUESTION = [{"role": "user", "content": "Summarize the badge replacement procedure in 3 bullets."}]
CITES = ["[Badges § Lost badge, v1234abcd]", "[Badges § Rules, v99887766]"]
RAW = Decoding(grammar=False, dry_multiplier=0.0)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sopforge.train.export_gguf import export_gguf

    out = tmp_path_factory.mktemp("serve-gguf") / "tiny.f16.gguf"
    return export_gguf(tiny_model_dir, None, out, dtype="f16")


@pytest.fixture(scope="module")
def served(tiny_gguf: Path, tiny_model_dir: Path) -> Iterator[ServedModel]:
    m = ServedModel(tiny_gguf, tiny_model_dir, decoding=RAW, n_parallel=8, n_ctx=512, threads=1)
    yield m
    m.close()


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def hf_answer(hf: tuple[Any, Any], messages: list[dict[str, str]], n: int) -> str:
    """What transformers answers: greedy, special tokens skipped."""
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


def test_prompt_is_the_transformers_chat_prompt(served: ServedModel, hf) -> None:
    _, tokenizer = hf
    for messages in (CONVERSATION, QUESTION):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        assert served.prompt_ids(messages) == ids["input_ids"]


def test_raw_greedy_answer_equals_transformers_and_streams(served: ServedModel, hf) -> None:
    for messages in (CONVERSATION, QUESTION):
        expected = hf_answer(hf, messages, 24)
        deltas = list(served.stream(messages, None, 24))
        assert len(deltas) > 1 and "".join(deltas) == expected
        assert served.answers([(messages, None, 24, ())])[0] == expected.strip()


def test_requests_are_decoded_together_not_one_after_another(served: ServedModel) -> None:
    """8 streams started at once: every one has its first token before any has finished (a
    server that answered one at a time would finish the first before starting the second)."""
    firsts: list[float] = []
    ends: list[float] = []
    lock = threading.Lock()
    request = served.request(QUESTION, None, 200, decoding=RAW) | {"ignore_eos": True}

    def one(i: int) -> None:
        req = {**request, "prompt": request["prompt"] + [i + 10]}
        stream = served.server.stream(req)
        next(stream)
        with lock:
            firsts.append(time.monotonic())
        n = 1 + sum(1 for _ in stream)
        with lock:
            ends.append(time.monotonic())
        assert n >= 200

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(firsts) == len(ends) == 8
    assert max(firsts) < min(ends)


def test_batched_answers_equal_one_at_a_time(served: ServedModel) -> None:
    prompts = [
        [{"role": "user", "content": f"What is step {i} of the fire drill?"}] for i in range(10)
    ]
    together = served.answers([(p, None, 16, ()) for p in prompts])
    alone = ["".join(served.stream(p, None, 16)).strip() for p in prompts[:3]]
    assert together[:3] == alone and len(together) == 10


@pytest.mark.parametrize("spec", ["bullets:3", "bullets:5", "numbered", "json:procedure"])
def test_a_random_model_cannot_break_a_format_under_its_grammar(
    served: ServedModel, spec: str
) -> None:
    """The tiny model is random: raw, it never writes these formats; under the grammar it
    always does, with the closing citation one of those retrieved."""
    contract = default_registry().get(spec)
    guarded = Decoding(dry_multiplier=0.0)
    for messages in (CONVERSATION, QUESTION):
        raw = "".join(served.server.text(served.request(messages, contract, 96, CITES, RAW)))
        assert contract.validate(raw)
        text = "".join(served.server.text(served.request(messages, contract, 96, CITES, guarded)))
        body, source = split_sources(text)
        assert contract.validate(body) == [], text
        assert source in ("", *(f"Source: {c}" for c in CITES)), text
    if spec.startswith("bullets"):
        assert count_bullets(body) == contract.n
    if spec.startswith("json"):
        jsonschema.validate(json.loads(body), contract.schema)


def test_a_json_answer_is_not_cut_by_the_token_limit(served: ServedModel) -> None:
    """The limit is budgeted from the (bounded) schema: a tiny max_new_tokens does not apply."""
    contract = default_registry().get("json:procedure")
    request = served.request(QUESTION, contract, 8, CITES, Decoding(dry_multiplier=0.0))
    assert request["n_predict"] > 8
    out = served.server.complete(request)
    assert out["finish_reason"] == "stop"
    jsonschema.validate(json.loads(split_sources(out["content"])[0]), contract.schema)


def test_a_plain_answer_cites_only_a_retrieved_section(served: ServedModel) -> None:
    """Plain text is free until the model writes `Source:`; from there only a retrieved
    citation can follow. Forced to start with it (a prompt that ends in 'Source:' is not
    enough for a random model), the lazy grammar completes it with one of CITES."""
    request = served.request(QUESTION, Contract("plain", "plain"), 40, CITES, Decoding())
    assert request["grammar_lazy"] is True
    assert all(c in request["grammar"] for c in CITES)
    # the same grammar, made eager, decodes one of the citations whatever the model prefers
    eager = {k: v for k, v in request.items() if not k.startswith("grammar_")}
    text = served.server.complete(eager)["content"]
    assert text.split("\n", 1)[0] in {f"Source: {c}" for c in CITES}, text


def test_a_consumer_that_stops_early_frees_its_slot(served: ServedModel, hf) -> None:
    streams = [served.stream(QUESTION, None, 400) for _ in range(8)]
    for s in streams:
        next(s)
    for s in streams:
        s.close()  # all 8 slots were busy; closing cancels them
    t = time.monotonic()
    assert "".join(served.stream(QUESTION, None, 24)) == hf_answer(hf, QUESTION, 24)
    assert time.monotonic() - t < 30


def test_errors_say_what_to_do(served: ServedModel, tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(LlamaServerError, match="does not exist"):
        ServedModel(tmp_path / "missing.gguf", tiny_model_dir)
    long = [{"role": "user", "content": "deploy " * 600}]
    with pytest.raises(LlamaServerError, match="context holds 512"):
        served.request(long, None, 8)
    assert physical_cores() >= 1


def test_engine_hot_swaps_llama_cpp_models_and_keeps_the_old_one_for_rollback(
    tiny_model_dir: Path, tmp_path: Path, helpers: Any
) -> None:
    """backend=llamacpp exports base (+ adapter) to GGUF once; a swap serves the new model to new
    requests while a stream in flight finishes on the old one; swapping back loads nothing."""
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import Engine, ModelSpec
    from sopforge.serve.llamacpp import LlamaCppBackend

    cfg = EngineConfig(
        llamacpp_n_ctx=512, llamacpp_parallel=2, threads=1, loop_guard=False, llamacpp_dtype="f16"
    )
    adapter = helpers.random_adapter(tiny_model_dir, tmp_path / "run-b" / "adapter", seed=5)
    a = LlamaCppBackend(ModelSpec("base", str(tiny_model_dir)), cfg)
    b = LlamaCppBackend(ModelSpec("run-b", str(tiny_model_dir), str(adapter)), cfg)
    assert (adapter.parent / "model.f16.gguf").is_file()
    engine = Engine(a, cfg)
    in_flight = engine.generate(QUESTION, max_new_tokens=24)
    first = next(in_flight)
    engine.swap(b)
    assert engine.model_id == "run-b"
    new = engine.generate(QUESTION, stream=False, max_new_tokens=24)
    old = first + "".join(in_flight)
    assert old == "".join(a.stream(QUESTION, None, 24))
    assert new == "".join(b.stream(QUESTION, None, 24)) and new != old
    assert engine.kept("base") is a  # rollback: the same loaded backend, nothing loaded
    engine.swap(engine.kept("base"))
    assert engine.generate(QUESTION, stream=False, max_new_tokens=24) == old


def test_openai_backend_against_llama_cpps_own_server(served: ServedModel, hf) -> None:
    """The engine's `openai` backend (what would talk to vLLM) against a real OpenAI-compatible
    HTTP server: llama.cpp's, started by this test on loopback."""
    from sopforge.serve.config import EngineConfig
    from sopforge.serve.engine import Engine, OpenAIBackend

    assert served.server.base_url.startswith("http://127.0.0.1:")
    cfg = EngineConfig(
        backend="openai", openai_base_url=served.server.base_url, openai_model="tiny"
    )
    engine = Engine(OpenAIBackend(cfg, api_key="none"), cfg)
    deltas = list(engine.generate(QUESTION, max_new_tokens=12))
    assert len(deltas) > 1 and "".join(deltas)
    schema = {
        "type": "object",
        "properties": {"order": {"type": "integer"}, "done": {"type": "boolean"}},
        "required": ["order", "done"],
        "additionalProperties": False,
    }
    text = engine.generate(
        QUESTION,
        format=Contract("json:step", "json", schema=schema),
        stream=False,
        max_new_tokens=48,
    )
    jsonschema.validate(json.loads(text), schema)
