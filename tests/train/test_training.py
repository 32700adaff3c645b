"""Training on the tiny model: answer-only loss, LoRA learns, adapters round-trip, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from sopforge.records import answer_of
from sopforge.train.config import load_train_config
from sopforge.train.data import read_records
from sopforge.train.run import (
    Prepared,
    build_trainer,
    on_step,
    prepare,
    resume_run,
    train,
)
from sopforge.workspace import Workspace


def _trainer(cfg, ws: Workspace, out: Path):
    return build_trainer(cfg, prepare(cfg, ws), out, ws)


def test_prompt_tokens_are_masked_out_of_the_loss(tiny_cfg, workspace, tmp_path):
    trainer = _trainer(tiny_cfg, workspace, tmp_path / "out")
    tok = trainer.processing_class
    batch = next(iter(trainer.get_train_dataloader()))
    answers = {answer_of(r) for r in read_records(Path(tiny_cfg.dataset) / "train.jsonl")}
    assert batch["labels"].shape == batch["input_ids"].shape
    rows = zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True)
    for ids, labels, mask in rows:
        trained = labels != -100
        # Labels are the inputs where trained, and -100 on padding.
        assert torch.equal(labels[trained], ids[trained])
        assert not trained[mask == 0].any()
        # The trained span is one contiguous block at the end of the real tokens: the answer.
        positions = trained.nonzero().flatten()
        assert positions.numel() > 0
        assert torch.equal(positions, torch.arange(positions[0], positions[-1] + 1))
        text = tok.decode(ids[trained])
        assert text.strip().removesuffix("<|im_end|>") in answers
        # Everything before it (system + user + the assistant header) is masked.
        prompt = tok.decode(ids[: positions[0]][mask[: positions[0]] == 1])
        assert prompt.rstrip().endswith("<|im_start|>assistant")
        assert "<|im_start|>user" in prompt and "<|im_start|>system" in prompt


def test_lora_weights_change_and_base_weights_do_not(tiny_cfg, workspace, tmp_path):
    trainer = _trainer(tiny_cfg, workspace, tmp_path / "out")
    named = dict(trainer.model.named_parameters())
    lora_b = {n: p.detach().clone() for n, p in named.items() if "lora_B" in n}
    base = {n: p.detach().clone() for n, p in named.items() if "lora_" not in n}
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b.values())  # PEFT init
    trainer.train()
    named = dict(trainer.model.named_parameters())
    changed = [n for n, p in lora_b.items() if not torch.equal(p, named[n].detach())]
    assert len(changed) == len(lora_b)
    assert all(torch.equal(p, named[n].detach()) for n, p in base.items())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_adapter_saves_and_reloads_to_the_same_logits(tiny_cfg, workspace, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer = _trainer(tiny_cfg, workspace, tmp_path / "out")
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    ids = trainer.processing_class("Who approves an expense?", return_tensors="pt")["input_ids"]
    # Without accelerate's mixed-precision wrapper: compare plain fp32 forwards.
    trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
    with torch.no_grad():
        before = trained(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_cfg.base_model)
        base_logits = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
        after = reloaded(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-5)
    assert not torch.allclose(base_logits, after, atol=1e-3)  # the adapter does something


def test_train_records_the_run_and_the_model(tiny_model_dir, tiny_dataset_dir, tiny_cfg, workspace):
    cfg = tiny_cfg
    run_id = train(cfg, workspace)
    run = dict(workspace.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone())
    assert run["status"] == "finished" and run["kind"] == "train"
    assert run["base_model"] == str(tiny_model_dir.resolve())
    assert run["dataset_id"] == tiny_dataset_dir.name and len(run["dataset_hash"]) == 64
    assert json.loads(run["config"])["sft"]["max_steps"] == 3
    metrics = json.loads(run["metrics"])["train"]
    assert metrics["global_step"] == 3 and metrics["eval_loss"] > 0
    assert metrics["num_tokens"] > 0 and metrics["tokens_per_second"] > 0
    run_dir = Path(run["path"])
    assert load_train_config(run_dir / "config.yaml") == cfg  # the resolved config reloads
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2, 3]
    model = dict(
        workspace.db.execute("SELECT * FROM models WHERE run_id = ?", (run_id,)).fetchone()
    )
    assert Path(model["adapter_path"]) == run_dir / "adapter"
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert model["base_model"] == str(tiny_model_dir.resolve())


class CtrlCAfterSave(TrainerCallback):
    """Interrupts training right after the step-2 checkpoint is written, like a Ctrl-C."""

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= 2:
            raise KeyboardInterrupt


def test_resume_continues_from_the_last_checkpoint(overrides, workspace):
    extra = ["sft.max_steps=4", "sft.save_strategy=steps", "sft.save_steps=1"]
    cfg = load_train_config(None, overrides(*extra))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, workspace, run_id="r1", callbacks=[CtrlCAfterSave()])
    status = workspace.db.execute("SELECT status FROM runs WHERE run_id='r1'").fetchone()[0]
    assert status == "interrupted"
    assert (workspace.path("runs", "r1", "checkpoints", "checkpoint-2")).is_dir()

    seen: list[int] = []
    resume_run(workspace, None, callbacks=[on_step(lambda s, m, logs: seen.append(s))])
    assert seen and min(seen) == 3 and max(seen) == 4  # continued, did not restart
    run = workspace.db.execute("SELECT status, metrics FROM runs WHERE run_id='r1'").fetchone()
    assert run["status"] == "finished"
    train_metrics = json.loads(run["metrics"])["train"]
    assert train_metrics["global_step"] == 4 and train_metrics["resumed_at_step"] == 2
    lines = workspace.path("runs", "r1", "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(x) for x in lines if "loss" in json.loads(x)]
    assert [x["step"] for x in logged] == [1, 2, 3, 4]
    # the run's train_loss is the mean over all four steps, not just the two after the resume
    assert train_metrics["train_loss"] == pytest.approx(sum(x["loss"] for x in logged) / 4)


def test_replay_records_are_mixed_in_from_the_cache(
    tiny_model_dir, tiny_dataset_dir, overrides, workspace
):
    from sopforge.train.config import DEFAULT_INSTRUCTIONS
    from sopforge.train.replay import cache_path, read_instructions

    cfg = load_train_config(None, overrides("replay.enabled=true", "replay.ratio=0.5"))
    # Seed the cache as if the base model had answered (the random tiny model only emits "\n").
    rows = [
        {
            "id": g.id,
            "prompt": g.prompt,
            "split": g.split,
            "expect": list(g.expect),
            "answer": f"A{i}",
        }
        for i, g in enumerate(read_instructions(DEFAULT_INSTRUCTIONS))
    ]
    path = cache_path(workspace, tiny_model_dir, DEFAULT_INSTRUCTIONS, cfg.replay.max_new_tokens)
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepared: Prepared = prepare(cfg, workspace)
    n_pairs = len(read_records(tiny_dataset_dir / "train.jsonl"))
    replay = [r for r in prepared.train_records if r["task"] == "replay"]
    assert prepared.n_replay == len(replay) == round(n_pairs * 0.5)
    assert {answer_of(r) for r in replay} <= {r["answer"] for r in rows if r["split"] == "train"}
    held_out = {r["prompt"] for r in rows if r["split"] == "eval"}
    assert not any(r["messages"][1]["content"] in held_out for r in replay)
