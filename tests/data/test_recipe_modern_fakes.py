"""``recipes/data/build_modern_fakes.py``: rebuild a training folder from pinned git snapshots.

The script is what turns the committed manifest into images: it must copy exact bytes into the ``folder``
layout, refuse to guess when a snapshot or a hash is wrong, and catch eval images that slipped in. Each
test makes a tiny bare-repository "mirror" of its own; nothing is downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "data" / "build_modern_fakes.py"
FIELDS = ["out_path", "label", "generator", "repo", "commit", "path_in_repo", "licence", "sha256", "width",
          "height"]


def png_bytes(seed: int, size: int = 64) -> bytes:
    """A smooth random colour field as PNG bytes (smooth, so a resized JPEG copy keeps its dHash)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(buf, format="PNG")
    return buf.getvalue()


def make_mirror(root: Path, repo: str, files: dict[str, bytes]) -> str:
    """A bare snapshot at ``root/<owner>+<name>/repo`` holding ``files``; returns its commit."""
    work = root / "work" / repo.replace("/", "+")
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], check=True)
    bare = root / "mirror" / repo.replace("/", "+") / "repo"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    return head.stdout.strip()


def write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    """The manifest CSV with the committed file's columns."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(out_path: str, repo: str, commit: str, path: str, data: bytes) -> dict[str, object]:
    """One manifest row for ``data`` stored at ``repo@commit:path``."""
    label = out_path.split("/")[0]
    return {"out_path": out_path, "label": label, "generator": out_path.split("/")[1], "repo": repo,
            "commit": commit, "path_in_repo": path, "licence": "MIT",
            "sha256": hashlib.sha256(data).hexdigest(), "width": 64, "height": 64}


def gallery(tmp_path: Path, files: dict[str, tuple[str, bytes]], *extra: dict[str, object]) -> Path:
    """Snapshot ``own/gallery`` from ``{out_path: (path_in_repo, bytes)}``; its manifest (+ ``extra``)."""
    commit = make_mirror(tmp_path, "own/gallery", dict(files.values()))
    rows = [row(out, "own/gallery", commit, path, data) for out, (path, data) in files.items()]
    return write_manifest(tmp_path / "m.csv", [*rows, *extra])


def run(tmp_path: Path, manifest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the script against the test mirror, building into ``tmp_path/out``."""
    return subprocess.run([sys.executable, str(SCRIPT), "--manifest", str(manifest), "--mirror",
                           str(tmp_path / "mirror"), "--out", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True)


def test_builds_exact_bytes_in_the_folder_layout_and_reruns_cleanly(tmp_path: Path) -> None:
    """Files land at ``out_path`` byte for byte; the summary counts per folder; a rerun changes nothing."""
    fake, real = png_bytes(1), png_bytes(2)
    manifest = gallery(tmp_path, {"fake/gen-x/a.png": ("img/a.png", fake), "real/cam/b.png": ("b.png", real)})
    done = run(tmp_path, manifest)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out/fake/gen-x/a.png").read_bytes() == fake
    assert (tmp_path / "out/real/cam/b.png").read_bytes() == real
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"fake/gen-x": 1, "real/cam": 1} and summary["errors"] == 0
    again = run(tmp_path, manifest)
    assert again.returncode == 0 and json.loads(again.stdout)["errors"] == 0


def test_missing_snapshot_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    """Every absent ``owner/name@commit`` is listed on stderr; exit 2 before any file is written."""
    data = png_bytes(3)
    gone = row("fake/g/b.png", "other/gone", "f" * 40, "b.png", data)
    done = run(tmp_path, gallery(tmp_path, {"fake/g/a.png": ("a.png", data)}, gone))
    assert done.returncode == 2
    assert f"other/gone@{'f' * 40}" in done.stderr and "own/gallery" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_hash_mismatch_is_reported_and_the_file_not_written(tmp_path: Path) -> None:
    """A blob whose SHA-256 differs from the manifest is an error line and exit 1, never a silent copy."""
    data = png_bytes(4)
    commit = make_mirror(tmp_path, "own/gallery", {"a.png": data})
    bad = row("fake/g/a.png", "own/gallery", commit, "a.png", data) | {"sha256": "0" * 64}
    done = run(tmp_path, write_manifest(tmp_path / "m.csv", [bad]))
    assert done.returncode == 1 and "fake/g/a.png: sha256" in done.stderr
    assert not (tmp_path / "out/fake/g/a.png").exists()


def test_check_eval_flags_exact_and_reencoded_copies_only(tmp_path: Path) -> None:
    """An exact copy and a half-size JPEG copy of a built image are reported (exit 3); others are not."""
    kept, leaked = png_bytes(5), png_bytes(6)
    manifest = gallery(tmp_path, {"fake/g/k.png": ("k.png", kept), "fake/g/l.png": ("l.png", leaked)})
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "same.png").write_bytes(leaked)
    Image.open(io.BytesIO(leaked)).resize((32, 32)).convert("RGB").save(evaluation / "small.jpg", quality=70)
    Image.open(io.BytesIO(png_bytes(7))).save(evaluation / "other.png")
    clean = run(tmp_path, manifest)
    assert clean.returncode == 0 and "eval_check" not in json.loads(clean.stdout)
    done = run(tmp_path, manifest, "--check-eval", str(evaluation))
    assert done.returncode == 3
    found = {(Path(d["built"]).name, Path(d["eval"]).name, d["exact"])
             for d in json.loads(done.stdout)["eval_check"]["duplicates"]}
    assert found == {("l.png", "same.png", True), ("l.png", "small.jpg", False)}
