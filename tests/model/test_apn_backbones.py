"""torchvision-compatible names: official convnext_base / resnet18 ImageNet state dicts load into the trunks.

No download: a torchvision-shaped state dict is rebuilt from the paper model's own trunk (on the meta
device, so the 112M-parameter model costs no memory) plus torchvision's classification head, and checked
against key names, shapes and counts of the real torchvision checkpoints.
"""

import pytest
import torch

from apncli.model import APN, build_model, get_config, load_backbone_weights
from apncli.model.backbones import ConvNeXt, ResNet

# (key, shape) pairs of the real torchvision checkpoints convnext_base-6075fbad.pth / resnet18-f37072fd.pth
CONVNEXT_KEYS = {
    "features.0.0.weight": (128, 3, 4, 4),
    "features.0.0.bias": (128,),
    "features.0.1.weight": (128,),
    "features.1.0.block.0.weight": (128, 1, 7, 7),
    "features.1.0.block.2.bias": (128,),
    "features.1.0.block.3.weight": (512, 128),
    "features.1.0.block.5.weight": (128, 512),
    "features.1.0.layer_scale": (128, 1, 1),
    "features.2.0.weight": (128,),
    "features.2.1.weight": (256, 128, 2, 2),
    "features.5.26.block.3.bias": (2048,),
    "features.7.2.layer_scale": (1024, 1, 1),
    "classifier.0.weight": (1024,),
    "classifier.2.weight": (1000, 1024),
}
RESNET_KEYS = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_mean": (128,),
    "layer4.1.bn2.running_var": (512,),
    "fc.weight": (1000, 512),
}
CONVNEXT_HEAD = {
    "classifier.0.weight": (1024,),
    "classifier.0.bias": (1024,),
    "classifier.2.weight": (1000, 1024),
    "classifier.2.bias": (1000,),
}
RESNET_HEAD = {"fc.weight": (1000, 512), "fc.bias": (1000,)}


@pytest.fixture(scope="module")
def paper() -> APN:
    with torch.device("meta"):
        return build_model("paper")


def _torchvision_state_dict(trunk: torch.nn.Module, drop: str, head: dict) -> dict[str, torch.Tensor]:
    """What torchvision's checkpoint holds: our trunk's tensors plus torchvision's own 1000-class head."""
    sd = {k: v for k, v in trunk.state_dict().items() if not k.startswith(drop)}
    device = next(iter(sd.values())).device
    return {**sd, **{k: torch.empty(shape, device=device) for k, shape in head.items()}}


def test_convnext_base_state_dict_matches_torchvision(paper: APN) -> None:
    sd = _torchvision_state_dict(paper.spatial_backbone, "classifier.", CONVNEXT_HEAD)
    assert len(sd) == 344  # torchvision convnext_base: 340 trunk entries + classifier.{0,2}.{weight,bias}
    for key, shape in CONVNEXT_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    # 340 trunk entries + torchvision's head LayerNorm (classifier.0), which APN's head starts with too
    assert load_backbone_weights(paper, "convnext_base", sd) == 342


def test_convnext_head_layernorm_is_loaded_not_dropped() -> None:
    """torchvision's pretrained classifier.0 LayerNorm feeds the pooled feature; APN keeps it."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = build_model(get_config("paper"))
    model.spatial_backbone = ConvNeXt()  # materialise the branch this test reads
    sd = {k: torch.randn_like(v) for k, v in model.spatial_backbone.state_dict().items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(("classifier.2.", "classifier.4."))}
    sd |= {"classifier.2.weight": torch.zeros(1000, 1024), "classifier.2.bias": torch.zeros(1000)}
    apn_head = model.spatial_backbone.classifier[2].weight.clone()
    load_backbone_weights(model, "convnext_base", sd)
    assert torch.equal(model.spatial_backbone.classifier[0].weight, sd["classifier.0.weight"])
    assert torch.equal(model.spatial_backbone.classifier[2].weight, apn_head)  # APN's own Linear untouched


def test_resnet18_state_dict_matches_torchvision(paper: APN) -> None:
    sd = _torchvision_state_dict(paper.semantic_head, "fc.", RESNET_HEAD)
    assert len(sd) == 122  # torchvision resnet18: 120 trunk entries + fc.weight, fc.bias
    for key, shape in RESNET_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert load_backbone_weights(paper, "resnet18", sd) == 120


def test_apn_head_replaces_the_convnext_classifier(paper: APN) -> None:
    head = paper.spatial_backbone.classifier
    assert [type(m).__name__ for m in head] == ["LayerNorm2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert (head[2].in_features, head[2].out_features, head[4].out_features) == (1024, 256, 256)


def test_load_rejects_mismatches(paper: APN) -> None:
    sd = _torchvision_state_dict(paper.semantic_head, "fc.", RESNET_HEAD)
    with pytest.raises(ValueError, match="1 missing"):
        load_backbone_weights(paper, "resnet18", {k: v for k, v in sd.items() if k != "layer1.0.bn1.bias"})
    with pytest.raises(ValueError, match="shape mismatch"):
        load_backbone_weights(paper, "resnet18", {**sd, "conv1.weight": torch.empty(64, 3, 3, 3)})
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone_weights(paper, "vgg16", sd)
    tiny = build_model("tiny")
    with pytest.raises(ValueError, match="not 'resnet18'"):
        load_backbone_weights(tiny, "resnet18", sd)


def test_loaded_values_land_in_the_semantic_head_only() -> None:
    """A real (non-meta) load: ResNet-18 values land in the semantic head, not the generative one."""
    torch.manual_seed(0)
    source = ResNet()
    with torch.device("meta"):
        model = build_model(get_config("paper"))
    model.semantic_head = ResNet()  # materialise just the parts this test looks at
    model.generative_head = ResNet()
    before = model.generative_head.conv1.weight.clone()
    sd = {**source.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    # checkpoints saved before PyTorch 0.4.1 have no BatchNorm counters; those still load
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert load_backbone_weights(model, "resnet18", sd) == 100
    assert torch.equal(model.semantic_head.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.semantic_head.bn1.running_var, source.bn1.running_var)
    assert torch.equal(model.generative_head.conv1.weight, before)
