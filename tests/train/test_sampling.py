"""Length-grouped batches in random order (train/sampling.py)."""

from __future__ import annotations

import random

import torch

from sopforge.train.config import load_train_config
from sopforge.train.run import build_trainer, prepare
from sopforge.train.sampling import ShuffledLengthGroupedSampler, shuffled_length_groups
from tests.train.conftest import tiny_overrides


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 2000) for _ in range(n)]


def test_every_index_once_and_the_longest_group_first():
    lengths = _lengths(1000)
    order = shuffled_length_groups(lengths, 8, generator=torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(1000))
    assert max(lengths) == lengths[order[0]]


def test_groups_pad_little_compared_with_random_batches():
    lengths = _lengths(1000)
    order = shuffled_length_groups(lengths, 8, generator=torch.Generator().manual_seed(1))
    rand = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()

    def padded(ix: list[int]) -> int:
        return sum(8 * max(lengths[i] for i in ix[k : k + 8]) for k in range(0, len(ix), 8))

    # Random batches of 8 pad to ~1.7x the real tokens; grouped ones to within a few percent.
    assert padded(order) < 1.15 * sum(lengths) < padded(rand)


def test_the_first_steps_are_not_a_length_curriculum():
    """transformers' group_by_length trains a mega-batch's longest records first; here the
    first 10 steps (after the one longest group) see short and long records alike."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = _lengths(4000, seed=3)  # mega-batches of 50 steps, as in a real run
    mean = sum(lengths) / len(lengths)
    torch.manual_seed(0)
    theirs = get_length_grouped_indices(lengths, 8)
    means_ours = []
    for seed in range(20):
        ours = shuffled_length_groups(lengths, 8, generator=torch.Generator().manual_seed(seed))
        means_ours.append(sum(lengths[i] for i in ours[8:88]) / 80)
    theirs_mean = sum(lengths[i] for i in theirs[8:88]) / 80
    assert theirs_mean > 1.4 * mean  # the curriculum this module removes
    assert abs(sum(means_ours) / len(means_ours) - mean) < 0.1 * mean


def test_a_new_order_every_epoch_and_small_inputs():
    s = ShuffledLengthGroupedSampler(_lengths(64), 8)
    assert len(s) == 64 and list(s) != list(s)
    assert shuffled_length_groups([], 8) == []
    assert sorted(shuffled_length_groups([5, 3, 9], 8)) == [0, 1, 2]


def test_the_trainer_uses_it_for_group_by_length(
    tiny_model_dir, tiny_dataset_dir, workspace, tmp_path
):
    extra = ("sft.train_sampling_strategy=group_by_length", "sft.per_device_train_batch_size=2")
    cfg = load_train_config(None, tiny_overrides(tiny_model_dir, tiny_dataset_dir, *extra))
    trainer = build_trainer(cfg, prepare(cfg, workspace), tmp_path / "out", workspace)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ShuffledLengthGroupedSampler)
    assert sampler.lengths == [len(x) for x in trainer.train_dataset["input_ids"]]
    assert sampler.group == 2  # batch 2 x accumulation 1
    # evaluation is not length-grouped: its eval_loss compares with a randomly sampled run's
    eval_order = list(trainer._get_eval_sampler(trainer.eval_dataset))
    assert eval_order == list(range(len(trainer.eval_dataset)))
    extra = ("sft.train_sampling_strategy=random",)
    cfg = load_train_config(None, tiny_overrides(tiny_model_dir, tiny_dataset_dir, *extra))
    trainer = build_trainer(cfg, prepare(cfg, workspace), tmp_path / "out2", workspace)
    assert not isinstance(trainer._get_train_sampler(), ShuffledLengthGroupedSampler)
