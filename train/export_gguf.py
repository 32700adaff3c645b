"""Export a tuned model (base + LoRA adapter, merged) to one GGUF file that llama.cpp serves.

    export_gguf(base_dir, adapter_dir, Path("model.f16.gguf"), dtype="f16")

Reads top to bottom: load the HF model in fp32 and merge the adapter (merge_and_unload) -> rename
its tensors to llama.cpp's names, permuting Q/K the way llama.cpp's convert_hf_to_gguf.py does ->
describe the architecture from config.json and the tokenizer from the HF tokenizer (the one
saved with the adapter if any: training may have changed its chat template) -> write the file
with the `gguf` package's GGUFWriter into a temp file and rename it into place.

Tokenizer metadata comes from the HF tokenizer by default (byte-level BPE, as SmolLM2 and most
Llama-architecture chat models use). `template_gguf` instead copies the tokenizer and `general.*`
metadata of an existing GGUF of the same base (e.g. the bundled SmolLM2 GGUF), after checking
that its vocabulary is the HF tokenizer's; the chat template still comes from the HF tokenizer.
Only the `llama` architecture is handled; anything else is refused with a clear error rather than
exported wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sopforge.errors import UserError

log = logging.getLogger(__name__)

ExportDtype = Literal["f16", "bf16", "q8_0"]
EXPORT_DTYPES: tuple[str, ...] = ("f16", "bf16", "q8_0")


class ExportError(UserError):
    pass


# ---- architecture --------------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaDims:
    """The numbers llama.cpp's `llama` architecture needs, read from an HF LlamaConfig."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx_train: int
    rope_theta: float
    rms_eps: float
    vocab_size: int


def llama_dims(config: Any) -> LlamaDims:
    """Validate that `config` is a plain Llama that llama.cpp's `llama` graph computes exactly."""
    if getattr(config, "model_type", None) != "llama":
        raise ExportError(
            f"GGUF export handles Llama-architecture models; this one is "
            f"{getattr(config, 'model_type', '?')!r}. Serve it with the transformers backend instead"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            raise ExportError(f"GGUF export: config.{flag}=True is not supported")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    legacy_scaling = getattr(config, "rope_scaling", None)  # transformers 4.x name
    if isinstance(legacy_scaling, dict):
        rope.update(legacy_scaling)
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ExportError(
            f"GGUF export: rope scaling {rope_type!r} is not supported (only plain RoPE)"
        )
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ExportError("GGUF export: config.json has no rope_theta")
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return LlamaDims(
        n_layer=config.num_hidden_layers,
        n_embd=config.hidden_size,
        n_ff=config.intermediate_size,
        n_head=n_head,
        n_head_kv=getattr(config, "num_key_value_heads", None) or n_head,
        head_dim=head_dim,
        n_ctx_train=config.max_position_embeddings,
        rope_theta=float(theta),
        rms_eps=float(config.rms_norm_eps),
        vocab_size=config.vocab_size,
    )


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from HF's rotate-half RoPE layout to llama.cpp's interleaved one.

    The same permutation as llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute); transformers'
    GGUF loader undoes it with `_reverse_permute_weights`. Each head's rows [first half | second
    half] become pairs (i, i + half) side by side. Pass n_head_kv for K.
    """
    rows = weights.shape[0]
    half = rows // n_head // 2
    return (
        weights.reshape(n_head, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)
    )


def gguf_tensor_name(hf_name: str, n_layer: int) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'blk.3.attn_q.weight' (the gguf package's map)."""
    import gguf

    mapped = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer).get_name(
        hf_name, try_suffixes=(".weight", ".bias")
    )
    if mapped is None:
        raise ExportError(f"GGUF export: no llama.cpp name for tensor {hf_name!r}")
    return mapped


def gguf_tensors(state: dict[str, np.ndarray], dims: LlamaDims) -> Iterator[tuple[str, np.ndarray]]:
    """(llama.cpp name, fp32 array) for every weight; Q/K permuted; a tied lm_head left out.

    With tied embeddings llama.cpp reuses token_embd as the output matrix when `output` is absent;
    an lm_head that differs from the embeddings (e.g. trained by the adapter) is written out.
    """
    embed = state.get("model.embed_tokens.weight")
    for hf_name, array in state.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from rope_theta by llama.cpp
        if hf_name == "lm_head.weight" and embed is not None and np.array_equal(array, embed):
            continue
        name = gguf_tensor_name(hf_name, dims.n_layer)
        if name.endswith("attn_q.weight"):
            array = permute_qk(array, dims.n_head)
        elif name.endswith("attn_k.weight"):
            array = permute_qk(array, dims.n_head_kv)
        yield name, array


# ---- tensor encoding -----------------------------------------------------------------------


