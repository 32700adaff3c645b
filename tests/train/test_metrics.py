"""Answer-quality metrics are pure functions with known values."""

from __future__ import annotations

import pytest

from sopforge.records import citation
from sopforge.train import metrics as M


def test_rouge_l_matches_the_lcs_f_measure():
    # LCS("the cat sat on the mat", "the cat is on the mat") = the cat on the mat = 5
    p, r = "the cat sat on the mat", "The cat is on the mat."
    assert M.lcs_length(M.words(p), M.words(r)) == 5
    assert M.rouge_l(p, r) == pytest.approx(5 / 6)
    assert M.rouge_l("a b c", "a b c") == 1.0
    assert M.rouge_l("x y", "a b") == 0.0 and M.rouge_l("", "a") == 0.0
    # order matters for ROUGE-L, not for token F1
    assert M.rouge_l("c b a", "a b c") == pytest.approx(1 / 3)
    assert M.token_f1("c b a", "a b c") == 1.0


def test_token_f1_counts_repeated_words_once_per_occurrence():
    assert M.token_f1("a a b", "a b b") == pytest.approx(2 / 3)
    assert M.token_f1("", "a") == 0.0


def test_grounding_is_the_share_of_content_words_in_the_source():
    source = "Report the lost badge to security within one hour."
    assert M.grounding("Report it to security.", source) == 1.0  # 'it', 'to' are stopwords
    assert M.grounding("Call the police.", source) == 0.0
    assert M.grounding("Report to the police.", source) == pytest.approx(1 / 2)
    assert M.grounding("the to of", source) is None


def test_citations_are_parsed_and_checked_against_the_shown_sources():
    shown = citation("Badge policy", "Lost badge", "ab12cd34ef")
    prompt_sources = M.citations(f"Source {shown}\ntext")
    assert prompt_sources == [("Badge policy", "Lost badge", "ab12cd34")]
    assert M.citation_valid(f"Tell security. {shown}", prompt_sources)
    assert not M.citation_valid("Tell security.", prompt_sources)
    other = citation("Badge policy", "Other", "ab12cd34")
    assert not M.citation_valid(f"Tell security. {shown} {other}", prompt_sources)


def test_keyword_hit_needs_whole_words():
    assert M.keyword_hit("The capital of France is Paris.", ["paris"])
    assert M.keyword_hit("Plants absorb carbon dioxide.", ["carbon dioxide", "co2"])
    assert not M.keyword_hit("It has 48 legs", ["8", "eight"])
    assert M.keyword_hit("A spider has 8 legs", ["8", "eight"])


def test_mean_ignores_missing_values():
    assert M.mean([1.0, None, 0.0]) == 0.5 and M.mean([None]) is None
