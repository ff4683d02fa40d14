"""explain_image: everything shown is what the network computed, and occlusion means what it says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from explain_helpers import image_array

from apncli.engine.detector import AI_GENERATED
from apncli.explain import Explanation, explain_image
from apncli.explain.occlusion import remove_band

TOP_KEYS = {"schema", "path", "image", "verdict", "low_signal", "p_ai", "threshold", "inconclusive_band",
            "model", "crop", "tiles", "spectrum", "bands", "occlusion", "maps", "figure"}
BAND_KEYS = {"index", "weight", "share", "valid", "occlusion_delta", "amplitude", "phase"}
AXIS_KEYS = {"bins", "cycles_per_pixel", "valid"}


@pytest.fixture(scope="module")
def explained(detector) -> tuple[Explanation, np.ndarray]:
    rgb = image_array(48, 40)
    return explain_image(detector, rgb, source="photo.png"), rgb


def _same_forward(detector, rgb: np.ndarray):
    """An independent forward of the analysed crop, outside explain."""
    analysis = detector.analyse(rgb)
    with torch.inference_mode():
        out = detector.model(analysis.input_tensor, return_images=True)
    return analysis, out


def test_band_maps_are_the_weighted_model_masks(detector, explained) -> None:
    explanation, rgb = explained
    _, out = _same_forward(detector, rgb)
    masks = detector.model.band_masks(out)
    w = out.band_weights[0]
    for component in ("amplitude", "phase"):
        expected = (masks[component][0] * w[None, :, None, None]).sum(1) / w.sum()
        np.testing.assert_allclose(explanation.band_maps[component], expected.numpy(), atol=1e-6)
        full = explanation.centred_band_map(component)
        assert full.shape == explanation.crop_size
    np.testing.assert_allclose([b.weight for b in explanation.bands], w.numpy(), rtol=1e-6)
    assert sum(b.share for b in explanation.bands) == pytest.approx(1.0)


def test_band_ranges_follow_the_proposals(detector, explained) -> None:
    explanation, rgb = explained
    _, out = _same_forward(detector, rgb)
    height = explanation.crop_size[0]
    band = explanation.bands[0]
    for c, ranges in enumerate(band.amplitude):
        a = int(torch.clamp(torch.floor(out.amplitude.starts_x[0, c, 0] * height), 0, height - 1))
        assert ranges.rows.bins[0] == a
        assert ranges.rows.valid == bool(out.amplitude.valid_x[0, c, 0])
        for lo, hi in ranges.rows.cycles_per_pixel:
            assert -0.5 <= lo <= hi < 0.5
        lo, hi = ranges.columns.cycles_per_pixel[0]
        assert 0.0 <= lo <= hi <= 0.5


def test_occlusion_deltas_match_an_independent_rerun(detector, explained) -> None:
    explanation, rgb = explained
    analysis, out = _same_forward(detector, rgb)
    masks = detector.model.band_masks(out)["amplitude"][0].numpy()  # (3, K, H, W')
    x = analysis.input_tensor[0].double().numpy()
    p_crop = float(torch.softmax(out.logits, -1)[0, 1])
    assert explanation.p_crop == pytest.approx(p_crop, abs=1e-6)
    for k, band in enumerate(explanation.bands):
        spectrum = np.fft.rfft2(x) * (1.0 - masks[:, k])
        removed = torch.from_numpy(np.fft.irfft2(spectrum, s=x.shape[-2:])[None]).float()
        with torch.inference_mode():
            p_without = float(detector.model.probability(removed)[0])
        assert band.occlusion_delta == pytest.approx(p_crop - p_without, abs=1e-5)
    deltas = [b.occlusion_delta for b in explanation.bands]
    assert max(abs(d) for d in deltas) > 1e-4, "the sharpened tiny model should react to some band"


def test_remove_band_with_empty_mask_is_identity() -> None:
    x = torch.rand(1, 3, 32, 32)
    np.testing.assert_allclose(remove_band(x, torch.zeros(1, 3, 32, 17)).numpy(), x.numpy(), atol=1e-6)
    assert float(remove_band(x, torch.ones(1, 3, 32, 17)).abs().max()) < 1e-6


def test_artifact_map_is_weighted_art_image(detector, explained) -> None:
    explanation, rgb = explained
    _, out = _same_forward(detector, rgb)
    w = out.band_weights[0]
    mixed = (out.art_images[0] * w[:, None, None, None]).sum(0) / w.sum()
    magnitude = mixed.abs().mean(0).numpy()
    low, high = np.percentile(magnitude, [1, 99.5])
    expected = np.clip((magnitude - low) / (high - low), 0, 1)
    assert explanation.artifact_range == pytest.approx((low, high))
    np.testing.assert_allclose(explanation.artifact_map, expected, atol=1e-5)
    assert explanation.artifact_map.shape == explanation.crop_size


def test_large_image_explains_the_tile_that_drove_the_verdict(detector) -> None:
    rgb = image_array(64, 72, seed=3)
    explanation = explain_image(detector, rgb, occlusion=False)
    record = explanation.to_dict()
    assert record["crop"]["tile_count"] == len(record["tiles"]) == 4
    scores = [t["p_ai"] for t in record["tiles"]]
    pick = max if explanation.verdict == AI_GENERATED else min
    assert record["crop"]["p_ai"] == pytest.approx(pick(scores), abs=1e-6)
    assert record["tiles"][record["crop"]["tile_index"]]["box"] == record["crop"]["box"]
    assert record["p_ai"] == pytest.approx(float(np.mean(scores)))
    assert record["occlusion"] == {"enabled": False, "p_crop": record["crop"]["p_ai"], "p_without": None,
                                   "deltas": None}
    assert all(b["occlusion_delta"] is None for b in record["bands"])


def test_to_dict_has_the_documented_keys_and_is_strict_json(explained) -> None:
    explanation, _ = explained
    record = explanation.to_dict()
    assert set(record) == TOP_KEYS
    assert record["schema"] == "apn.explain/1"
    assert set(record["image"]) == {"width", "height"} and record["image"] == {"width": 40, "height": 48}
    assert set(record["model"]) == {"name", "sha256", "config"}
    assert set(record["crop"]) == {"box", "tile_index", "tile_count", "p_ai", "padded"}
    assert set(record["spectrum"]) == {"height", "width", "columns", "channel_order", "mask"}
    assert set(record["occlusion"]) == {"enabled", "p_crop", "p_without", "deltas"}
    assert set(record["maps"]) == {"cells", "amplitude", "phase", "artifact", "artifact_range"}
    assert np.asarray(record["maps"]["amplitude"]).shape == (24, 24)
    assert len(record["bands"]) == 3
    for band in record["bands"]:
        assert set(band) == BAND_KEYS
        for component in ("amplitude", "phase"):
            assert set(band[component]) == {"B", "G", "R"}
            for channel in band[component].values():
                assert set(channel) == {"rows", "columns"}
                assert set(channel["rows"]) == set(channel["columns"]) == AXIS_KEYS
    json.dumps(record, allow_nan=False)
