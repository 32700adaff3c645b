"""The loop guard bans the start of a third back-to-back copy and the copy of an earlier long
line, and nothing else."""

from __future__ import annotations

from sopforge.decoding import LINE_PREFIX, MIN_SPAN, banned_next

NL = 198  # a line break token
ENDS = frozenset({NL, 2})  # line breaks and the end of the answer


def test_two_back_to_back_copies_ban_the_start_of_a_third() -> None:
    item = [11, 12, 13, 14, 15]  # '"User",\n    ' as tokens
    assert banned_next([1, 2] + item + item) == {11}


def test_one_copy_or_different_items_ban_nothing() -> None:
    assert banned_next([1, 2, 11, 12, 13, 14, 15]) == set()
    # JSON steps share their structure but not their order numbers: no loop
    step = lambda n: [30, 31, n, 32, 33, 34, 35, 36]  # noqa: E731
    assert banned_next(step(1) + step(2) + step(3)) == set()


def test_the_same_step_under_the_next_number_is_a_copy() -> None:
    """`{"order": 5, "action": "X"}, {"order": 6, "action": "X"}`: numbers count as equal, so the
    token opening a third such step is banned (the model closes the list instead)."""
    numbers = frozenset({5, 6, 7})
    step = lambda n, text: [30, 31, n, 32, 33] + text + [36]  # noqa: E731
    answer = step(5, [40, 41, 42]) + step(6, [40, 41, 42])
    assert banned_next(answer, numbers=numbers) == {30}
    assert banned_next(answer) == set()  # without number tokens: different steps
    # different actions under consecutive numbers are no loop
    assert banned_next(step(5, [40, 41, 42]) + step(6, [50, 51, 52]), numbers=numbers) == set()
    # when the loop's next token is a number, every number is banned
    assert banned_next([9, 5, 8, 8, 9, 6, 8, 8, 9], numbers=numbers) == numbers


def test_short_repeats_need_to_cover_the_minimum_span() -> None:
    assert banned_next([7, 7, 7]) == set()  # "1. 1." style repeats are not loops
    assert banned_next([5] * MIN_SPAN) == {5}
    assert banned_next([3, 4] * (MIN_SPAN // 2 - 1)) == set()
    assert banned_next([3, 4] * (MIN_SPAN // 2)) == {3}


def test_only_the_end_of_the_answer_counts() -> None:
    item = [21, 22, 23, 24, 25]
    assert banned_next(item + item + [99]) == set()  # the loop was left already


def test_longer_periods_than_the_limit_are_not_looked_for() -> None:
    item = list(range(100, 140))
    assert banned_next(item + item, max_period=30) == set()
    assert banned_next(item + item, max_period=40) == {100}


def test_a_long_line_may_not_end_as_a_copy_of_an_earlier_line() -> None:
    bullet = [29, 40, 41, 42, 43, 44, 45, 46, 47]  # "- The incident is ..." (9 tokens)
    # behind a blank line the back-to-back rule sees no loop; the line rule does
    answer = bullet + [NL] + bullet + [NL, NL] + bullet
    assert banned_next(answer, ENDS) == ENDS
    assert banned_next(answer[:-2], ENDS) == set()  # two tokens short of a copy: free to go on
    assert banned_next(answer) == set()  # without line-end tokens the rule is off
    short = [60, 61, 62]  # JSON's `},` and such repeat freely
    assert banned_next(short + [NL] + short, ENDS) == set()
    other = [29, 40, 41, 42, 43, 44, 45, 46, 50]  # same start, its own end: a new bullet
    assert banned_next(bullet + [NL] + other, ENDS) == set()


def test_a_line_may_not_copy_an_earlier_line_even_as_its_start() -> None:
    """The token that would complete a copy of an earlier long line is banned, so the copy can
    neither end as a line nor grow into "- X. This includes Y" (each line the one before plus
    more, until the answer runs out of tokens)."""
    bullet = [29, 40, 41, 42, 43, 44, 45, 46, 47]
    assert banned_next(bullet + [NL] + bullet[:-1], ENDS) == {47}
    assert banned_next(bullet + [NL, NL] + bullet[:-1], ENDS) == {47}  # behind a blank line too
    assert banned_next(bullet + [NL] + bullet[:-2], ENDS) == set()  # not yet the copy's end
    assert banned_next(bullet + [NL] + bullet[:-1]) == set()  # without line-end tokens: off
    # two earlier lines sharing the start: both endings are banned, other endings are free
    other = [29, 40, 41, 42, 43, 44, 45, 46, 50]
    assert banned_next(bullet + [NL] + other + [NL] + bullet[:-1], ENDS) == {47, 50}
    short = [60, 61, 62, 63]  # short lines (JSON's `},`) repeat freely
    assert banned_next(short + [NL] + short[:-1], ENDS) == set()


def test_the_processor_looks_only_past_the_prompt(tiny_model_dir) -> None:
    import torch
    from transformers import AutoTokenizer

    from sopforge.decoding import line_end_tokens, loop_guard, number_tokens

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    numbers = number_tokens(tok)
    assert numbers and all(tok.decode([t]).strip().isdigit() for t in numbers)
    ends = line_end_tokens(tok)
    assert (
        tok.eos_token_id in ends
        and len(ends) > 1
        and all("\n" in tok.decode([t]) for t in ends - {tok.eos_token_id})
    )
    free = [t for t in range(20, len(tok)) if t not in ends | numbers][:8]
    prompt = free[:4] * 4  # a repetitive prompt: copying from it must stay free
    answer = free[4:8] * 2
    ids = torch.tensor([prompt + answer])
    scores = torch.zeros((1, len(tok)))
    out = loop_guard(tok, len(prompt))(ids, scores.clone())
    assert torch.isinf(out[0, free[4]]) and int(torch.isinf(out).sum()) == 1
    prompt_only = loop_guard(tok, len(prompt))(torch.tensor([prompt + [free[0]] * 3]), scores)
    assert not torch.isinf(prompt_only).any()


def test_a_line_may_not_open_as_an_earlier_line_opens() -> None:
    """The growing loop that drops a copy's last word ("- X, and Y" after "- X."): the token that
    would make a line's first LINE_PREFIX tokens those of an earlier line is banned."""
    long_line = list(range(100, 100 + LINE_PREFIX + 5))
    start = long_line[: LINE_PREFIX - 1]
    assert banned_next(long_line + [NL] + start, ENDS) == {long_line[LINE_PREFIX - 1]}
    assert banned_next(long_line + [NL] + start[:-1], ENDS) == set()  # shorter openings are free
    diverged = start + [7, 8]  # once the line went its own way it is free
    assert banned_next(long_line + [NL] + diverged, ENDS) == set()
    # an earlier line just as long as the opening: its copy is banned all the same
    short_line = long_line[:LINE_PREFIX]
    assert banned_next(short_line + [NL] + start, ENDS) == {short_line[-1]}
