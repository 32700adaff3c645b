"""Length-grouped batches in random order: little padding without a length-ordered curriculum.

transformers' `group_by_length` sorts each mega-batch (up to 50 optimizer steps of records) by
length, longest first. Padding waste drops, but the order of a run becomes a curriculum: the first
steps of every mega-batch see only its longest records (on SOP data: open-book prompts), the last
ones its shortest. A run shorter than an epoch, or an eval loss read after a few steps, then
measures that bias rather than the settings (bench/train saw eval loss 2.94 vs 2.80 after 10 steps).

Here the records are grouped the same way (random mega-batches, sorted by length, cut into groups
of one optimizer step), and then the groups are shuffled: every step still pads to similar
lengths, and the lengths of successive steps are random. The longest group still comes first, so
a batch that does not fit in memory fails at step 1, not hours in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def shuffled_length_groups(
    lengths: Sequence[int], group: int, mega_groups: int = 50, generator: Any = None
) -> list[int]:
    """Indices in an order where every `group` consecutive ones have similar lengths.

    Uses torch's RNG (the Trainer seeds it, and restores it on `--resume`), or `generator`.
    """
    import torch

    n = len(lengths)
    if n == 0:
        return []
    group = max(1, int(group))
    mega = max(1, min(mega_groups, n // (group * 4))) * group
    perm = torch.randperm(n, generator=generator).tolist()
    groups: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = sorted(perm[start : start + mega], key=lambda i: lengths[i], reverse=True)
        groups.extend(chunk[i : i + group] for i in range(0, len(chunk), group))
    longest = max(range(len(groups)), key=lambda g: lengths[groups[g][0]])
    first = groups.pop(longest)
    order = torch.randperm(len(groups), generator=generator).tolist()
    return first + [i for g in order for i in groups[g]]


class ShuffledLengthGroupedSampler:
    """A torch Sampler over `shuffled_length_groups` (a new order each epoch)."""

    def __init__(self, lengths: Sequence[int], group: int, generator: Any = None) -> None:
        self.lengths = list(lengths)
        self.group = group
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(shuffled_length_groups(self.lengths, self.group, generator=self.generator))


def sft_trainer_class() -> type:
    """TRL's SFTTrainer, with `train_sampling_strategy: group_by_length` served by the sampler above."""
    from trl import SFTTrainer

    class SopforgeSFTTrainer(SFTTrainer):  # type: ignore[misc]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
                return super()._get_train_sampler(train_dataset)
            try:
                lengths = [len(ids) for ids in dataset["input_ids"]]
            except (KeyError, TypeError):
                return super()._get_train_sampler(train_dataset)
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return ShuffledLengthGroupedSampler(lengths, group)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            # transformers groups eval batches by length too under group_by_length; its eval_loss
            # is a mean of per-batch means, so that grouping changes the number (short records
            # weigh as much as long ones) and makes it incomparable with a run that samples at
            # random. Eval batches in dataset order, as TRL's default run has them.
            if self.args.train_sampling_strategy != "group_by_length" or eval_dataset is None:
                return super()._get_eval_sampler(eval_dataset)
            import torch

            return torch.utils.data.SequentialSampler(eval_dataset)

    return SopforgeSFTTrainer
