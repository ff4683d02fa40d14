"""Training data: seeded hold-out splits, a map-style dataset with deterministic augmentation, a resumable
distributed sampler, and batch collation that carries the names of unreadable files.

Determinism is by construction rather than by process state: every sample's augmentation and crop are
drawn from a generator seeded with (run seed, stream, epoch, index — or the pair's key, for the two items of
an aligned pair), so the same sample gets the same pixels whatever the number of loader workers, processes,
or restarts. Resume then only needs the epoch and the position in the sampler's permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from apncli.data import crops as crop_ops
from apncli.data.augment import AugmentConfig, augment
from apncli.data.images import decode_image
from apncli.data.layouts import Sample
from apncli.errors import one_line

__all__ = [
    "Batch",
    "Holdout",
    "ResumableSampler",
    "TrainDataset",
    "collate",
    "split_holdout",
]

#: An extra source of fakes: real RGB uint8 image → AI-processed RGB uint8 image (e.g. reconstruction).
FakeSource = Callable[[np.ndarray], np.ndarray]

_MAX_SUBSTITUTES = 16
_SUBSTITUTE_STRIDE = 7919  # a prime: substitutes spread over the dataset instead of hitting a bad folder


@dataclass
class Holdout:
    """The training files split three ways by a seeded, per-class shuffle."""

    train: list[Sample]
    val: list[Sample] = field(default_factory=list)
    calib: list[Sample] = field(default_factory=list)


def split_holdout(samples: Sequence[Sample], fraction: float, seed: int) -> Holdout:
    """Hold out ``fraction`` of each class; half of it selects the best epoch, half calibrates the threshold.

    Model selection and threshold calibration use different files so the calibrated false-positive rate is
    not biased by the selection. Stratified so both halves contain reals and fakes.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {fraction}")
    out = Holdout(train=[])
    for label in (0, 1):
        group = sorted(s for s in samples if s.label == label)
        order = np.random.default_rng([seed, 7, label]).permutation(len(group))
        n_hold = round(fraction * len(group))
        if fraction > 0 and len(group) >= 4:
            n_hold = max(n_hold, 2)
        held = [group[i] for i in order[:n_hold]]
        out.train += [group[i] for i in order[n_hold:]]
        out.val += held[: (len(held) + 1) // 2]
        out.calib += held[(len(held) + 1) // 2 :]
    out.train.sort()
    out.val.sort()
    out.calib.sort()
    return out


@dataclass(frozen=True)
class _Item:
    sample: Sample
    label: int
    source: str | None  # the extra fake source this item belongs to (its fake or its real view), or None
    pair: int | None = None  # both items of an aligned pair draw augmentation and crop from this key


class TrainDataset(Dataset):
    """Decoded, augmented, randomly cropped training images as BGR float tensors in [0, 1].

    ``fake_sources`` adds an *aligned pair* per real file and source: the AI-processed copy (labelled fake)
    and the same region of the real file (labelled real), both given identical augmentation and crop. The
    two crops then show the same content at the same place and differ only in the source's traces, which
    is what ``--fakes reconstruct:taef2`` is for; and the classes stay balanced instead of the extra fakes
    outnumbering the reals. A source may return a centre window of its input (smaller than it, never
    larger): the real view is then that window.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop: int,
        augment_cfg: AugmentConfig,
        seed: int,
        fake_sources: dict[str, FakeSource] | None = None,
        stream: int = 0,
    ) -> None:
        self.crop = crop
        self.augment_cfg = augment_cfg
        self.seed = seed
        self.stream = stream
        self.epoch = 0
        self.fake_sources = dict(fake_sources or {})
        items = [_Item(s, s.label, None) for s in samples]
        self._n_plain = len(items)
        for name in sorted(self.fake_sources):
            for real in (s for s in samples if s.label == 0):
                pair = len(items)
                items += [_Item(real, 1, name, pair), _Item(real, 0, name, pair)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of this epoch (call before creating the loader iterator)."""
        self.epoch = epoch

    def labels(self) -> list[int]:
        return [it.label for it in self.items]

    def generators(self) -> list[str]:
        return [it.source if it.source and it.label else it.sample.generator for it in self.items]

    def _load(self, index: int) -> torch.Tensor:
        item = self.items[index]
        rgb = decode_image(item.sample.path).pixels
        if item.source is not None:
            fake = self.fake_sources[item.source](rgb)
            rgb = fake if item.label == 1 else crop_ops.center_window(rgb, *fake.shape[:2])
        key = index if item.pair is None else item.pair
        rng = np.random.default_rng([self.seed, self.stream, self.epoch, key])
        rgb = augment(rgb, rng, self.augment_cfg, min_side=self.crop)
        crop = crop_ops.random_crop(crop_ops.pad_to(rgb, self.crop), self.crop, rng)
        return crop_ops.to_tensor_bgr([crop])[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, list[str]]:
        """(image, label, index actually used, errors); a bad file is replaced by a deterministic other."""
        errors: list[str] = []
        for attempt in range(_MAX_SUBSTITUTES):
            used = self._substitute(index, attempt)
            try:
                return self._load(used), self.items[used].label, used, errors
            except Exception as exc:  # one bad file (or codec failure) must never end a long run
                errors.append(f"{self.items[used].sample.path}: {one_line(exc)}")
        raise RuntimeError(f"{_MAX_SUBSTITUTES} files in a row could not be read; last: {errors[-1]}")

    def _substitute(self, index: int, attempt: int) -> int:
        """The item tried for ``index`` at retry ``attempt`` (0: itself), deterministic.

        An aligned pair's item moves to the same role in another pair, so both halves of a pair whose photo
        is unreadable are replaced by the two halves of one other pair, still aligned.
        """
        item = self.items[index]
        if attempt == 0:
            return index
        if item.pair is None:
            return (index + attempt * _SUBSTITUTE_STRIDE) % len(self.items)
        n_pairs = (len(self.items) - self._n_plain) // 2
        other = ((item.pair - self._n_plain) // 2 + attempt * _SUBSTITUTE_STRIDE) % n_pairs
        return self._n_plain + 2 * other + (index - item.pair)


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    errors: list[str]


def collate(rows: list[tuple[torch.Tensor, int, int, list[str]]]) -> Batch:
    """Stack a list of dataset rows; unreadable-file messages travel with the batch to the main process."""
    return Batch(
        images=torch.stack([r[0] for r in rows]),
        labels=torch.tensor([r[1] for r in rows], dtype=torch.long),
        indices=torch.tensor([r[2] for r in rows], dtype=torch.long),
        errors=[e for r in rows for e in r[3]],
    )


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded per-epoch shuffle, one shard per process) that can start mid-epoch.

    With ``world`` processes each taking ``batch/world`` consecutive indices of its shard, the union of one
    step's per-process batches is exactly the single-process batch of that step.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this process's shard (the batches already trained on)."""
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
