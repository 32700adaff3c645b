"""Where a decoded token's time goes in the serving engine's model (merged adapter, bf16).

    python bench/decode/where_time_goes.py [--workspace WS] [--adapter DIR] [--new-tokens 200]

Runs the decode under py-spy (`pip install py-spy`; native frames included) and prints the share of
the samples inside `generate` spent in each part: the matrix products (oneDNN), attention, norms,
rotary embeddings, and the rest (dispatch and Python overhead). Without --adapter the base model
is profiled (merging changes the weights, not the work per token).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PARTS = {
    "matrix products (oneDNN / BLAS)": ("at::_ops::matmul::call", "at::_ops::addmm::call"),
    "attention (sdpa)": ("sdpa_attention_forward",),
    "RMSNorm": ("LlamaRMSNorm.forward",),
    "rotary embeddings": ("apply_rotary_pos_emb",),
    "logits processors": ("LogitsProcessorList.__call__",),
    "prompt processing (prefill)": ("GenerationMixin._prefill",),
}


def child(args: argparse.Namespace) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sopforge.train.models import import_default_model
    from sopforge.workspace import Workspace

    base = import_default_model(Workspace(args.workspace))
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if args.adapter:
        model = PeftModel.from_pretrained(model, args.adapter).merge_and_unload()
    model = model.to(torch.bfloat16).eval()
    ids = tok("Explain the incident procedure. " * 60, return_tensors="pt")
    n = args.new_tokens
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=8, do_sample=False)  # warm-up
        t = time.perf_counter()
        model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        dt = time.perf_counter() - t
    print(
        f"prompt {ids['input_ids'].shape[1]} tokens; {n} new tokens in {dt:.2f} s = {n / dt:.1f} tok/s"
    )


def summarize(raw: Path) -> None:
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if not stack or not any("GenerationMixin" in f for f in frames):
            continue
        total += int(count)
        for part, keys in PARTS.items():
            if any(k in f for f in frames for k in keys):
                incl[part] += int(count)
    if not total:
        sys.exit("no samples inside generate(): was py-spy allowed to attach?")
    print(f"\n{total} samples inside generate():")
    for part in PARTS:
        print(f"  {100 * incl[part] / total:5.1f}%  {part}")
    rest = total - sum(incl[p] for p in list(PARTS)[:5])
    print(
        f"  {100 * rest / total:5.1f}%  the rest of the decode loop (dispatch, Python, small ops)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", default=None)
    p.add_argument("--adapter", default=None)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "decode.txt"
        cmd = [sys.executable, __file__, "--child", "--new-tokens", str(args.new_tokens)]
        cmd += ["--workspace", args.workspace] if args.workspace else []
        cmd += ["--adapter", args.adapter] if args.adapter else []
        subprocess.run(
            [spy, "record", "--native", "--format", "raw", "-r", "100", "-o", str(raw), "--", *cmd],
            check=True,
        )
        summarize(raw)


if __name__ == "__main__":
    main()
