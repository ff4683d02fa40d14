"""Detector loading: the inference-only rewrites of a checkpoint's network score what the network scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from apncli.data.crops import to_tensor_bgr
from apncli.engine import checkpoint
from apncli.engine.detector import Detector
from apncli.model import build_model


def test_pretrained_lite0_loads_with_its_trunks_batchnorm_folded_and_scores_unchanged(tmp_path: Path) -> None:
    """Folding removes the EfficientNet-Lite trunks' BatchNorm passes and leaves the probabilities equal to
    the checkpoint's own network up to float rounding."""
    torch.manual_seed(0)
    model = build_model("pretrained-lite0").eval()
    with torch.no_grad():  # statistics away from identity, so a wrong fold would show
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        model.classifier[-1].weight.mul_(50.0)  # spread p(AI) over (0, 1)
    metadata = {"format_version": 1, "name": "lite0-test", "config": model.config.to_dict(),
                "preprocessing": checkpoint.default_preprocessing(model.config), "threshold": 0.5,
                "inconclusive_band": [0.5, 0.5]}
    path = checkpoint.save_checkpoint(tmp_path / "lite0.safetensors", model.state_dict(), metadata)

    detector = Detector.load(path, device="cpu")

    trunks = (detector.model.spatial_backbone, detector.model.semantic_head)
    assert not [m for trunk in trunks for m in trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    crops = list(np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8))
    with torch.inference_mode():
        expected = model.probability(to_tensor_bgr(crops)).double().numpy()
    got = detector.predict_crops(crops)
    assert np.abs(got - expected).max() < 1e-6
