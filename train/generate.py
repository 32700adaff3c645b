"""Generation for the train stage: answers through the serving engine (`engine_answers`: what
`sopforge eval`, the retrain gate and the replay answers use, decoded exactly as the chat decodes),
and the torch model's answer likelihood (`answer_nll`, for the forgetting measure).

`generate` is the torch path they used before the engine (prompts rendered with the model's own
chat template, sorted by length, batched with left padding); bench/eval/run.py keeps it as the
baseline the engine is measured against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    base_model: str, adapter: str | None = None, merge: bool = True, device: str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on `device` (default: the GPU if any); with an adapter,
    merged into the weights for speed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model).to(device or default_device())
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def render_prompts(tokenizer: Any, prompts: Sequence[Messages]) -> list[list[int]]:
    """Token ids of each conversation followed by the assistant generation prompt."""
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    # The template already holds the special tokens; tokenizing must not add a second BOS.
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int | Sequence[int] = 256,
    batch_size: int = 8,
    desc: str = "generating",
    loop_guard: bool = False,
) -> list[str]:
    """Greedy answers to `prompts`, in order. `max_new_tokens` may be one cap per prompt.
    `loop_guard`: decode with sopforge.decoding's guard against back-to-back repeats."""
    import torch
    from tqdm.auto import tqdm

    if not prompts:
        return []
    caps = (
        [int(max_new_tokens)] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(c) for c in max_new_tokens]
    )
    ids = render_prompts(tokenizer, prompts)
    # Similar prompt lengths and caps share a batch: less padding, fewer wasted decode steps.
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), caps[i]))
    pad_id = tokenizer.pad_token_id
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    answers: list[str] = [""] * len(ids)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in tqdm(_batches(order, batch_size), desc=desc, leave=False):
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            extra = {}
            if loop_guard:
                from transformers import LogitsProcessorList

                from sopforge.decoding import loop_guard as guard

                extra["logits_processor"] = LogitsProcessorList([guard(tokenizer, width)])
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max(caps[i] for i in batch),
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_id,
                eos_token_id=eos,
                temperature=None,
                top_p=None,
                top_k=None,
                **extra,
            )
            for row, i in enumerate(batch):
                new = out[row, width : width + caps[i]]
                answers[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
    return answers


def answer_nll(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Messages],
    answers: Sequence[str],
    *,
    batch_size: int = 8,
) -> list[float]:
    """Mean negative log-likelihood per answer token of `answers` given `prompts`.

    Used to measure forgetting: how much less likely the tuned model finds the base model's own
    answers to general prompts than the base model does.
    """
    import torch

    prompt_ids = render_prompts(tokenizer, prompts)
    eos = tokenizer.eos_token or ""
    answer_ids = [tokenizer(a + eos, add_special_tokens=False)["input_ids"] for a in answers]
    out: list[float] = [float("nan")] * len(prompt_ids)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in _batches(list(range(len(prompt_ids))), batch_size):
            seqs = [prompt_ids[i] + answer_ids[i] for i in batch]
            width = max(len(s) for s in seqs)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            labels = torch.full_like(input_ids, -100)
            for row, i in enumerate(batch):
                n, p = len(seqs[row]), len(prompt_ids[i])
                input_ids[row, :n] = torch.tensor(seqs[row])
                mask[row, :n] = 1
                labels[row, p:n] = torch.tensor(answer_ids[i])
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target = labels[:, 1:].to(device)
            valid = target != -100
            tok = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(batch):
                n = int(valid[row].sum())
                out[i] = float(-(tok[row][valid[row]].sum() / max(n, 1)))
    return out


# ---- through the serving engine -----------------------------------------------------------------

Item = tuple[Messages, Any, int, Sequence[str]]  # (messages, contract or None, cap, citations)


def engine_config(serve_config: str | None = None) -> Any:
    """The serve config's `engine:` section (configs/serve/default.yaml unless named): the
    weights file type, decoding and parallelism the chat uses."""
    from sopforge.serve.config import load_serve_config

    return load_serve_config(serve_config).engine


def engine_answers(
    base_model: str | Path,
    adapter: str | Path | None,
    items: Sequence[Item],
    *,
    guard: bool = True,
    desc: str = "generating",
    serve_config: str | None = None,
) -> list[str]:
    """Answers decoded by the serving engine exactly as the chat decodes them: the same GGUF file
    (base + merged adapter, exported once, train/export_gguf.py cached_gguf), the same sampling,
    grammars and loop protection (`guard`; False = raw: what the model itself writes), many
    answers decoded together."""
    from sopforge.llamaserver import ServedModel, chat_tokenizer_dir
    from sopforge.train.export_gguf import cached_gguf

    if not items:
        return []
    cfg = engine_config(serve_config)
    decoding = cfg.decoding() if guard else cfg.decoding().raw()
    gguf = cached_gguf(Path(base_model), Path(adapter) if adapter else None, cfg.llamacpp_dtype)
    model = ServedModel(
        gguf,
        chat_tokenizer_dir(base_model, adapter),
        decoding=decoding,
        n_parallel=cfg.llamacpp_parallel,
        n_ctx=cfg.llamacpp_n_ctx,
        threads=cfg.threads,
    )
    try:
        return model.answers(items, desc=desc)
    finally:
        model.close()


def plain_items(prompts: Sequence[Messages], max_new_tokens: int) -> list[Item]:
    """Items without a format contract (general prompts, probes, replay)."""
    return [(p, None, max_new_tokens, ()) for p in prompts]


def record_items(
    records: Sequence[dict[str, Any]], caps: Sequence[int], registry: Any
) -> list[Item]:
    """Items of dataset records: each asked as its prompt, under its contract, citing only the
    sources its (open-book) prompt shows."""
    from sopforge.records import prompt_citations, prompt_of

    items: list[Item] = []
    for rec, cap in zip(records, caps, strict=True):
        prompt = prompt_of(rec)
        items.append(
            (prompt, registry.get(rec["contract"]), cap, prompt_citations(prompt[-1]["content"]))
        )
    return items
