"""The Ray Data path on a local two-CPU Ray instance: the same records as ``apn scan``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from apn_testing import markup_folder, save_tiny_checkpoint, write_image

ray = pytest.importorskip("ray", reason="the Ray Data path needs `pip install 'apn[ray]'` (in [test])")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One Ray instance for the module: starting Ray takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _sorted(lines: list[str]) -> list[str]:
    return sorted(lines, key=lambda line: json.loads(line)["path"])


def test_ray_records_equal_apn_scan(local_ray, run_apn, tmp_path: Path) -> None:
    from apncli.cluster.ray_scan import scan_dataset, write_jsonl

    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors", logit_gain=30.0)
    folder = markup_folder(tmp_path / "photos")
    (folder / "sub").mkdir()
    for index in range(12):
        write_image(folder / "sub" / f"{index:02d}.png", size=(40 + index * 30, 30 + index * 20), seed=index)
    local = run_apn("scan", folder, "-r", "--jsonl", "--weights", weights)

    records = scan_dataset([folder], recursive=True, concurrency=2, files_per_batch=4, weights=str(weights))
    out = tmp_path / "ray.jsonl"
    assert write_jsonl(records, out, sort=True) == 16
    assert out.read_text(encoding="utf-8").splitlines() == _sorted(local.stdout.splitlines())


def test_ray_scans_a_dataset_of_paths(local_ray, run_apn, tmp_path: Path) -> None:
    from apncli.cluster.ray_scan import scan_dataset

    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    files = [write_image(tmp_path / f"{index}.jpg", seed=index) for index in range(3)]
    files.append(tmp_path / "gone.png")
    local = run_apn("scan", *files, "--jsonl", "--weights", weights, "--no-provenance")

    dataset = ray.data.from_items([{"path": str(path)} for path in files])
    rows = scan_dataset(dataset, weights=str(weights), provenance=False).take_all()
    assert sorted(row["record"] for row in rows) == sorted(local.stdout.splitlines())