def file_type(dtype: ExportDtype) -> int:
    import gguf

    return {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[dtype]


def encode_tensor(array: np.ndarray, dtype: ExportDtype) -> tuple[np.ndarray, Any]:
    """(data, raw_dtype for GGUFWriter.add_tensor). Norm vectors stay f32 as in llama.cpp's
    converter (tiny, and precision matters there); a matrix whose rows don't split into q8_0
    blocks of 32 falls back to f16."""
    import gguf

    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim < 2:
        return array, None
    if dtype == "f16":
        return array.astype(np.float16), None
    qtype = gguf.GGMLQuantizationType.BF16 if dtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if array.shape[-1] % block:
        return array.astype(np.float16), None
    return gguf.quants.quantize(array, qtype), qtype


# ---- tokenizer -----------------------------------------------------------------------------

# llama.cpp picks its pre-tokenizer regex by name (tokenizer.ggml.pre). We recognise the two
# byte-level layouts small Llama chat models use; convert_hf_to_gguf.py identifies them by hashing
# the tokenization of a probe text, which needs its whole table of known models.


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    pre = tokenizer_json.get("pre_tokenizer") or {}

    def is_bytelevel(p: dict[str, Any]) -> bool:
        return p.get("type") == "ByteLevel" and p.get("use_regex", True)

    if is_bytelevel(pre):
        return "gpt-2"
    if pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers", [])
        if (
            len(parts) == 2
            and parts[0].get("type") == "Digits"
            and parts[0].get("individual_digits")
            and is_bytelevel(parts[1])
        ):
            return "smollm"  # digits split one by one, then GPT-2's regex (SmolLM, StarCoder)
    raise ExportError(
        f"GGUF export: unrecognised pre-tokenizer {json.dumps(pre)[:200]}; pass template_gguf= "
        "a GGUF of the same base model to copy its tokenizer metadata"
    )


@dataclass(frozen=True)
class TokenizerMeta:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]  # bos/eos/unk/pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def vocab_tokens(tokenizer: Any, n_rows: int) -> tuple[list[str], list[int]]:
    """(token strings, llama.cpp token types) for ids 0..n_rows-1 of an HF tokenizer.

    Types follow convert_hf_to_gguf.py: special added tokens are CONTROL (parsed only as
    specials, dropped when decoding), other added tokens USER_DEFINED, ids the tokenizer lacks
    (embedding rows padded past the vocabulary) UNUSED.
    """
    import gguf

    id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(max(n_rows, max(id_to_token) + 1)):
        if i not in id_to_token:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(id_to_token[i])
        if i in added:
            kind = gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
        else:
            kind = gguf.TokenType.NORMAL
        types.append(int(kind))
    return tokens, types


def tokenizer_meta(tokenizer: Any, n_rows: int) -> TokenizerMeta:
    """llama.cpp's `gpt2` (byte-level BPE) tokenizer description of an HF fast tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError("GGUF export needs a fast (tokenizer.json) tokenizer")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        raise ExportError(
            f"GGUF export: tokenizer model {spec.get('model', {}).get('type')!r} is not "
            "byte-level BPE; pass template_gguf= a GGUF of the same base model"
        )
    tokens, types = vocab_tokens(tokenizer, n_rows)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    special_ids = {
        kind: tid
        for kind in ("bos", "eos", "unk", "pad")
        if (tid := getattr(tokenizer, f"{kind}_token_id", None)) is not None
    }
    # Whether the tokenizer adds BOS/EOS around plain text, found by asking it.
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos, eos = special_ids.get("bos"), special_ids.get("eos")
    return TokenizerMeta(
        tokens=tokens,
        token_types=types,
        merges=merges,
        pre=pre_tokenizer_name(spec),
        special_ids=special_ids,
        add_bos=len(probe) > len(plain) and bos is not None and probe[0] == bos,
        add_eos=len(probe) > len(plain) and eos is not None and probe[-1] == eos,
        chat_template=getattr(tokenizer, "chat_template", None) or None,
    )


def write_tokenizer(writer: Any, meta: TokenizerMeta) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.token_types)
    writer.add_token_merges(meta.merges)
    for kind, tid in meta.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(tid)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)


# Keys copied from a template GGUF: its tokenizer and descriptive `general.*` fields. The
# architecture numbers always come from config.json (they describe the weights we write).
_NOT_COPIED = {
    "general.architecture",
    "general.name",
    "general.file_type",
    "general.quantization_version",
    "general.alignment",
    "tokenizer.chat_template",
}


def copy_template_metadata(
    writer: Any, template: Path, tokens: list[str], chat_template: str | None
) -> None:
    """Copy `tokenizer.*` and `general.*` KVs from `template`, after checking its vocabulary."""
    import gguf

    reader = gguf.GGUFReader(template)
    field = reader.get_field("tokenizer.ggml.tokens")
    if field is None or field.contents() != tokens:
        raise ExportError(
            f"template_gguf {template}: its vocabulary differs from the model's tokenizer; "
            "use a GGUF of the same base model, or none"
        )
    for key, f in reader.fields.items():
        if key in _NOT_COPIED or not key.startswith(("general.", "tokenizer.")):
            continue
        vtype = f.types[0]
        sub_type = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, f.contents(), vtype, sub_type=sub_type)
    if chat_template:
        writer.add_chat_template(chat_template)


# ---- loading -------------------------------------------------------------------------------


def load_merged_fp32(base_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any]:
    """(model with the adapter merged, tokenizer); fp32, so the LoRA delta is added unrounded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (base_dir / "config.json").is_file():
        raise ExportError(f"GGUF export: {base_dir} is not a model folder (no config.json)")
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise ExportError(f"GGUF export: {adapter_dir} is not an adapter (no adapter_config.json)")
    # As the serving engine does: the adapter's saved tokenizer (chat template) wins.
    tok_dir = (
        adapter_dir
        if adapter_dir is not None and (adapter_dir / "tokenizer_config.json").is_file()
        else base_dir
    )
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return model.eval(), tokenizer


