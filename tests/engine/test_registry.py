"""The shipped weights registry and the validation that keeps a bad registry from writing anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

import apncli
from apncli.engine.download import file_digest
from apncli.engine.registry import (
    RegistryEntry,
    RegistryError,
    default_name,
    get_entry,
    list_entries,
    load_registry,
    weights_dir,
)
from apncli.errors import ModelNotFoundError

SHA = "a" * 64


def write_registry(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data))
    return path


def shipped(name: str, **overrides) -> dict:
    entry = {"kind": "detector", "file": f"{name}.safetensors", "sha256": SHA, "size": 10}
    entry.update(overrides)
    return entry


def remote(**overrides) -> dict:
    entry = {"kind": "backbone", "url": "https://example.org/m.pth", "sha256": SHA, "size": 10,
             "filename": "m.pth"}
    entry.update(overrides)
    return entry


def test_weights_dir_is_the_checkout_folder():
    assert weights_dir() == Path(apncli.__file__).resolve().parent.parent / "weights"
    assert (weights_dir() / "registry.json").is_file()


def test_shipped_registry_has_the_default_detector_backbones_and_taef2():
    names = [e.name for e in list_entries()]
    assert names == ["apn-lite-v1", "apn-v2", "clip_b16", "convnext_base", "efficientnet_lite0",
                     "efficientnet_lite1", "efficientnet_lite2", "resnet18", "taef2_decoder", "taef2_encoder"]
    assert default_name() == "apn-v2"
    for name in ("apn-v2", "apn-lite-v1"):  # the previous default stays selectable by name
        detector = get_entry(name)
        assert detector.kind == "detector" and not detector.is_remote
        assert (weights_dir() / str(detector.file)).is_file()
    assert get_entry("taef2_encoder").kind == "autoencoder"


def test_shipped_detectors_are_pinned_to_the_committed_files():
    """A weights update without a registry update (or the reverse) fails here, not on a user's machine."""
    for entry in (e for e in list_entries() if e.file is not None):
        path = weights_dir() / entry.file
        assert (path.stat().st_size, file_digest(path)) == (entry.size, entry.sha256)


def test_default_detector_description_matches_the_model_card():
    """The model card ships the explicit-purification run (`apn-no-implicit`): no CLIP teacher."""
    description = get_entry("apn-v2").description
    assert "no CLIP teacher" in description and "explicit purification only" in description


def test_shipped_remote_entries_are_fully_pinned():
    for entry in (e for e in list_entries() if e.is_remote):
        assert entry.url is not None
        assert urlparse(entry.url).scheme == "https"
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256 or "")
        assert entry.size and entry.size > 1_000_000
        assert entry.filename == Path(urlparse(entry.url).path).name


def test_torchvision_file_names_carry_their_hash_prefix():
    """torch.hub names files ``<arch>-<first 8 hex of sha256>.pth``; a typo in either pin would show."""
    for name in ("convnext_base", "resnet18"):
        entry = get_entry(name)
        assert entry.url.startswith("https://download.pytorch.org/models/")
        prefix = re.search(r"-([0-9a-f]{8})\.pth$", entry.filename).group(1)
        assert entry.sha256.startswith(prefix)


def test_taef2_is_pinned_to_a_full_commit():
    for name in ("taef2_encoder", "taef2_decoder"):
        url = get_entry(name).url
        assert re.match(r"https://raw\.githubusercontent\.com/madebyollin/taesd/5cccb12[0-9a-f]{33}/", url)


def test_unknown_name_lists_the_registered_ones():
    listed = r"unknown weights 'nope'.*convnext_base, efficientnet_lite0,"
    with pytest.raises(ModelNotFoundError, match=listed):
        get_entry("nope")


def test_load_registry_returns_a_copy():
    load_registry().clear()
    assert "resnet18" in load_registry()


def test_default_detector_is_found(tmp_path):
    path = write_registry(tmp_path, {
        "det-v1": shipped("det-v1", default=True),
        "resnet18": remote(),
    })
    registry = load_registry(path)
    assert default_name(registry) == "det-v1"
    assert registry["det-v1"] == RegistryEntry(name="det-v1", kind="detector", file="det-v1.safetensors",
                                               sha256=SHA, size=10, default=True)
    assert not registry["det-v1"].is_remote


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (remote(filename="../evil.pth"), "plain cache filename"),
        (remote(filename="/etc/passwd"), "plain cache filename"),
        (remote(filename=".hidden"), "plain cache filename"),
        (remote(sha256="abc"), "full lowercase hex sha256"),
        (remote(sha256=SHA.upper()), "full lowercase hex sha256"),
        (remote(size=0), "positive integer byte size"),
        (remote(size="10"), "positive integer byte size"),
        (remote(url="file:///etc/passwd"), "non-http"),
        (remote(kind="model"), "has kind 'model'"),
        (remote(default=True), "only a detector"),
        (remote(file="x.safetensors"), "exactly one of"),
        ({"kind": "detector"}, "exactly one of"),
        ({"kind": "detector", "file": "../x"}, "unsafe file name"),
        (remote(homepage="x"), "unknown field"),
        ({"kind": "detector", "file": "d.safetensors", "default": "yes"}, "boolean 'default'"),
        (shipped("d", sha256=None), "full lowercase hex sha256"),
        ({"kind": "detector", "file": "d.safetensors", "sha256": SHA}, "positive integer byte size"),
        (remote(description=3), "string 'description'"),
        ("just a string", "must be an object"),
    ],
)
def test_invalid_entries_are_refused(tmp_path, entry, message):
    with pytest.raises(RegistryError, match=message):
        load_registry(write_registry(tmp_path, {"bad": entry}))


def test_two_defaults_and_unreadable_files_are_refused(tmp_path):
    two = {n: shipped(n, default=True) for n in ("a", "b")}
    with pytest.raises(RegistryError, match="more than one default"):
        load_registry(write_registry(tmp_path, two))
    with pytest.raises(RegistryError, match="name → entry"):
        load_registry(write_registry(tmp_path, [1, 2]))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "broken.json")
