"""Rebuild the modern-generator training folder from fetched repository snapshots.

Reads ``modern-fakes.csv`` (next to this script): one row per image with the public repository, the full
commit and the path that hold it, its licence, SHA-256 and size. Each file is taken byte for byte with
``git --git-dir=<mirror>/<owner>+<name>/repo show <commit>:<path>``, checked against its SHA-256 and written
to ``OUT/<out_path>``, i.e. the ``folder`` layout that ``apn train`` reads (``real/<source>/...`` and
``fake/<generator>/...``). Nothing is downloaded: the snapshots must have been fetched first (the search
tool's ``fetch``); the script names every missing one and stops before writing anything.

``--check-eval DIR`` (repeatable) then compares the built images with every image under ``DIR``: exact
copies (same SHA-256) and near copies (64-bit dHash of the upright greyscale image, Hamming distance
``<= --max-hamming``). Stdout carries one JSON summary; progress and problems go to stderr.

Exit codes: 0 built and clean; 1 a file was unreadable or did not match its SHA-256; 2 snapshots missing;
3 an eval duplicate was found.

    python recipes/data/build_modern_fakes.py --out ~/.cache/apn-data/modern --check-eval ../shared/data/eval
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from apncli.data.images import decode_bytes, decode_image, is_image_name
from apncli.errors import ImageError, one_line

MANIFEST = Path(__file__).with_name("modern-fakes.csv")
MIRROR = Path("/work/.mirror")
DEFAULT_OUT = Path("~/.cache/apn-data/modern")


@dataclass(frozen=True)
class Entry:
    """One manifest row: where the file goes, where it comes from and what it must hash to."""

    out_path: str
    label: str
    generator: str
    repo: str
    commit: str
    path_in_repo: str
    sha256: str


def read_manifest(path: Path) -> list[Entry]:
    """The manifest rows (extra columns such as licence and size are documentation only)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [Entry(r["out_path"], r["label"], r["generator"], r["repo"], r["commit"], r["path_in_repo"],
                      r["sha256"]) for r in csv.DictReader(fh)]


def git_dir(mirror: Path, repo: str) -> Path:
    """The bare git directory ``fetch`` makes for ``owner/name``."""
    return mirror / repo.replace("/", "+") / "repo"


def missing_snapshots(entries: Iterable[Entry], mirror: Path) -> list[str]:
    """Repositories (``owner/name``) whose snapshot or pinned commit is not on this machine."""
    missing = []
    for repo, commit in sorted({(e.repo, e.commit) for e in entries}):
        probe = subprocess.run(["git", f"--git-dir={git_dir(mirror, repo)}", "cat-file", "-e",
                                f"{commit}^{{commit}}"], capture_output=True)
        if probe.returncode != 0:
            missing.append(f"{repo}@{commit}")
    return missing


def blob(mirror: Path, entry: Entry) -> bytes:
    """The file's bytes at its pinned commit; :class:`OSError` when git cannot produce them."""
    done = subprocess.run(["git", f"--git-dir={git_dir(mirror, entry.repo)}", "show",
                           f"{entry.commit}:{entry.path_in_repo}"], capture_output=True)
    if done.returncode != 0:
        raise OSError(one_line(done.stderr.decode(errors="replace")))
    return done.stdout


def build_one(mirror: Path, out: Path, entry: Entry) -> str | None:
    """Write one file (skipped when already present with the right hash); an error line, or None."""
    target = out / entry.out_path
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
        return None
    try:
        data = blob(mirror, entry)
        decode_bytes(data, name=entry.path_in_repo)
    except (OSError, ImageError) as exc:
        return f"{entry.out_path}: {one_line(exc)}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        return f"{entry.out_path}: sha256 {digest} differs from the manifest's {entry.sha256}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return None


def dhash(pixels: np.ndarray) -> int:
    """64-bit difference hash: greyscale 9×8 thumbnail, one bit per horizontally adjacent pair."""
    grey = np.asarray(Image.fromarray(pixels).convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def fingerprints(paths: Iterable[Path]) -> dict[Path, tuple[str, int]]:
    """``path → (sha256, dhash)`` for every decodable image; undecodable ones are reported on stderr."""
    prints = {}
    for path in paths:
        try:
            prints[path] = (hashlib.sha256(path.read_bytes()).hexdigest(), dhash(decode_image(path).pixels))
        except (OSError, ImageError) as exc:
            print(f"skipped {path}: {one_line(exc)}", file=sys.stderr)
    return prints


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, sorted)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))


def eval_duplicates(built: dict[Path, tuple[str, int]], reference: dict[Path, tuple[str, int]],
                    max_hamming: int) -> list[dict[str, object]]:
    """Built images that equal (sha256) or nearly equal (dHash distance ≤ ``max_hamming``) a reference."""
    found = []
    for path, (sha, dh) in built.items():
        for ref, (ref_sha, ref_dh) in reference.items():
            distance = (dh ^ ref_dh).bit_count()
            if sha == ref_sha or distance <= max_hamming:
                found.append({"built": str(path), "eval": str(ref), "exact": sha == ref_sha,
                              "dhash_distance": distance})
    return found


def size_summary(entries: list[Entry], manifest: Path) -> dict[str, object]:
    """Counts per folder and the spread of the shorter side (pixels) from the manifest's sizes."""
    with manifest.open(newline="", encoding="utf-8") as fh:
        sides = [min(int(r["width"]), int(r["height"])) for r in csv.DictReader(fh)]
    counts = Counter(f"{e.label}/{e.generator}" for e in entries)
    return {"counts": dict(sorted(counts.items())), "total": len(entries),
            "short_side_px": {"min": min(sides), "median": statistics.median(sides), "max": max(sides)}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to build (default %(default)s)")
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="where fetch puts snapshots")
    parser.add_argument("--check-eval", type=Path, action="append", default=[], metavar="DIR",
                        help="report built images that duplicate an image under DIR (repeatable)")
    parser.add_argument("--max-hamming", type=int, default=4, help="near-duplicate dHash distance")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the folder, then run the optional eval-duplicate check; returns the exit code."""
    args = parse_args(argv)
    entries = read_manifest(args.manifest)
    missing = missing_snapshots(entries, args.mirror)
    if missing:
        print(f"{len(missing)} snapshot(s) missing under {args.mirror}; fetch each with the search tool's "
              "`fetch` (github:owner/name), then rerun:", file=sys.stderr)
        print("\n".join(f"  {m}" for m in missing), file=sys.stderr)
        return 2
    out = args.out.expanduser()
    errors = [err for e in entries if (err := build_one(args.mirror, out, e))]
    for err in errors:
        print(err, file=sys.stderr)
    summary: dict[str, object] = {"out": str(out), "errors": len(errors),
                                  **size_summary(entries, args.manifest)}
    duplicates: list[dict[str, object]] = []
    if args.check_eval:
        built = fingerprints(out / e.out_path for e in entries)
        reference = fingerprints(p for d in args.check_eval for p in image_files(d))
        duplicates = eval_duplicates(built, reference, args.max_hamming)
        summary["eval_check"] = {"dirs": [str(d) for d in args.check_eval],
                                 "reference_images": len(reference), "max_hamming": args.max_hamming,
                                 "duplicates": duplicates}
    print(json.dumps(summary, indent=1))
    return 1 if errors else 3 if duplicates else 0


if __name__ == "__main__":
    sys.exit(main())
