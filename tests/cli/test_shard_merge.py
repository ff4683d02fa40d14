"""``apn scan --shard K/N`` and ``apn merge``: a scan split over machines and put back together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apn_testing import write_image

from apncli.data.discover import Shard
from apncli.errors import UsageError


@pytest.fixture()
def folder(mixed_folder: Path) -> Path:
    """The mixed folder plus enough images that every one of three shards gets some."""
    for index in range(9):
        write_image(mixed_folder / "sub" / f"extra{index}.png", seed=10 + index)
    return mixed_folder


def _sorted_lines(text: str) -> list[str]:
    return sorted(text.splitlines(), key=lambda line: json.loads(line)["path"])


def test_merged_shards_equal_one_scan_byte_for_byte(run_apn, tiny_weights: Path, folder: Path,
                                                    tmp_path: Path) -> None:
    whole = run_apn("scan", folder, "-r", "--jsonl", "--weights", tiny_weights)
    parts = []
    for index in (1, 2, 3):
        part = tmp_path / f"part{index}.jsonl"
        run_apn("scan", folder, "-r", "--weights", tiny_weights, "--shard", f"{index}/3", "--out", part)
        parts.append(part)
    # Shards split by a hash of each path, and pytest's folder names vary: one of three shards of 15 files
    # is empty in ~0.7 % of runs (merge takes empty parts); two empty ones, ~1e-7.
    assert sum(bool(part.read_text().strip()) for part in parts) >= 2
    merged = run_apn("merge", *parts)
    assert merged.code == 0, merged.stderr
    assert merged.stdout.splitlines() == _sorted_lines(whole.stdout)
    assert len(merged.stdout.splitlines()) == 15


def test_merge_reads_json_documents_and_writes_one(run_apn, tiny_weights: Path, folder: Path,
                                                   tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.jsonl"
    run_apn("scan", folder, "-r", "--weights", tiny_weights, "--shard", "1/2", "--out", first)
    run_apn("scan", folder, "-r", "--weights", tiny_weights, "--shard", "2/2", "--out", second)
    out = tmp_path / "merged.json"
    assert run_apn("merge", first, second, "--out", out).code == 0
    document = json.loads(out.read_text())
    paths = [record["path"] for record in document["records"]]
    assert paths == sorted(paths) and len(paths) == 15
    assert document["manifest"]["model"]["sha256"] == document["records"][0]["model"]["sha256"]
    assert document["manifest"]["merged_from"] == [str(first), str(second)]
    again = run_apn("merge", first, second, "--out", out)
    assert again.code == 2 and "exists" in again.stderr


def test_merge_writes_no_file_whose_name_promises_another_format(run_apn, tiny_weights: Path,
                                                                 tmp_path: Path) -> None:
    """merge writes JSON or JSONL: ``--out x.csv`` (a CSV name) and ``--json --out x.jsonl`` are refused in
    one line before anything is read, instead of leaving JSON Lines in a file every tool opens as CSV."""
    part = tmp_path / "part.jsonl"
    run_apn("scan", write_image(tmp_path / "x.png"), "--weights", tiny_weights, "--out", part)
    for out, extra in ((tmp_path / "x.csv", ()), (tmp_path / "y.jsonl", ("--json",))):
        refused = run_apn("merge", part, "--out", out, *extra)
        assert refused.code == 2 and not out.exists(), out.name
        assert refused.stderr.startswith(f"error: --out {out} names a ")
        assert len(refused.stderr.splitlines()) == 1
    plain = tmp_path / "merged.txt"  # a name that promises nothing: JSONL
    assert run_apn("merge", part, "--out", plain).code == 0
    assert json.loads(plain.read_text().splitlines()[0])["path"].endswith("x.png")


def test_merge_refuses_mixed_models_and_overlaps(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png")
    low, high = tmp_path / "low.jsonl", tmp_path / "high.jsonl"
    run_apn("scan", image, "--weights", tiny_weights, "--threshold", "0.3", "--out", low)
    run_apn("scan", image, "--weights", tiny_weights, "--threshold", "0.7", "--out", high)
    mixed = run_apn("merge", low, high)
    assert mixed.code == 2 and "refusing to mix models" in mixed.stderr and not mixed.stdout
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(low.read_bytes())
    twice = run_apn("merge", low, copy)
    assert twice.code == 2 and "run twice" in twice.stderr
    empty = tmp_path / "empty-shard.jsonl"  # a part that held no files
    empty.write_text("")
    with_empty = run_apn("merge", low, empty)
    assert with_empty.code == 0 and with_empty.stdout == low.read_text()


def test_one_file_given_twice_is_named_not_blamed_on_shards(run_apn, tiny_weights: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    part = tmp_path / "a.jsonl"
    run_apn("scan", write_image(tmp_path / "x.png"), "--weights", tiny_weights, "--out", part)
    (tmp_path / "link.jsonl").symlink_to(part)
    monkeypatch.chdir(tmp_path)
    for verb in ("merge", "report"):
        extra = ["--out", "page.html"] if verb == "report" else []
        same = run_apn(verb, "a.jsonl", "a.jsonl", *extra)
        assert same.code == 2 and same.stderr == "error: a.jsonl given twice; give each scan output once\n"
        other_name = run_apn(verb, "a.jsonl", "./link.jsonl", *extra)
        assert other_name.code == 2 and "a.jsonl and link.jsonl (one file) given twice" in other_name.stderr
        assert "run twice" not in same.stderr + other_name.stderr and not same.stdout


def test_merge_leaves_out_a_torn_last_line_and_refuses_other_files(run_apn, tiny_weights: Path,
                                                                    folder: Path, tmp_path: Path) -> None:
    part = tmp_path / "part.jsonl"
    run_apn("scan", folder, "-r", "--weights", tiny_weights, "--out", part)
    part.write_text(part.read_text() + '{"path": "cut', encoding="utf-8")
    merged = run_apn("merge", part)
    assert merged.code == 0 and len(merged.stdout.splitlines()) == 15
    assert "torn" in merged.stderr
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    refused = run_apn("merge", other)
    assert refused.code == 2 and "not scan output" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x", "1/0", "2"])
def test_bad_shard_spec_is_a_usage_error_before_the_model_loads(run_apn, tmp_path: Path, spec: str) -> None:
    result = run_apn("scan", write_image(tmp_path / "x.png"), "--weights", tmp_path / "missing.safetensors",
                     "--shard", spec)
    assert result.code == 2 and "--shard" in result.stderr


def test_shard_is_a_stable_function_of_the_path() -> None:
    paths = [f"photos/{index:04d}.jpg" for index in range(600)]
    owners = [[k for k in (1, 2, 3) if Shard(k, 3).holds(path)] for path in paths]
    assert all(len(owner) == 1 for owner in owners)  # every file in exactly one part
    sizes = [sum(owner == [k] for owner in owners) for k in (1, 2, 3)]
    assert min(sizes) > 150  # balanced
    # Pinned: SHA-256 of the path, so every machine (and every future version) splits the same way.
    assert [k for k in (1, 2, 3, 4) if Shard(k, 4).holds("photos/0000.jpg")] == [3]
    assert Shard.parse("2/8") == Shard(2, 8)
    with pytest.raises(UsageError):
        Shard.parse("9/8")

