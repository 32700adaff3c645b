"""GGUF export: tensor layout, metadata, atomic writes, and llama.cpp agreeing with transformers.

The tiny random Llama (tests/conftest.py) with a LoRA adapter whose B is non-zero is exported and
read back three ways: the `gguf` reader (names, types, metadata), transformers' own GGUF loader
(which undoes the Q/K permutation independently of our code), and llama.cpp (greedy tokens and
logits against transformers on the merged model). The real bundled model runs in one
integration test.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sopforge.llamaserver import LlamaServer
from sopforge.train.export_gguf import (
    ExportError,
    export_gguf,
    gguf_tensor_name,
    llama_dims,
    permute_qk,
    pre_tokenizer_name,
)

PROMPTS = [
    "How do I reset my password?",
    "Summarize the badge replacement procedure in 3 bullets.",
    "Give me the deployment checklist as JSON.",
]
TOKENIZER_PROBES = [
    "Report the lost badge to security within one hour.",
    "Numbers 0 1 2 3 2024 and 100 dollars, 3.14!",
    "  leading spaces\n\nnew lines\ttabs  ",
    'JSON {"title": "Deploy", "steps": [1, 2]} é ü 日本',
    "<|im_start|>user\nhi<|im_end|>",
]


@contextlib.contextmanager
def open_llama(path: Path) -> Iterator[LlamaServer]:
    """The GGUF in llama.cpp's server (the serving engine), one thread, one slot."""
    server = LlamaServer(path, n_parallel=1, n_ctx=256, threads=1)
    try:
        yield server
    finally:
        server.close()


def native(server: LlamaServer, route: str, body: dict[str, Any]) -> Any:
    """llama.cpp's native HTTP routes (/completion, /tokenize) on the server's loopback port."""
    url = server.base_url.removesuffix("/v1") + route
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def make_adapter(base_dir: Path, out: Path, std: float, seed: int = 0) -> Path:
    """A LoRA adapter on every linear layer with B ~ N(0, std): merging changes every matrix."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)  # LoRA A's init: the same adapter in every run
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    peft_model.save_pretrained(out)
    return out


def load_merged(base_dir: Path, adapter_dir: Path) -> tuple[Any, Any]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    return merged, AutoTokenizer.from_pretrained(base_dir)


def chat_ids(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]


def hf_greedy(model: Any, ids: list[int], n: int) -> list[int]:
    import torch

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
    return out[0, len(ids) :].tolist()


def llama_greedy(server: LlamaServer, ids: list[int], n: int, eos: int = -1) -> list[int]:
    """Greedy token ids from llama.cpp (with the end-of-generation token, as HF's)."""
    r = native(
        server,
        "/completion",
        {
            "prompt": ids,
            "n_predict": n,
            "temperature": 0,
            "top_k": 1,
            "return_tokens": True,
            "cache_prompt": False,
        },
    )
    return list(r["tokens"])


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def llama_top_logprobs(server: LlamaServer, ids: list[int], k: int = 5) -> dict[int, float]:
    """llama.cpp's log-probabilities of its k likeliest next tokens after `ids`."""
    r = native(
        server,
        "/completion",
        {"prompt": ids, "n_predict": 1, "temperature": 0, "n_probs": k, "cache_prompt": False},
    )
    top = r["completion_probabilities"][0]["top_logprobs"]
    return {int(t["id"]): float(t["logprob"]) for t in top}


def close_logprobs(hf_last_logits: np.ndarray, lc: dict[int, float], tolerance: float) -> bool:
    """HF's log-softmax agrees with llama.cpp's on llama.cpp's top tokens within `tolerance`."""
    x = hf_last_logits.astype(np.float64)
    logp = x - (np.log(np.exp(x - x.max()).sum()) + x.max())
    return max(abs(logp[i] - v) for i, v in lc.items()) < tolerance


@pytest.fixture(scope="module")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-adapter"), std=0.05)


@pytest.fixture(scope="module")
def tiny_merged(tiny_model_dir: Path, tiny_adapter_dir: Path) -> tuple[Any, Any]:
    return load_merged(tiny_model_dir, tiny_adapter_dir)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny.f16.gguf"
    return export_gguf(tiny_model_dir, tiny_adapter_dir, out, dtype="f16")


# ---- pure pieces ---------------------------------------------------------------------------


def test_permute_qk_interleaves_rope_halves_per_head_and_transformers_undoes_it() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rows = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    out = permute_qk(rows, n_head=2)  # 2 heads x head_dim 4: halves [0,1|2,3] -> 0,2,1,3
    assert out[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    w = np.random.default_rng(0).standard_normal((12 * 16, 5)).astype(np.float32)
    undo = LlamaTensorProcessor()._reverse_permute_weights
    for n_head in (12, 4):
        np.testing.assert_array_equal(undo(permute_qk(w, n_head), n_head, n_head), w)


def test_hf_names_map_to_llama_cpp_names() -> None:
    assert gguf_tensor_name("model.embed_tokens.weight", 2) == "token_embd.weight"
    assert gguf_tensor_name("model.layers.1.self_attn.q_proj.weight", 2) == "blk.1.attn_q.weight"
    assert gguf_tensor_name("model.layers.0.self_attn.o_proj.weight", 2) == (
        "blk.0.attn_output.weight"
    )
    assert gguf_tensor_name("model.layers.0.mlp.down_proj.weight", 2) == "blk.0.ffn_down.weight"
    assert gguf_tensor_name("model.layers.0.input_layernorm.weight", 2) == "blk.0.attn_norm.weight"
    assert gguf_tensor_name("model.layers.0.post_attention_layernorm.weight", 2) == (
        "blk.0.ffn_norm.weight"
    )
    assert gguf_tensor_name("model.norm.weight", 2) == "output_norm.weight"
    assert gguf_tensor_name("lm_head.weight", 2) == "output.weight"
    with pytest.raises(ExportError, match="no llama.cpp name"):
        gguf_tensor_name("model.layers.0.self_attn.q_norm.scale", 2)


def _config(**over: Any) -> SimpleNamespace:
    base = dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4},
        rms_norm_eps=1e-6,
        vocab_size=600,
    )
    return SimpleNamespace(**{**base, **over})


