"""Answer-quality metrics for evaluation: pure functions on strings.

- ROUGE-L: F-measure of the longest common subsequence of word tokens (Lin, 2004), as
  google-research's rouge_score computes `rougeL` (no stemming).
- token F1: SQuAD-style bag-of-words overlap.
- grounding: the fraction of an answer's content words found in its source text; a cheap,
  explainable proxy for "supported by the cited section" (it cannot see paraphrase or negation).
- citations: the `[Doc § Section, vXXXXXXXX]` form answers cite, and whether they cite a source
  that was actually shown.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CITATION = re.compile(r"\[([^\[\]§]+?)\s*§\s*([^\[\]]+?),\s*v([0-9a-fA-F]{4,64})\]")

# Function words carry no grounding evidence: "the", "to", "is" appear in any source.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours""".split()
)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)*len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure of word tokens, in [0, 1]."""
    p, r = words(prediction), words(reference)
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 between prediction and reference, in [0, 1]."""
    p, r = words(prediction), words(reference)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def grounding(answer: str, source: str) -> float | None:
    """Fraction of the answer's content words that occur in `source`; None without any."""
    cw = content_words(answer)
    if not cw:
        return None
    vocab = set(words(source))
    return sum(w in vocab for w in cw) / len(cw)


def citations(text: str) -> list[tuple[str, str, str]]:
    """(document, section, version prefix) of every citation in `text`."""
    return [(d.strip(), s.strip(), v.lower()) for d, s, v in _CITATION.findall(text)]


def citation_valid(answer: str, shown: Iterable[tuple[str, str, str]]) -> bool:
    """True when the answer cites at least one source and every citation is one it was shown."""
    cited = citations(answer)
    allowed = {(d, s, v[:8]) for d, s, v in shown}
    return bool(cited) and all((d, s, v[:8]) in allowed for d, s, v in cited)


def keyword_hit(answer: str, expect: Sequence[str]) -> bool:
    """Whether the answer contains any of the expected keywords (case-insensitive, whole words)."""
    low = " ".join(words(answer))
    return any(
        re.search(rf"(?<![^\W_]){re.escape(' '.join(words(k)))}(?![^\W_])", low) for k in expect
    )


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