def state_arrays(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}


# ---- writing -------------------------------------------------------------------------------


def write_architecture(writer: Any, dims: LlamaDims, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(dims.n_ctx_train)
    writer.add_embedding_length(dims.n_embd)
    writer.add_block_count(dims.n_layer)
    writer.add_feed_forward_length(dims.n_ff)
    writer.add_head_count(dims.n_head)
    writer.add_head_count_kv(dims.n_head_kv)
    writer.add_rope_freq_base(dims.rope_theta)
    writer.add_layer_norm_rms_eps(dims.rms_eps)
    writer.add_rope_dimension_count(dims.head_dim)
    if dims.head_dim != dims.n_embd // dims.n_head:
        writer.add_key_length(dims.head_dim)
        writer.add_value_length(dims.head_dim)


def write_gguf(
    path: Path,
    model: Any,
    tokenizer: Any,
    dtype: ExportDtype,
    *,
    name: str,
    template_gguf: Path | None = None,
) -> None:
    import gguf

    dims = llama_dims(model.config)
    state = state_arrays(model)
    embed_rows = state["model.embed_tokens.weight"].shape[0]
    tokens, _ = vocab_tokens(tokenizer, embed_rows)
    if len(tokens) != embed_rows:
        raise ExportError(
            f"GGUF export: the tokenizer has {len(tokens)} tokens but the embeddings "
            f"{embed_rows} rows; resize the model's embeddings to the tokenizer first"
        )
    writer = gguf.GGUFWriter(path, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        write_architecture(writer, dims, name)
        writer.add_vocab_size(embed_rows)
        if template_gguf is not None:
            chat_template = getattr(tokenizer, "chat_template", None) or None
            copy_template_metadata(writer, template_gguf, tokens, chat_template)
        else:
            write_tokenizer(writer, tokenizer_meta(tokenizer, embed_rows))
        writer.add_file_type(file_type(dtype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, array in gguf_tensors(state, dims):
            data, raw_dtype = encode_tensor(array, dtype)
            writer.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def export_gguf(
    base_dir: Path,
    adapter_dir: Path | None,
    out_path: Path,
    *,
    dtype: ExportDtype = "f16",
    template_gguf: Path | None = None,
) -> Path:
    """Write base (+ merged adapter) as a llama.cpp GGUF at `out_path` (atomically); return it.

    dtype: "f16" (exact enough to reproduce transformers' greedy answers), "bf16", or "q8_0"
    (half the size, slightly lossy). Norm vectors are kept f32 in every case.
    """
    if dtype not in EXPORT_DTYPES:
        raise ExportError(f"GGUF export: dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    base_dir, out_path = Path(base_dir), Path(out_path)
    adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
    if template_gguf is not None and not Path(template_gguf).is_file():
        raise ExportError(f"GGUF export: template_gguf {template_gguf} does not exist")
    model, tokenizer = load_merged_fp32(base_dir, adapter_dir)
    name = base_dir.name + (f"+{adapter_dir.parent.name}" if adapter_dir is not None else "")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_gguf(tmp, model, tokenizer, dtype, name=name, template_gguf=template_gguf)
        with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("exported %s (%s) to %s", name, dtype, out_path)
    return out_path


def cached_gguf(
    base_dir: Path,
    adapter_dir: Path | None,
    dtype: ExportDtype = "f16",
    *,
    in_process: bool = False,
) -> Path:
    """The GGUF of base (+ merged adapter), exported on first use and then reused.

    It lives next to the adapter (in its run folder), or in the base model folder: both are
    immutable once registered, so the file never goes stale; the export is atomic, so a crash
    leaves none. The chat, `sopforge eval` and the retrain gate all decode this one file."""
    home = Path(adapter_dir).parent if adapter_dir else Path(base_dir)
    out = home / f"model.{dtype}.gguf"
    if not out.is_file() and in_process:  # a process that uses torch anyway (training, promote)
        export_gguf(Path(base_dir), Path(adapter_dir) if adapter_dir else None, out, dtype=dtype)
    elif not out.is_file():
        log.info("exporting %s to %s for llama.cpp", adapter_dir or base_dir, out)
        # In a process of its own: the merge starts torch's OpenMP threads, and in the process
        # that then decodes with llama.cpp they cost its decoding ~30% (bench/decode/run.py).
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            pool.apply(
                export_gguf,
                (Path(base_dir), Path(adapter_dir) if adapter_dir else None, out),
                {"dtype": dtype},
            )
    return out
