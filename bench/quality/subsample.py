"""Write a task-balanced subset of a dataset's train split (eval split kept whole) to a folder.

    python bench/quality/subsample.py DATASET_DIR OUT_DIR --per-task summary=300 json=250 qa=150 ...

CPU training time is bounded by tokens; the shared corpus yields ~8,000 pairs, mostly `qa` and
`open_book`. A balanced subset teaches every format in a fraction of the time. Records are taken
spread over documents (round-robin), deterministically. `--per-contract bullets:5=45` gives one
contract a quota of its own, apart from its task's. `--max-chars` leaves out the longest records
(open-book prompts with a long section), which cost the most CPU time per record; the eval split
is never filtered. `--prefer-unseen SUBSET` takes the records that an earlier subset
left out first, then fills the quota from its own (a second training stage sees new pairs).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path


def balanced(records: list[dict], n: int) -> list[dict]:
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_doc[r["provenance"].get("doc_id", "")].append(r)
    queues = [v for _, v in sorted(by_doc.items())]
    out: list[dict] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-task", nargs="+", default=[], help="task=count")
    ap.add_argument(
        "--per-contract",
        nargs="+",
        default=[],
        help="contract=count (bullets:5=45): that contract's records get their own quota, apart "
        "from their task's",
    )
    ap.add_argument(
        "--max-chars",
        type=int,
        default=0,
        help="skip train records longer than this (prompt + answer characters; 0 = keep all)",
    )
    ap.add_argument(
        "--prefer-unseen",
        type=Path,
        default=None,
        help="a subset folder: records of its train.jsonl are taken only after all the others",
    )
    args = ap.parse_args()
    per_task, per_contract = (
        {k: int(v) for k, v in (x.rsplit("=", 1) for x in pairs)}
        for pairs in (args.per_task, args.per_contract)
    )
    quota = per_task | per_contract
    recs = [json.loads(x) for x in (args.dataset / "train.jsonl").read_text().splitlines()]
    if args.max_chars:
        recs = [r for r in recs if sum(len(m["content"]) for m in r["messages"]) <= args.max_chars]
    groups: dict[str, list[dict]] = defaultdict(list)  # by task, or by contract given a quota
    for r in recs:
        groups[r["contract"] if r["contract"] in per_contract else r["task"]].append(r)
    seen: set[str] = set()
    if args.prefer_unseen:
        lines = (args.prefer_unseen / "train.jsonl").read_text().splitlines()
        seen = {json.loads(x)["id"] for x in lines}
    chosen = []
    for key, rs in sorted(groups.items()):
        fresh = balanced([r for r in rs if r["id"] not in seen], quota.get(key, 0))
        chosen += fresh + balanced(
            [r for r in rs if r["id"] in seen], quota.get(key, 0) - len(fresh)
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
    )
    shutil.copy(args.dataset / "eval.jsonl", args.out / "eval.jsonl")
    card = json.loads((args.dataset / "card.json").read_text())
    card["subset"] = {
        "of": card.get("dataset_id"),
        "per_task": per_task,
        "per_contract": per_contract or None,
        "max_chars": args.max_chars or None,
        "prefer_unseen": str(args.prefer_unseen) if args.prefer_unseen else None,
        "n_train": len(chosen),
    }
    (args.out / "card.json").write_text(json.dumps(card, indent=2))
    print(f"{len(chosen)} train records -> {args.out}")


if __name__ == "__main__":
    main()
