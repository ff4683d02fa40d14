"""Seeded splits, deterministic samples, bad-file substitution and the resumable distributed sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthdata import write_images

from apncli.data.augment import AugmentConfig
from apncli.data.crops import center_window
from apncli.data.layouts import Sample
from apncli.training.dataset import ResumableSampler, TrainDataset, collate, split_holdout


def _samples(n: int) -> list[Sample]:
    return [Sample(Path(f"/x/{c}{i:03d}.png"), int(c == "f"), "g") for c in "rf" for i in range(n)]


def test_holdout_is_seeded_stratified_and_disjoint() -> None:
    samples = _samples(40)
    a, b = split_holdout(samples, 0.2, seed=1), split_holdout(samples, 0.2, seed=1)
    assert a == b and split_holdout(samples, 0.2, seed=2) != a
    parts = [a.train, a.val, a.calib]
    assert sum(map(len, parts)) == 80 and len({s for p in parts for s in p}) == 80
    for part, n in ((a.val, 4), (a.calib, 4)):
        assert [s.label for s in part].count(0) == n and [s.label for s in part].count(1) == n
    assert split_holdout(samples, 0.0, 0).train == sorted(samples)
    with pytest.raises(ValueError):
        split_holdout(samples, 1.0, 0)


@pytest.fixture
def files(tmp_path: Path) -> list[Sample]:
    reals = write_images(tmp_path / "real", 3, False, seed=0)
    fakes = write_images(tmp_path / "fake", 3, True, seed=1)
    (tmp_path / "real" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    reals.append(tmp_path / "real" / "broken.png")
    return sorted([Sample(p, 0, "real") for p in reals] + [Sample(p, 1, "g") for p in fakes])


def test_items_are_deterministic_per_seed_epoch_and_index(files: list[Sample]) -> None:
    cfg = AugmentConfig(compress_prob=0.5, blur_prob=0.5)
    ds = TrainDataset(files, 32, cfg, seed=5)
    x1, label, used, errors = ds[1]
    assert (
        x1.shape == (3, 32, 32) and x1.dtype == torch.float32 and 0 <= float(x1.min()) <= float(x1.max()) <= 1
    )
    assert used == 1 and errors == [] and label == files[1].label
    assert torch.equal(TrainDataset(files, 32, cfg, seed=5)[1][0], x1)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], x1)  # a new epoch draws a new crop/augmentation


def test_unreadable_file_is_replaced_and_reported(files: list[Sample]) -> None:
    ds = TrainDataset(files, 32, AugmentConfig.off(), seed=0)
    bad = next(i for i, s in enumerate(files) if s.path.name == "broken.png")
    image, _label, used, errors = ds[bad]
    assert used != bad and image.shape == (3, 32, 32)
    assert len(errors) == 1 and "broken.png" in errors[0]
    batch = collate([ds[bad], ds[(bad + 1) % len(ds)]])
    assert batch.images.shape == (2, 3, 32, 32) and batch.errors == errors


def _readable_pairs(ds: TrainDataset, n_originals: int) -> list[tuple[int, int]]:
    """(fake index, real-view index) of every aligned pair whose photo decodes."""
    pairs = [(i, i + 1) for i in range(n_originals, len(ds), 2)]
    return [(f, r) for f, r in pairs if ds.items[f].sample.path.name != "broken.png"]


def test_extra_fake_sources_add_an_aligned_real_fake_pair_per_real(files: list[Sample]) -> None:
    def negative_window(rgb: np.ndarray) -> np.ndarray:  # a source that processes a centre window
        return 255 - center_window(rgb, 36, 38)

    ds = TrainDataset(files, 32, AugmentConfig.off(), 0, fake_sources={"reconstruct:x": negative_window})
    reals = [s for s in files if s.label == 0]
    assert len(ds) == len(files) + 2 * len(reals)  # classes stay balanced: one real view per extra fake
    assert ds.labels()[len(files) :] == [1, 0] * len(reals)
    assert ds.generators()[len(files) :][:2] == ["reconstruct:x", "real"]
    readable = _readable_pairs(ds, len(files))
    assert len(readable) == len(reals) - 1
    for fake_index, real_index in readable:
        fake, _, used_fake, _ = ds[fake_index]
        real, _, used_real, _ = ds[real_index]
        assert (used_fake, used_real) == (fake_index, real_index)
        # Same window of the same photo, same crop: the pair differs only in what the source did.
        torch.testing.assert_close(fake, 1 - real, rtol=0, atol=1e-6)
    # An unreadable photo's pair is replaced by one other pair, both halves, still aligned.
    broken = next(i for i in range(len(files), len(ds), 2) if ds.items[i].sample.path.name == "broken.png")
    (fake, fake_label, used_fake, errors), (real, real_label, used_real, _) = ds[broken], ds[broken + 1]
    assert used_real == used_fake + 1 != broken + 1 and (fake_label, real_label) == (1, 0)
    assert len(errors) == 1 and "broken.png" in errors[0]
    torch.testing.assert_close(fake, 1 - real, rtol=0, atol=1e-6)


def test_aligned_pairs_share_every_augmentation_draw(files: list[Sample]) -> None:
    strong = AugmentConfig(compress_prob=1.0, blur_prob=1.0, downscale_prob=1.0, downscale_range=(0.7, 0.9))
    ds = TrainDataset(files, 32, strong, 3, fake_sources={"identity": lambda rgb: rgb.copy()})
    ds.set_epoch(2)
    pairs = _readable_pairs(ds, len(files))
    assert pairs and all(torch.equal(ds[f][0], ds[r][0]) for f, r in pairs)
    # The pair's draws are its own: the same photo as a plain training item gets other ones.
    fake_index, _ = pairs[0]
    plain = next(i for i, it in enumerate(ds.items) if it.sample == ds.items[fake_index].sample)
    assert plain < len(files) and not torch.equal(ds[plain][0], ds[fake_index][0])


def test_sampler_resumes_mid_epoch_and_ranks_partition_the_global_batch() -> None:
    data = list(range(23))
    single = ResumableSampler(data, 1, 0, seed=3)
    single.set_epoch(2)
    order = list(single)
    assert len(order) == 23 and sorted(order) == data
    single.set_start(8)
    assert list(single) == order[8:] and len(single) == 15
    ranks = [ResumableSampler(data, 2, r, seed=3) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    shards = [list(r) for r in ranks]
    # global batch 4 = 2 per process: step i of the union equals step i of the single-process order
    for step in range(5):
        union = sorted(shards[0][2 * step : 2 * step + 2] + shards[1][2 * step : 2 * step + 2])
        assert union == sorted(order[4 * step : 4 * step + 4])
    assert np.intersect1d(shards[0], shards[1]).size == 0
