"""TAEF2 module: published key layout, strict fp16 round trip, shapes; real weights only when present."""

from pathlib import Path

import numpy as np
import pytest
import torch

from apncli.model.taef2 import LATENT_CHANNELS, TAEDecoder, TAEEncoder, TinyAutoencoder

SHARED = Path("/work/shared/models/taef2")


@pytest.fixture(scope="module")
def model() -> TinyAutoencoder:
    torch.manual_seed(0)
    return TinyAutoencoder().eval()


def test_key_layout_matches_published_weights() -> None:
    """Counts and a few keys of taef2_{encoder,decoder}.pth: GN ``pool`` branches only at the lowest scale."""
    enc, dec = TAEEncoder().state_dict(), TAEDecoder().state_dict()
    assert (len(enc), len(dec)) == (79, 79)
    assert sum(v.numel() for v in enc.values()) == 1_338_528
    assert sum(v.numel() for v in dec.values()) == 1_338_499
    assert {"0.weight", "2.weight", "11.pool.1.bias", "14.bias"} <= enc.keys()
    assert "2.bias" not in enc and "1.pool.0.weight" not in enc
    assert {"1.weight", "3.pool.3.weight", "7.weight", "19.bias"} <= dec.keys()
    assert "7.bias" not in dec and "8.pool.0.weight" not in dec
    assert enc["14.weight"].shape == (LATENT_CHANNELS, 64, 3, 3)


def test_fp16_state_dict_round_trip_strict(model: TinyAutoencoder, tmp_path: Path) -> None:
    for part in ("encoder", "decoder"):
        half = {k: v.half() for k, v in getattr(model, part).state_dict().items()}
        torch.save(half, tmp_path / f"{part}.pth")
    enc = torch.load(tmp_path / "encoder.pth", weights_only=True)
    dec = torch.load(tmp_path / "decoder.pth", weights_only=True)
    loaded = TinyAutoencoder.from_state_dicts(enc, dec)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    torch.testing.assert_close(loaded.encoder[14].weight, enc["14.weight"].float(), rtol=0, atol=0)
    del dec["19.bias"]
    with pytest.raises(RuntimeError, match=r"19\.bias"):
        TinyAutoencoder.from_state_dicts(enc, dec)


def test_shapes_and_range(model: TinyAutoencoder) -> None:
    x = torch.rand(2, 3, 48, 40)
    with torch.inference_mode():
        z = model.encode(x)
        y = model.reconstruct(x)
    assert z.shape == (2, LATENT_CHANNELS, 6, 5)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_rejects_bad_shapes(model: TinyAutoencoder) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        model.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="latent"):
        model.decode(torch.rand(1, 16, 4, 4))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="real TAEF2 weights not available")
def test_real_weights_reconstruct_smooth_image() -> None:
    enc = torch.load(SHARED / "taef2_encoder.pth", weights_only=True)
    dec = torch.load(SHARED / "taef2_decoder.pth", weights_only=True)
    model = TinyAutoencoder.from_state_dicts(enc, dec)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * xx), yy, 0.5 + 0.3 * np.cos(3 * np.pi * (xx + yy))])
    x = torch.from_numpy(img).float()[None]
    with torch.inference_mode():
        mse = float(((model.reconstruct(x) - x) ** 2).mean())
    assert 10 * np.log10(1 / mse) > 25
