"""Benchmark: TRL's default SFTTrainer settings vs sopforge's, same model, same data, one run.

    python bench/train/run.py [--steps 8] [--dataset DIR|ID] [-w WORKSPACE] [--base-model M]

Both arms train the same LoRA adapter (configs/train/smollm2-cpu.yaml's `lora:`) on the same
prompt-completion records for --steps optimizer steps at the same batch size:

- **trl-defaults**: `SFTConfig()` as TRL 1.16 ships it (bf16 autocast on, activation
  checkpointing on, batches of 8 random records padded to the longest, max_length 1024, lr 2e-5),
  plus only what a run needs: use_cpu on a machine without a GPU (TRL's default bf16 is refused
  there otherwise), the step bound, no checkpoint saving;
- **sopforge**: the `sft:` section of configs/train/smollm2-cpu.yaml through sopforge's own trainer
  builder (bf16 autocast where the CPU has it, no activation checkpointing, length-grouped
  batches of 2 x 4 accumulation = the same 8 records per step, max_length 2048).

Prints trained tokens/s of each (TRL's count of non-padding tokens / train_runtime), their ratio,
each arm's peak resident memory while it trains (sopforge.memory.PeakRSS), and each arm's loss
on the held-out records: the Trainer's eval_loss (same eval batch size in both arms), and the NLL
per answer token over all held-out answers, computed the same way for both arms and for the
untrained base. Both arms train on the same records: those that fit TRL's default
max_length of 1024 tokens. The dataset is --dataset, else the workspace's newest dataset, else
records built from the shared corpus' Markdown SOPs (the same for both arms).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the `sopforge` CLI does; before torch

from sopforge.memory import PeakRSS  # noqa: E402
from sopforge.records import make_record  # noqa: E402
from sopforge.train.config import load_train_config  # noqa: E402
from sopforge.train.data import (
    DatasetError,
    read_records,
    resolve_dataset,
    spread_by_task,
    to_hf_dataset,
)
from sopforge.train.run import Prepared, build_trainer, device_defaults, environment  # noqa: E402
from sopforge.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus" / "md"


def corpus_records(corpus: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Closed- and open-book style records from the corpus' Markdown sections (bench data only)."""
    records = []
    for doc in sorted(corpus.glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        parts = re.split(r"^#+\s+(.+)$", text, flags=re.MULTILINE)
        for title, body in zip(parts[1::2], parts[2::2], strict=False):
            words = body.split()
            if len(words) < 30:
                continue
            prov = {
                "doc_id": doc.stem,
                "version": "0" * 64,
                "section_id": f"{doc.stem} > {title.strip()}",
                "section_title": title.strip(),
                "content_hash": "0" * 16,
                "span": [0, 0],
            }
            answer = " ".join(words[:120])
            records.append(
                make_record(
                    f"What does the '{title.strip()}' section of {doc.stem} say?",
                    answer,
                    task="qa",
                    contract="plain",
                    generator="extractive",
                    provenance=prov,
                )
            )
            records.append(
                make_record(
                    f"Use this source to answer.\n\n{' '.join(words[:300])}\n\nQuestion: "
                    f"what is the first thing the section '{title.strip()}' says?",
                    " ".join(words[:40]),
                    task="open_book",
                    contract="plain",
                    generator="extractive",
                    provenance=prov,
                )
            )
    cut = max(1, len(records) // 10)
    return records[cut:], records[:cut]


def load_data(args: argparse.Namespace, ws: Workspace) -> tuple[list, list, str]:
    try:
        ds = resolve_dataset(args.dataset, ws)
        train = read_records(ds.path / "train.jsonl")
        evals = read_records(ds.path / "eval.jsonl")
        return train, evals, f"dataset {ds.dataset_id}"
    except DatasetError:
        if args.dataset:
            raise
        train, evals = corpus_records(CORPUS.resolve())
        return train, evals, f"corpus Markdown ({CORPUS.resolve()})"


def fits(records: list[dict[str, Any]], base: Path, max_tokens: int) -> list[dict[str, Any]]:
    """Records whose chat-formatted length fits TRL's default max_length, so both arms' eval
    losses are over the very same tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    return [
        r
        for r in records
        if len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
        <= max_tokens
    ]


def heldout_nll(model: Any, tokenizer: Any, evals: list[dict[str, Any]]) -> float:
    """NLL per answer token over all held-out answers (token-weighted), one code path for every
    arm and the base model."""
    from sopforge.records import answer_of
    from sopforge.train.generate import answer_nll

    model.eval()
    prompts = [r["messages"][:-1] for r in evals]
    answers = [answer_of(r) for r in evals]
    nll = answer_nll(model, tokenizer, prompts, answers, batch_size=4)
    eos = tokenizer.eos_token or ""
    n = [len(tokenizer(a + eos, add_special_tokens=False)["input_ids"]) for a in answers]
    return sum(x * k for x, k in zip(nll, n, strict=True)) / sum(n)


def run_arm(name: str, trainer: Any, evals: list[dict[str, Any]]) -> dict[str, Any]:
    t = time.perf_counter()
    with PeakRSS() as mem:
        result = trainer.train()
    wall = time.perf_counter() - t
    tokens = int(trainer._total_train_tokens)
    runtime = result.metrics["train_runtime"]
    ev = trainer.evaluate()
    nll = heldout_nll(trainer.model, trainer.processing_class, evals)
    args = trainer.args
    return {
        "arm": name,
        "steps": trainer.state.global_step,
        "tokens": tokens,
        "train_runtime_s": round(runtime, 2),
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / runtime, 1),
        "train_loss": round(result.metrics["train_loss"], 4),
        "eval_loss": round(ev["eval_loss"], 4),
        "heldout_nll": round(nll, 4),
        "rss_start_mib": round(mem.start_mib),
        "peak_rss_mib": round(mem.peak_mib),
        "bf16": args.bf16,
        "activation_checkpointing": args.activation_checkpointing,
        "sampling": args.train_sampling_strategy,
        "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "max_length": args.max_length,
    }


def trl_defaults_trainer(cfg: Any, prepared: Prepared, out: Path, ws: Workspace, steps: int) -> Any:
    """SFTConfig() as TRL ships it, plus only what a run needs here."""
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    # use_cpu: TRL's default bf16 is refused on a machine without a GPU unless it is set.
    hw = {"use_cpu": True} if device_defaults({}).get("use_cpu") else {}
    args = SFTConfig(
        output_dir=str(out), max_steps=steps, save_strategy="no", report_to="none", **hw
    )
    return SFTTrainer(
        model=str(prepared.base_model),
        args=args,
        train_dataset=to_hf_dataset(prepared.train_records),
        eval_dataset=to_hf_dataset(prepared.eval_records),
        processing_class=AutoTokenizer.from_pretrained(str(prepared.base_model)),
        peft_config=LoraConfig(task_type="CAUSAL_LM", **cfg.lora),
    )


def sopforge_trainer(cfg: Any, prepared: Prepared, out: Path, ws: Workspace, steps: int) -> Any:
    """sopforge's own trainer builder with configs/train/smollm2-cpu.yaml (steps in `cfg`)."""
    return build_trainer(cfg, prepared, out, ws)


def show(r: dict[str, Any]) -> dict[str, Any]:
    print(
        f"{r['arm']:>13}: {r['tokens_per_s']:8.1f} tokens/s  ({r['tokens']} tokens, "
        f"{r['steps']} steps x {r['batch_size']}x{r['grad_accum']} seqs, {r['train_runtime_s']} s)"
        f"  eval_loss {r['eval_loss']:.4f}  held-out NLL {r['heldout_nll']:.4f}"
        f"  peak RSS {r['peak_rss_mib']} MiB (process at {r['rss_start_mib']} MiB before)  bf16={r['bf16']} "
        f"activation_ckpt={r['activation_checkpointing']} sampling={r['sampling']} "
        f"lr={r['learning_rate']} max_length={r['max_length']}",
        flush=True,
    )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per arm")
    ap.add_argument("--dataset", default="", help="dataset folder or id (default: newest)")
    ap.add_argument("-w", "--workspace", default=None, help="default: $SOPFORGE_WORKSPACE")
    ap.add_argument("--base-model", default="", help="default: the embedded SmolLM2-135M")
    ap.add_argument("--max-train", type=int, default=400, help="records used (same for both)")
    ap.add_argument("--max-eval", type=int, default=32)
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument(
        "--order",
        default="trl-defaults,sopforge",
        choices=["trl-defaults,sopforge", "sopforge,trl-defaults"],
        help="which arm runs first (alternate on a machine whose load changes)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (default: torch's choice); 1 gives steadier numbers on a "
        "machine busy with other jobs",
    )
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from sopforge.train.models import resolve_base_model

    ws = Workspace(args.workspace)
    base = resolve_base_model(args.base_model, ws)
    train, evals, source = load_data(args, ws)
    random.Random(0).shuffle(train)  # a sample of every document and task, the same for both arms
    # Only records that fit TRL's default max_length (1024): TRL truncates longer ones and drops
    # those whose answer is cut away, so without this the arms would train on different records.
    train = fits(train[: 3 * args.max_train], base, 1024)[: args.max_train]
    evals = spread_by_task(fits(evals, base, 1024), args.max_eval)
    print(
        f"data: {source}: {len(train)} train / {len(evals)} eval records; base {base}", flush=True
    )
    steps = [f"sft.max_steps={args.steps}", "sft.save_strategy=no", "replay.enabled=false"]
    # The Trainer's eval_loss averages per-batch means: equal eval batches keep it comparable.
    steps.append("sft.per_device_eval_batch_size=8")
    cfg = load_train_config(None, [f"base_model={base}", *steps])
    prepared = Prepared(base, None, train, evals)  # type: ignore[arg-type]
    arms = {"trl-defaults": trl_defaults_trainer, "sopforge": sopforge_trainer}
    results = {}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_nll = heldout_nll(
        AutoModelForCausalLM.from_pretrained(str(base)),
        AutoTokenizer.from_pretrained(str(base)),
        evals,
    )
    print(f"base model (untrained): held-out NLL {base_nll:.4f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.order.split(","):
            trainer = arms[name](cfg, prepared, Path(tmp) / name, ws, args.steps)
            results[name] = show(run_arm(name, trainer, evals))
            del trainer
            gc.collect()  # the next arm's memory starts from what this one leaves
    ratio = results["sopforge"]["tokens_per_s"] / results["trl-defaults"]["tokens_per_s"]
    print(f"sopforge / trl-defaults throughput: {ratio:.2f}x")
    if args.json:
        out = {
            "results": list(results.values()),
            "ratio": ratio,
            "base_heldout_nll": base_nll,
            "data": source,
            "env": environment(),
        }
        out["env"]["load_average"] = os.getloadavg()
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
