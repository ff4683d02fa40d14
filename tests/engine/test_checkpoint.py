"""Checkpoint format: safetensors + JSON metadata; never unpickles; every lie becomes a clear error."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from apncli.engine.checkpoint import (
    MAX_HEADER_BYTES,
    check_state_dict,
    default_preprocessing,
    file_sha256,
    load_checkpoint,
    load_torch_weights_only,
    read_metadata,
    save_checkpoint,
    validate_metadata,
)
from apncli.errors import CheckpointError

CONFIG = {"name": "tiny", "crop": 32, "num_bands": 3, "spatial_backbone": "convnext_lite",
          "band_backbone": "resnet_lite", "attention_heads": 2}


def make_meta(**overrides):
    meta = {
        "format_version": 1,
        "name": "test-detector",
        "config": dict(CONFIG),
        "preprocessing": default_preprocessing(CONFIG),
        "threshold": 0.5,
        "inconclusive_band": [0.4, 0.6],
        "training": {"epochs": 1},
        "metrics": {"auc": 0.9},
        "provenance": {"data": "synthetic"},
    }
    meta.update(overrides)
    return meta


def tensors():
    return {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "a.bias": torch.ones(3),
            "steps": torch.tensor([7], dtype=torch.int64)}


def raw_safetensors(path, header: bytes, data: bytes = b"", declared: int | None = None):
    """Write a file by hand so tests can make headers lie in ways safetensors itself never would."""
    n = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def header_with(meta_json: str, tensor_entries: dict | None = None) -> bytes:
    header = {"__metadata__": {"apn": meta_json}, **(tensor_entries or {})}
    return json.dumps(header).encode()


# --- round trip --------------------------------------------------------------------------------------


def test_round_trip_preserves_tensors_and_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "d.safetensors", tensors(), make_meta())
    state, meta = load_checkpoint(path)
    assert meta == make_meta()
    assert read_metadata(path) == meta
    assert state.keys() == tensors().keys()
    for key, value in tensors().items():
        assert torch.equal(state[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]  # no temp file left behind


def test_save_fills_format_version_and_overwrites_atomically(tmp_path):
    path = tmp_path / "sub" / "d.safetensors"
    meta = make_meta()
    del meta["format_version"]
    save_checkpoint(path, tensors(), meta)
    save_checkpoint(path, {"x": torch.zeros(2)}, make_meta(threshold=0.45))
    state, meta = load_checkpoint(path)
    assert list(state) == ["x"] and meta["threshold"] == 0.45 and meta["format_version"] == 1


def test_save_handles_shared_storage_and_non_contiguous_tensors(tmp_path):
    base = torch.arange(16.0).reshape(4, 4)
    sd = {"w": base, "tied": base, "view": base[:, 1], "t": base.t()}
    state, _ = load_checkpoint(save_checkpoint(tmp_path / "d.safetensors", sd, make_meta()))
    for key, value in sd.items():
        assert torch.equal(state[key], value)


def test_save_refuses_pickle_suffix_and_invalid_metadata(tmp_path):
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        save_checkpoint(tmp_path / "d.pt", tensors(), make_meta())
    with pytest.raises(CheckpointError, match="threshold"):
        save_checkpoint(tmp_path / "d.safetensors", tensors(), make_meta(threshold=2.0))
    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(tmp_path / "d.safetensors", {"x": [1, 2]}, make_meta())
    assert list(tmp_path.iterdir()) == []


def test_default_preprocessing_matches_contract():
    assert default_preprocessing(CONFIG) == {
        "color_order": "BGR", "scale": [0, 1], "crop": 32, "eval_crop": "center", "pad_mode": "wrap",
        "resize": None, "multi_crop": {"enabled": True, "max_tiles": 4},
    }


def test_file_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1_000_000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


# --- pickle is never executed ------------------------------------------------------------------------


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload(marker)}, evil)
    assert not marker.exists()

    for suffix in (".pt", ".pth", ".ckpt", ".bin"):
        renamed = evil.with_suffix(suffix)
        renamed.write_bytes(evil.read_bytes())
        with pytest.raises(CheckpointError, match="refusing a pickle checkpoint"):
            load_checkpoint(renamed)
        with pytest.raises(CheckpointError, match="refusing a pickle checkpoint"):
            read_metadata(renamed)
    disguised = tmp_path / "evil.safetensors"
    disguised.write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(disguised)
    with pytest.raises(CheckpointError, match="refused"):
        load_torch_weights_only(evil)
    assert not marker.exists()

    # The payload is live: an unrestricted torch.load runs it. This is what the code above avoids.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_load_torch_weights_only_reads_a_plain_state_dict(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(tensors(), path)
    state = load_torch_weights_only(path)
    assert torch.equal(state["a.weight"], tensors()["a.weight"])


def test_load_torch_weights_only_wants_a_dict_of_tensors(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="dict of tensors"):
        load_torch_weights_only(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="refused"):
        load_torch_weights_only(path)


# --- metadata that lies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"format_version": None}, "no format_version"),
        ({"format_version": 2}, "newer than this apn"),
        ({"format_version": "1"}, "unknown checkpoint format_version"),
        ({"format_version": True}, "unknown checkpoint format_version"),
        ({"format_version": 0}, "unknown checkpoint format_version"),
        ({"threshold": 1.5}, r"outside \[0, 1\]"),
        ({"threshold": -0.01}, r"outside \[0, 1\]"),
        ({"threshold": 1e308}, r"outside \[0, 1\]"),
        ({"threshold": "0.5"}, "must be a number"),
        ({"threshold": True}, "must be a number"),
        ({"inconclusive_band": [0.6, 0.7]}, "does not contain the threshold"),
        ({"inconclusive_band": [0.4]}, r"must be \[lo, hi\]"),
        ({"inconclusive_band": [0.4, 2]}, r"outside \[0, 1\]"),
        ({"name": ""}, "'name' must be"),
        ({"name": "x" * 1000}, "'name' must be"),
        ({"config": {**CONFIG, "crop": 10**9}}, "config is invalid: .*crop"),
        ({"config": {**CONFIG, "num_bands": 100000}}, "config is invalid: .*num_bands"),
        ({"config": {**CONFIG, "bogus": 1}}, "config is invalid: .*unknown"),
        ({"config": "paper"}, "config is invalid"),
        ({"metrics": [1, 2]}, "'metrics' must be a JSON object"),
        ({"preprocessing": {"crop": 64}}, "disagrees with the config crop 32"),
        ({"preprocessing": {"color_order": "YUV"}}, "color_order"),
        ({"preprocessing": {"multi_crop": {"max_tiles": 10**6}}}, "max_tiles"),
    ],
)
def test_lying_metadata_is_refused(overrides, message):
    meta = make_meta(**overrides)
    if overrides.get("format_version", 1) is None:
        del meta["format_version"]
    with pytest.raises(CheckpointError, match=message):
        validate_metadata(meta)


def test_missing_required_fields_are_listed():
    meta = make_meta()
    del meta["threshold"], meta["config"]
    with pytest.raises(CheckpointError, match="missing config, threshold"):
        validate_metadata(meta)


def test_lying_metadata_in_a_file_names_the_file(tmp_path):
    path = raw_safetensors(tmp_path / "liar.safetensors", header_with(json.dumps(make_meta(threshold=3))))
    with pytest.raises(CheckpointError, match=r"liar\.safetensors: checkpoint threshold 3 is outside"):
        read_metadata(path)
    assert read_metadata(path, validate=False)["threshold"] == 3


def test_non_finite_numbers_in_metadata_are_refused(tmp_path):
    text = json.dumps(make_meta()).replace('"threshold": 0.5', '"threshold": NaN')
    path = raw_safetensors(tmp_path / "nan.safetensors", header_with(text))
    with pytest.raises(CheckpointError, match="non-finite number NaN"):
        read_metadata(path)


def test_absurd_nesting_and_huge_integers_are_one_line_errors(tmp_path):
    deep = raw_safetensors(tmp_path / "deep.safetensors", header_with("[" * 100_000 + "]" * 100_000))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_metadata(deep)
    huge = json.dumps(make_meta()).replace('"format_version": 1', '"format_version": ' + "9" * 5000)
    big = raw_safetensors(tmp_path / "big.safetensors", header_with(huge))
    with pytest.raises(CheckpointError):
        read_metadata(big)


# --- files that are not (complete) safetensors -------------------------------------------------------


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "d.safetensors", tensors(), make_meta())
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(CheckpointError, match="truncated: tensors need"):
        load_checkpoint(path)
    path.write_bytes(data[:40])
    with pytest.raises(CheckpointError, match="truncated: header claims"):
        read_metadata(path)


def test_header_over_the_cap_is_refused_before_reading(tmp_path):
    path = raw_safetensors(tmp_path / "huge.safetensors", b'{"__metadata__": {}}',
                           declared=MAX_HEADER_BYTES + 1)
    with pytest.raises(CheckpointError, match="over the 16 MiB limit"):
        read_metadata(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"1234", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"PK\x03\x04" + b"\0" * 64, b"x" * 100],
)
def test_files_that_are_not_safetensors(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(path)


def test_header_that_is_not_json_or_not_an_object(tmp_path):
    path = raw_safetensors(tmp_path / "a.safetensors", b"{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_metadata(path)
    path = raw_safetensors(tmp_path / "b.safetensors", b'{"a": {"data_offsets": "x"}}')
    with pytest.raises(CheckpointError, match="malformed header entry"):
        read_metadata(path)


def test_plain_safetensors_without_apn_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an apn checkpoint"):
        read_metadata(path)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        read_metadata(tmp_path / "nope.safetensors")


def test_header_lying_about_tensor_layout_is_caught_on_load(tmp_path):
    entries = {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 8]}}
    path = raw_safetensors(tmp_path / "w.safetensors", header_with(json.dumps(make_meta()), entries),
                           data=b"\0" * 8)
    assert read_metadata(path)["name"] == "test-detector"
    with pytest.raises(CheckpointError, match="unreadable tensor data"):
        load_checkpoint(path)


# --- state dict vs config ----------------------------------------------------------------------------


def test_check_state_dict_accepts_a_match():
    expected = {k: v.shape for k, v in tensors().items()}
    check_state_dict(expected, tensors())
    check_state_dict(expected, expected)


def test_check_state_dict_names_the_first_mismatch_and_counts():
    expected = {"a.weight": torch.Size([4, 4]), "a.bias": torch.Size([3]), "b": torch.Size([1])}
    got = {"a.weight": torch.zeros(3, 4), "a.bias": torch.zeros(3), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, got)
    message = str(info.value)
    assert "\n" not in message
    assert "3 mismatch(es)" in message
    assert "'a.weight' has shape (3, 4), the config expects (4, 4)" in message
    assert "(and 2 more)" in message


def test_check_state_dict_missing_key_only():
    with pytest.raises(CheckpointError, match=r"1 mismatch\(es\); first: 'b' is missing$"):
        check_state_dict({"b": (1,)}, {})