def test_only_plain_llama_configs_are_exported() -> None:
    dims = llama_dims(_config())
    assert (dims.head_dim, dims.n_head_kv, dims.rope_theta) == (16, 2, 1e4)
    with pytest.raises(ExportError, match="'mistral'"):
        llama_dims(_config(model_type="mistral"))
    with pytest.raises(ExportError, match="rope scaling 'llama3'"):
        llama_dims(_config(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}))
    with pytest.raises(ExportError, match="attention_bias"):
        llama_dims(_config(attention_bias=True))


def test_pre_tokenizer_names_for_byte_level_layouts() -> None:
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == (
        "gpt-2"
    )
    smollm = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "use_regex": True},
        ],
    }
    assert pre_tokenizer_name({"pre_tokenizer": smollm}) == "smollm"
    with pytest.raises(ExportError, match="template_gguf"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}})


# ---- the exported file ---------------------------------------------------------------------


def test_export_writes_llama_metadata_and_the_merged_permuted_weights(
    tiny_gguf: Path, tiny_model_dir: Path, tiny_merged: tuple[Any, Any]
) -> None:
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    merged, tokenizer = tiny_merged
    reader = gguf.GGUFReader(tiny_gguf)

    def kv(key: str) -> Any:
        return reader.get_field(key).contents()

    assert kv("general.architecture") == "llama"
    assert kv("general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert (kv("llama.block_count"), kv("llama.embedding_length")) == (2, 64)
    assert (kv("llama.attention.head_count"), kv("llama.attention.head_count_kv")) == (4, 2)
    assert kv("llama.rope.dimension_count") == 16
    assert kv("tokenizer.ggml.model") == "gpt2" and kv("tokenizer.ggml.pre") == "gpt-2"
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    assert kv("tokenizer.ggml.tokens") == [vocab[i] for i in range(len(vocab))]
    assert kv("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert kv("tokenizer.chat_template") == tokenizer.chat_template

    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    q = tensors["blk.1.attn_q.weight"]
    assert q.tensor_type == gguf.GGMLQuantizationType.F16
    written = np.asarray(q.data, dtype=np.float32).reshape(64, 64)
    merged_q = merged.model.layers[1].self_attn.q_proj.weight.detach().numpy()
    np.testing.assert_allclose(written, permute_qk(merged_q, 4), atol=2e-3)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_q = base.model.layers[1].self_attn.q_proj.weight.detach().numpy()
    assert np.abs(written - permute_qk(base_q, 4)).max() > 0.01  # the adapter is in there


def test_transformers_reads_the_export_back_to_the_merged_model(
    tiny_gguf: Path, tiny_merged: tuple[Any, Any]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    merged, tokenizer = tiny_merged
    reloaded = AutoModelForCausalLM.from_pretrained(
        tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32
    ).eval()
    ids = chat_ids(tokenizer, PROMPTS[0])
    np.testing.assert_allclose(hf_logits(reloaded, ids), hf_logits(merged, ids), atol=5e-3)


def test_llama_cpp_greedy_tokens_and_logprobs_match_transformers(
    tiny_gguf: Path, tiny_merged: tuple[Any, Any]
) -> None:
    merged, tokenizer = tiny_merged
    with open_llama(tiny_gguf) as server:
        for question in PROMPTS:
            ids = chat_ids(tokenizer, question)
            expected = hf_greedy(merged, ids, 20)
            assert llama_greedy(server, ids, 20, tokenizer.eos_token_id) == expected, question
            lc = llama_top_logprobs(server, ids)
            assert close_logprobs(hf_logits(merged, ids)[-1], lc, 0.02), question


def test_llama_cpp_tokenizes_like_the_hf_tokenizer(
    tiny_gguf: Path, tiny_merged: tuple[Any, Any]
) -> None:
    _, tokenizer = tiny_merged
    with open_llama(tiny_gguf) as server:
        for text in TOKENIZER_PROBES:
            expected = tokenizer(text, add_special_tokens=False)["input_ids"]
            got = native(
                server, "/tokenize", {"content": text, "add_special": False, "parse_special": True}
            )
            assert got["tokens"] == expected, text


@pytest.mark.parametrize(("dtype", "tolerance"), [("bf16", 0.1), ("q8_0", 0.2)])
def test_smaller_dtypes_load_and_stay_close(
    dtype: str,
    tolerance: float,
    tiny_model_dir: Path,
    tiny_adapter_dir: Path,
    tiny_merged: tuple[Any, Any],
    tiny_gguf: Path,
    tmp_path: Path,
) -> None:
    import gguf

    out = export_gguf(tiny_model_dir, tiny_adapter_dir, tmp_path / f"m.{dtype}.gguf", dtype=dtype)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_up.weight"] == dtype.upper()
    assert types["output_norm.weight"] == "F32"
    if dtype == "q8_0":
        assert out.stat().st_size < 0.7 * tiny_gguf.stat().st_size
    merged, tokenizer = tiny_merged
    with open_llama(out) as server:
        ids = chat_ids(tokenizer, PROMPTS[1])
        assert close_logprobs(
            hf_logits(merged, ids)[-1], llama_top_logprobs(server, ids), tolerance
        )


def test_template_gguf_metadata_is_copied_only_for_the_same_vocabulary(
    tiny_model_dir: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    import gguf

    out = export_gguf(tiny_model_dir, None, tmp_path / "t.gguf", template_gguf=tiny_gguf)
    reader = gguf.GGUFReader(out)
    assert reader.get_field("tokenizer.ggml.merges").contents() == (
        gguf.GGUFReader(tiny_gguf).get_field("tokenizer.ggml.merges").contents()
    )
    assert reader.get_field("general.name").contents() == tiny_model_dir.name

    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(other, arch="llama")
    writer.add_token_list(["a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ExportError, match="vocabulary differs"):
        export_gguf(tiny_model_dir, None, tmp_path / "u.gguf", template_gguf=other)
    assert not (tmp_path / "u.gguf").exists()


def test_a_failed_export_keeps_the_old_file_and_leaves_no_temp_file(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sopforge.train.export_gguf as export_module

    out = tmp_path / "model.gguf"
    out.write_bytes(b"previous export")

    def crash(path: Path, *args: Any, **kwargs: Any) -> None:
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "write_gguf", crash)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(tiny_model_dir, None, out)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    with pytest.raises(ExportError, match="dtype 'q4'"):
        export_gguf(tiny_model_dir, None, out, dtype="q4")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="no adapter_config.json"):
        export_gguf(tiny_model_dir, tmp_path, out)


# ---- the real bundled model ----------------------------------------------------------------


@pytest.fixture
def one_torch_thread() -> Any:
    """Single-threaded torch: robust timing on a shared machine; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.integration
def test_real_model_export_answers_like_transformers(tmp_path_factory, one_torch_thread) -> None:
    from sopforge.llamaserver import ServedModel
    from sopforge.train.models import import_default_model
    from sopforge.workspace import Workspace

    root = tmp_path_factory.mktemp("real-export")
    base = import_default_model(Workspace(root / "ws"))
    adapter = make_adapter(base, root / "adapter", std=2e-3)
    gguf_path = export_gguf(base, adapter, root / "model.f16.gguf", dtype="f16")
    merged, tokenizer = load_merged(base, adapter)
    with open_llama(gguf_path) as server:
        for text in TOKENIZER_PROBES:
            expected = tokenizer(text, add_special_tokens=False)["input_ids"]
            got = native(
                server, "/tokenize", {"content": text, "add_special": False, "parse_special": True}
            )
            assert got["tokens"] == expected, text
        for question in ("What is the capital of France?", "How do I report a lost badge?"):
            ids = chat_ids(tokenizer, question)
            expected = hf_greedy(merged, ids, 20)
            assert llama_greedy(server, ids, 20, tokenizer.eos_token_id) == expected, question
    served = ServedModel(gguf_path, base, n_parallel=1, n_ctx=512, threads=1)
    try:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        assert "Paris" in "".join(served.stream(messages, None, 24))
    finally:
        served.close()
