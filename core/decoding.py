"""The loop guard: greedy decoding that may not repeat the same stretch of its own answer forever.

A small model decoding greedily falls into loops ("roles": ["User", "User", "User", ...], one
bullet written 15 times) and runs out of tokens there. The guard looks only at the tokens the
model has generated (never at the prompt, so copying from the retrieved section stays free) and
bans the next token that would keep a loop going; the model takes its next choice (often the token
that closes the list or ends the answer). Two rules:

1. Back-to-back copies: when the answer ends with two copies of the same stretch (covering at
   least MIN_SPAN tokens), the token that would start a third copy is banned. Numbers count as
   equal here, so the same JSON step written again under the next order number (`{"order": 5,
   "action": "X"}, {"order": 6, "action": "X"}`) is a copy too: the token that would open a third
   such step is banned, and the model closes the list instead.
2. Repeated lines: a line may not copy an earlier line of at least MIN_SPAN tokens, not even
   as the start of a longer line: the token that would complete the copy is banned (and, should
   an answer hold a whole copy already, its line end). A loop hidden behind blank lines
   ("- X\n- X\n\n- X") is caught, and so is the loop that grows each line from the one before
   ("- X\n- X. This includes Y\n- X. This includes Y, and Z"), which a rule banning only the
   copy's line end pushed into; short lines (JSON's `},`, `"actor": "Ops"`) repeat freely.
   Nor may a line open with the same LINE_PREFIX tokens as an earlier line: the growing loop
   also drops a copy's last word ("- X\n- X, and Y\n- X, and Y, and Z"), which the rule above
   does not see.

A third rule was tried and dropped: banning any second copy of a 24-token stretch (the same JSON
step under a new order number) wherever it stood. Forced off such a copy mid-text, the bundled
model broke the JSON syntax instead (`{'order': 6`, `{}`): JSON compliance on the quality bench's
held-out records fell from 15/20 to 14/20 and `bullets:5` from 4/6 to 2/6.

The evaluation, the chat and the API decode with the same guard, so the figures in an evaluation
report are the answers users get. `loop_guard: false` (serve config) and `sopforge eval
--no-loop-guard` turn it off.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

MIN_SPAN = 8  # two copies must cover at least this many tokens ("1. 1." is not a loop)
LINE_PREFIX = 16  # a line may not open with the same this many tokens as an earlier line
MAX_PERIOD = 128  # longest back-to-back repeated stretch looked for, in tokens (two JSON steps)
# what an evaluation's cached answers were decoded with (a change to the rules changes this)
SETTINGS = {
    "rules": ["back-to-back, numbers alike", "lines, as a prefix too", "line openings"],
    "min_span": MIN_SPAN,
    "max_period": MAX_PERIOD,
    "line_prefix": LINE_PREFIX,
}
_NUMBER = -1  # what every number token compares as


def banned_next(
    generated: Sequence[int],
    line_ends: frozenset[int] = frozenset(),
    max_period: int = MAX_PERIOD,
    numbers: frozenset[int] = frozenset(),
) -> set[int]:
    """Tokens that would continue a loop (the module docstring's rules): for each period p, if
    the last copies of p tokens (at least two, covering at least MIN_SPAN tokens) are identical,
    any token of `numbers` (number tokens) counting as equal to any other, the token p back (all
    of `numbers` when that is a number); and all of `line_ends` (tokens holding a line break, and
    the end of the answer) when the current line is a copy of an earlier one, and the token
    that would make it one."""
    banned: set[int] = set()
    if line_ends:
        lines, current = _lines(generated, line_ends)
        n = len(current)
        if n >= MIN_SPAN and current in lines:
            banned |= line_ends
        # the next token of each earlier line the current one has copied so far, when it would
        # end a copy of a long line, or make the opening LINE_PREFIX tokens an earlier line's
        banned |= {
            line[n]
            for line in lines
            if len(line) > n
            and line[:n] == current
            and (len(line) == n + 1 >= MIN_SPAN or n == LINE_PREFIX - 1)
        }
    window = generated[max(0, len(generated) - 2 * max_period) :]
    keys = [_NUMBER if t in numbers else t for t in window] if numbers else list(window)
    m = len(keys)
    for p in range(1, min(max_period, m // 2) + 1):
        span = max(2 * p, -(-MIN_SPAN // p) * p)  # whole copies, at least MIN_SPAN tokens
        if span > m:
            continue
        start = m - span
        if all(keys[start + i] == keys[start + i + p] for i in range(span - p)):
            nxt = window[m - p]
            banned |= numbers if nxt in numbers else {nxt}
    return banned


def first_banned(
    ids: Sequence[int], line_ends: frozenset[int], numbers: frozenset[int]
) -> int | None:
    """The first position of an answer (token ids) holding a token the guard would have banned
    there, or None: where guarded decoding would have written something else."""
    return next(
        (
            i
            for i in range(1, len(ids))
            if ids[i] in banned_next(ids[:i], line_ends, numbers=numbers)
        ),
        None,
    )


def _lines(
    generated: Sequence[int], line_ends: frozenset[int]
) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """(the finished lines, the last unfinished line) of an answer, split at line-end tokens."""
    lines: list[tuple[int, ...]] = []
    line: list[int] = []
    for token in generated:
        if token in line_ends:
            lines.append(tuple(line))
            line = []
        else:
            line.append(token)
    return lines, tuple(line)


def token_sets(texts: Sequence[str], eos: int | None) -> tuple[frozenset[int], frozenset[int]]:
    """(line ends, numbers) of a vocabulary given each token id's text: the tokens holding a line
    break, and the end-of-answer token; the tokens that are digits ("5", " 12")."""
    ends = {i for i, t in enumerate(texts) if "\n" in t} | ({eos} if eos is not None else set())
    numbers = {i for i, t in enumerate(texts) if t.strip().isascii() and t.strip().isdigit()}
    return frozenset(ends), frozenset(numbers)


@functools.lru_cache(maxsize=4)
def _tokenizer_sets(tokenizer: Any) -> tuple[frozenset[int], frozenset[int]]:
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    return token_sets(texts, tokenizer.eos_token_id)


def line_end_tokens(tokenizer: Any) -> frozenset[int]:
    """Ids of every token whose text holds a line break, and the end-of-answer token."""
    return _tokenizer_sets(tokenizer)[0]


def number_tokens(tokenizer: Any) -> frozenset[int]:
    """Ids of every token whose text is digits (a leading space allowed): "5", " 12"."""
    return _tokenizer_sets(tokenizer)[1]


@functools.cache
def _processor_class() -> type:
    import torch
    from transformers import LogitsProcessor

    class LoopGuard(LogitsProcessor):
        """Sets the score of a token that would start a third back-to-back copy to -inf.

        `prompt_width` is the width of the (left-padded) prompt batch: the answer is what follows.
        """

        def __init__(self, prompt_width: int, line_ends: frozenset[int], numbers: frozenset[int]):
            self.prompt_width = prompt_width
            self.line_ends = line_ends
            self.numbers = numbers

        def __call__(
            self, input_ids: torch.LongTensor, scores: torch.FloatTensor
        ) -> torch.FloatTensor:
            if input_ids.shape[1] - self.prompt_width < MIN_SPAN:
                return scores
            for row, seq in enumerate(input_ids[:, self.prompt_width :].tolist()):
                banned = banned_next(seq, self.line_ends, numbers=self.numbers)
                if banned:
                    scores[row, sorted(t for t in banned if t < scores.shape[-1])] = float("-inf")
            return scores

    return LoopGuard


def loop_guard(tokenizer: Any, prompt_width: int) -> Any:
    """A transformers LogitsProcessor applying the guard to what follows `prompt_width` tokens."""
    return _processor_class()(prompt_width, line_end_tokens(tokenizer), number_tokens(tokenizer))
