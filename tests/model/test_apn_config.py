"""APNConfig: registry contents, JSON round trip, and clear errors for malformed or absurd configs."""

import json
from dataclasses import replace

import pytest

from apncli.model import CONFIGS, APNConfig, get_config


def test_registry_has_paper_lite_tiny() -> None:
    assert {"paper", "lite", "tiny"} <= set(CONFIGS)
    paper = get_config("paper")
    assert (paper.num_bands, paper.crop, paper.spectrum_width) == (15, 224, 113)
    assert (paper.spatial_backbone, paper.band_backbone) == ("convnext_base", "resnet18")
    assert (paper.band_feature_dim, paper.attention_heads) == (512, 8)
    assert (paper.feature_dim, paper.base_rank, paper.classifier_hidden) == (256, 128, (128, 32, 10))
    assert paper.mask == "hard"
    lite = get_config("lite")
    assert lite.crop == 224 and lite.num_bands < paper.num_bands
    assert get_config("tiny").crop == 32 and get_config("tiny").num_bands == 3


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_through_json(name: str) -> None:
    config = CONFIGS[name]
    restored = APNConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.classifier_hidden, tuple)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="paper"):
        get_config("huge")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown APN config key"),
        ({"crop": "224"}, "'crop' must be an integer"),
        ({"crop": True}, "'crop' must be an integer"),
        ({"crop": 8192}, "crop must be a multiple of 32"),
        ({"crop": 100}, "crop must be a multiple of 32"),
        ({"num_bands": 65}, "num_bands"),
        ({"num_bands": 0}, "num_bands"),
        ({"mask": "fuzzy"}, "mask must be one of"),
        ({"soft_mask_tau": "wide"}, "must be a number"),
        ({"classifier_hidden": "128"}, "list of integers"),
        ({"classifier_hidden": [128, 0]}, "classifier_hidden"),
        ({"attention_heads": 7}, "attention_heads must divide"),
        ({"base_rank": 200}, "base_rank"),
        ({"convnext_widths": [64, 128, 256, 512]}, "convnext_base requires"),
        ({"resnet_widths": [64, 128, 256]}, "resnet_widths"),
        ({"spatial_backbone": "vit"}, "spatial_backbone"),
    ],
)
def test_from_dict_rejects_bad_values(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        APNConfig.from_dict({**CONFIGS["paper"].to_dict(), **change})


def test_from_dict_requires_core_keys_and_a_mapping() -> None:
    d = CONFIGS["lite"].to_dict()
    del d["crop"]
    with pytest.raises(ValueError, match=r"missing required key.*crop"):
        APNConfig.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        APNConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_direct_construction_is_validated_and_normalised() -> None:
    with pytest.raises(ValueError, match="num_bands"):
        replace(CONFIGS["tiny"], num_bands=100)
    config = replace(CONFIGS["tiny"], classifier_hidden=[8, 4])  # type: ignore[arg-type]
    assert config.classifier_hidden == (8, 4) and hash(config)
