"""How often would the loop guard cut a good answer? Replays reference answers token by token.

For every reference answer of a dataset split, each token is checked against what
sopforge.decoding's guard would ban at that point, given the tokens before it. A reference the
guard never touches could be decoded unchanged; one it touches would be altered.

    .venv/bin/python bench/quality/guard_check.py WORKSPACE/subset/train.jsonl [MODEL_DIR]

Prints, per task, how many references the guard would alter, and the first few such spots.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from sopforge.decoding import first_banned, line_end_tokens, number_tokens
from sopforge.records import answer_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, help="a dataset split (train.jsonl or eval.jsonl)")
    ap.add_argument("model", nargs="?", default=None, help="model folder (its tokenizer)")
    ap.add_argument("--show", type=int, default=5, help="altered spots printed")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    model = args.model or str(
        next((args.records.parent.parent / "models").iterdir(), args.records.parent)
    )
    tok = AutoTokenizer.from_pretrained(model)
    ends, numbers = line_end_tokens(tok), number_tokens(tok)
    total: Counter[str] = Counter()
    altered: Counter[str] = Counter()
    shown = 0
    with args.records.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            ids = tok(answer_of(rec) + tok.eos_token, add_special_tokens=False)["input_ids"]
            total[rec["task"]] += 1
            i = first_banned(ids, ends, numbers)
            if i is not None:
                altered[rec["task"]] += 1
                if shown < args.show:
                    shown += 1
                    print(f"{rec['id']}: ...{tok.decode(ids[max(0, i - 30) : i + 1])!r}")
    for task in sorted(total):
        print(f"{task:<10} {altered[task]:>4} of {total[task]:>5} references altered")
    n, a = sum(total.values()), sum(altered.values())
    print(f"{'all':<10} {a:>4} of {n:>5} references altered ({a / max(n, 1):.2%})")


if __name__ == "__main__":
    main()
