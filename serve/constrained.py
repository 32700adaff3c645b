"""JSON-Schema constrained decoding for the local backend, with lm-format-enforcer.

lm-format-enforcer's own transformers integration imports names that transformers 5 removed, so
this is the small glue it would provide: the tokenizer's regular tokens (built once per tokenizer,
a few seconds for a 49k vocabulary) and a LogitsProcessor that masks every token the schema's
character-level parser cannot accept next. The library does the parsing; we only mask.
"""

from __future__ import annotations

import functools
from typing import Any


def build_tokenizer_data(tokenizer: Any) -> Any:
    """lm-format-enforcer's per-tokenizer tables (regular tokens and whether each starts a word)."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    # Decoding "0"+token and dropping the "0" reveals a leading space that decode() alone strips.
    token_0 = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for idx in range(vocab_size):
        if idx in special:
            continue
        after_0 = tokenizer.decode([token_0, idx])[1:]
        alone = tokenizer.decode([idx])
        regular.append((idx, after_0, len(after_0) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")  # drop half-decoded multibyte chars

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)


MAX_STRING = 400  # decoding-time bounds only: an unbounded string lets a weak model loop forever
MAX_ITEMS = 30


def bounded_schema(schema: Any) -> Any:
    """A copy of `schema` with maxLength on strings that have none (validation keeps the original)."""
    if isinstance(schema, list):
        return [bounded_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_schema(v) for k, v in schema.items()}
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out:
        out["maxLength"] = MAX_STRING
    return out


@functools.cache
def _processor_class() -> type:
    import torch
    from transformers import LogitsProcessor

    class SchemaLogitsProcessor(LogitsProcessor):
        """Sets the score of every token the JSON Schema forbids next to -inf."""

        def __init__(self, tokenizer_data: Any, schema: dict[str, Any]):
            from lmformatenforcer import JsonSchemaParser, TokenEnforcer

            parser = JsonSchemaParser(bounded_schema(schema))
            self.enforcer = TokenEnforcer(tokenizer_data, parser)
            # TokenEnforcer installs its own config (the tokenizer's alphabet); tighten that one.
            config = parser.config
            config.max_consecutive_whitespaces = 2  # no runs of blank lines in or before the object
            config.force_json_field_order = True  # required keys first, in order: complete sooner
            config.max_json_array_length = MAX_ITEMS

        def __call__(
            self, input_ids: torch.LongTensor, scores: torch.FloatTensor
        ) -> torch.FloatTensor:
            mask = torch.full_like(scores, float("-inf"))
            for row, seq in enumerate(input_ids.tolist()):
                allowed = torch.as_tensor(self.enforcer.get_allowed_tokens(seq).allowed_tokens)
                mask[row, allowed[allowed < scores.shape[-1]]] = 0.0
            return scores + mask

    return SchemaLogitsProcessor


def schema_logits_processor(tokenizer_data: Any, schema: dict[str, Any]) -> Any:
    """A fresh processor for one generation (the enforcer keeps per-sequence parser state)."""
    return _processor_class()(tokenizer_data, schema)
