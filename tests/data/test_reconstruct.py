"""Reconstruction fakes: pad/tile/blend/crop logic, weight resolution, and the missing-weights errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from apncli.data import reconstruct
from apncli.data.reconstruct import Reconstructor, make_reconstruction_source
from apncli.errors import CheckpointError, ModelNotFoundError, UsageError
from apncli.model.taef2 import TinyAutoencoder

SPEC = "reconstruct:taef2"


class _Identity(torch.nn.Module):
    """Stands in for the autoencoder: checks every tile it is given, returns it unchanged."""

    def __init__(self, max_side: int) -> None:
        super().__init__()
        self.max_side = max_side
        self.calls = 0

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        assert h % 8 == 0 and w % 8 == 0 and max(h, w) <= self.max_side
        self.calls += 1
        return x


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init TAEF2 weights saved as fp16 .pth files, named like the published ones."""
    torch.manual_seed(0)
    model = TinyAutoencoder()
    folder = tmp_path_factory.mktemp("taef2")
    for part in ("encoder", "decoder"):
        state = {k: v.half() for k, v in getattr(model, part).state_dict().items()}
        torch.save(state, folder / f"taef2_{part}.pth")
    return folder


def _image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * 100 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("h", "w"), [(37, 29), (1, 5), (16, 12), (70, 50)])
def test_pad_tile_blend_crop_is_exact_for_identity(h: int, w: int) -> None:
    img = _image(h, w)
    stub = _Identity(max_side=32)
    out = Reconstructor(stub, tile=32, overlap=16)(img)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)
    assert stub.calls >= (2 if max(h, w) > 32 else 1)


def test_random_model_keeps_size_and_dtype(weights_dir: Path) -> None:
    source = make_reconstruction_source(
        SPEC, encoder_path=weights_dir / "taef2_encoder.pth", decoder_path=weights_dir / "taef2_decoder.pth"
    )
    img = _image(45, 30)
    out = source(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert all(p.dtype == torch.float32 for p in source.model.parameters())


def test_env_dir(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reconstruct.ENV_DIR, str(weights_dir))
    assert make_reconstruction_source(SPEC)(_image(16, 24)).shape == (16, 24, 3)


def test_env_dir_without_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reconstruct.ENV_DIR, str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"taef2_encoder\.pth"):
        make_reconstruction_source(SPEC)


def test_registry_names_and_missing_hint(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(reconstruct.ENV_DIR, raising=False)
    asked: list[str] = []

    def resolve(name: str) -> Path:
        asked.append(name)
        return weights_dir / f"{name}.pth"

    monkeypatch.setattr("apncli.engine.cache.resolve_weights", resolve)
    make_reconstruction_source(SPEC)
    assert asked == ["taef2_encoder", "taef2_decoder"]

    def offline(name: str) -> Path:
        raise ModelNotFoundError(f"{name} is not cached and APN_OFFLINE=1")

    monkeypatch.setattr("apncli.engine.cache.resolve_weights", offline)
    with pytest.raises(ModelNotFoundError, match="APN_TAEF2_DIR"):
        make_reconstruction_source(SPEC)


def test_missing_explicit_path(weights_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"nope\.pth"):
        make_reconstruction_source(
            SPEC, encoder_path=weights_dir / "taef2_encoder.pth", decoder_path=tmp_path / "nope.pth"
        )


def test_swapped_files_are_a_checkpoint_error(weights_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="not TAEF2"):
        make_reconstruction_source(
            SPEC,
            encoder_path=weights_dir / "taef2_decoder.pth",
            decoder_path=weights_dir / "taef2_encoder.pth",
        )


def test_bad_arguments(weights_dir: Path) -> None:
    with pytest.raises(UsageError, match="known: reconstruct:taef2"):
        make_reconstruction_source("reconstruct:sdxl")
    with pytest.raises(UsageError, match="both"):
        make_reconstruction_source(SPEC, encoder_path=weights_dir / "taef2_encoder.pth")
    with pytest.raises(ValueError, match="overlap"):
        Reconstructor(_Identity(64), tile=32, overlap=32)
    with pytest.raises(ValueError, match="uint8"):
        Reconstructor(_Identity(64))(np.zeros((8, 8), np.uint8))


def test_disk_memo_synthesises_each_photo_once(tmp_path: Path) -> None:
    """Training draws every real each epoch; the memo runs the (slow) source once per distinct photo."""
    calls: list[tuple[int, ...]] = []

    def invert(rgb: np.ndarray) -> np.ndarray:
        calls.append(rgb.shape)
        return 255 - rgb

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(2))
    memo = reconstruct.DiskMemo(invert, tmp_path / "cache", tag="invert")
    for _ in range(3):
        assert np.array_equal(memo(a), 255 - a) and np.array_equal(memo(b), 255 - b)
    assert len(calls) == 2
    assert np.array_equal(memo(a.reshape(30, 20, 3)), 255 - a.reshape(30, 20, 3)) and len(calls) == 3
    memo.path_for(a).write_bytes(b"torn")  # an unreadable entry is recomputed and rewritten
    assert np.array_equal(memo(a), 255 - a) and len(calls) == 4
    assert np.array_equal(memo(a), 255 - a) and len(calls) == 4
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".png"] * 3  # no temp files left
