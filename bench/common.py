"""Shared pieces of the benchmark scripts: test images, checkpoints, measured subprocess runs, tables.

Benchmarks never write into the repository: generated images and random-weights checkpoints live in a
cache folder under the system temp dir (``$APN_BENCH_CACHE`` overrides it), and results go to stdout or
an explicit ``--out`` file. Every measured run is a separate process, so peak memory (``ru_maxrss`` from
``wait4``) and thread settings of one configuration never leak into the next. Linux and macOS only
(``wait4``, load average).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CACHE = Path(os.environ.get("APN_BENCH_CACHE") or Path(tempfile.gettempdir()) / "apn-bench")

if str(REPO) not in sys.path:  # `python bench/x.py` from a checkout, without installing the package
    sys.path.insert(0, str(REPO))

#: One cycle of the mixed folder: megapixels, aspect (w:h), format. Log-spaced 0.3–12 MP, ¼ PNG.
MIX: tuple[tuple[float, tuple[int, int], str], ...] = (
    (12.0, (4, 3), "jpeg"),
    (0.3, (4, 3), "jpeg"),
    (5.0, (3, 2), "png"),
    (1.0, (16, 9), "jpeg"),
    (8.0, (3, 4), "jpeg"),
    (0.5, (1, 1), "png"),
    (3.0, (4, 3), "jpeg"),
    (2.0, (3, 2), "jpeg"),
)
JPEG_QUALITIES = (92, 85, 95, 75)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# --------------------------------------------------------------------------------------- machine facts
def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers: CPU, cores usable, load, library versions, date."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or "unknown")
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def load_note(before: float, after: float | None = None) -> str:
    """Warn when the machine was busy: other processes steal cores and make every figure noisier."""
    after = os.getloadavg()[0] if after is None else after
    cores = os.cpu_count() or 1
    busy = max(before, after)
    if busy > 0.5 * cores:
        return f"machine was loaded (1-min load average {before:.1f} → {after:.1f} on {cores} cores)"
    return f"machine was quiet (1-min load average {before:.1f} → {after:.1f} on {cores} cores)"


# ----------------------------------------------------------------------------------------- checkpoints
def checkpoint_for(weights: str | None, config: str) -> tuple[Path, str]:
    """``--weights`` if given, else the shipped default detector for ``lite``, else a cached
    random-weights ``config`` checkpoint (random weights run exactly as fast as trained ones)."""
    if weights:
        return Path(weights), f"checkpoint {weights}"
    from apncli.engine import cache, registry
    from apncli.model import get_config

    default = registry.default_name()
    if config == "lite" and default is not None:
        return cache.resolve_weights(default), f"the shipped default detector `{default}`"

    digest = _digest(get_config(config).to_dict())
    path = CACHE / "weights" / f"random-{config}-{digest}.safetensors"
    if not path.exists():
        _save_random(path, config)
    return path, f"random-weights `{config}` checkpoint (speed is the same as trained)"


def _save_random(path: Path, config: str) -> None:
    import torch

    from apncli.engine import checkpoint
    from apncli.model import build_model

    torch.manual_seed(0)
    model = build_model(config).eval()
    metadata = {
        "format_version": 1,
        "name": f"bench-random-{config}",
        "config": model.config.to_dict(),
        "preprocessing": checkpoint.default_preprocessing(model.config),
        "threshold": 0.5,
        "inconclusive_band": [0.5, 0.5],
        "training": {"note": "random weights, for benchmarks only"},
        "metrics": {},
        "provenance": {"created_by": "bench/common.py"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_checkpoint(path, model.state_dict(), metadata)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


# -------------------------------------------------------------------------------------------- images
def mixed_folder(count: int) -> tuple[Path, str]:
    """A folder of ``count`` mixed JPEG/PNG photos of 0.3–12 MP (cached), and where their content came from.

    Content: real photos from ``../shared/data`` when present, else synthetic photo-like scenes; either is
    resized to the target size and given sensor-like noise, so big files have the entropy (and decode
    cost) of camera originals rather than of flat synthetic colour.
    """
    sources = _real_sources()
    origin = f"real photos from {SHARED_DATA}" if sources else "synthetic photo-like scenes (no shared data)"
    folder = CACHE / f"mixed-{count}-{'real' if sources else 'synthetic'}-v1"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _write_mixed(folder, index, sources)
        done.write_text("ok\n")
    return folder, origin


def _real_sources() -> list[Path]:
    root = SHARED_DATA / "train" / "real"
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:: max(1, len(files) // 24)]


def _write_mixed(folder: Path, index: int, sources: list[Path]) -> None:
    import numpy as np
    from PIL import Image

    megapixels, (aw, ah), fmt = MIX[index % len(MIX)]
    width = round((megapixels * 1e6 * aw / ah) ** 0.5)
    height = round(megapixels * 1e6 / width)
    rng = np.random.default_rng(index)
    pixels = _photo(width, height, rng, sources[index % len(sources)] if sources else None)
    image = Image.fromarray(pixels)
    path = folder / f"img{index:05d}.{'jpg' if fmt == 'jpeg' else 'png'}"
    if fmt == "jpeg":
        quality = JPEG_QUALITIES[index % len(JPEG_QUALITIES)]
        subsampling = 2 if index % 3 else 0  # mostly 4:2:0 like cameras, some 4:4:4
        image.save(path, "JPEG", quality=quality, subsampling=subsampling, progressive=index % 5 == 0)
    else:
        image.save(path, "PNG", compress_level=6)


def _photo(width: int, height: int, rng: Any, source: Path | None) -> Any:
    """An H×W×3 uint8 photo-like image: a scene at the target size plus camera-like noise."""
    import cv2
    import numpy as np

    scene = _load_rgb(source) if source is not None else _synthetic_scene(rng)
    scene = cv2.resize(scene, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    scene += rng.normal(0.0, 2.5, scene.shape).astype(np.float32)  # sensor noise at native resolution
    return np.clip(scene, 0, 255).astype(np.uint8)


def _load_rgb(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _synthetic_scene(rng: Any) -> Any:
    """Smooth colour fields, hard-edged shapes and fine texture: what photos have, without a data set."""
    import cv2
    import numpy as np

    height, width = 600, 800
    scene = cv2.resize(rng.uniform(0, 255, (4, 5, 3)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.ellipse(scene, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    texture = cv2.GaussianBlur(rng.normal(0, 18, (height, width, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip(scene + texture, 0, 255).astype(np.uint8)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` that `apn scan` picks up, in its order (sorted by name)."""
    from apncli.data.images import IMAGE_EXTENSIONS

    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(files, key=lambda p: p.name)


def folder_stats(folder: Path) -> dict[str, Any]:
    """Count, formats, total megapixels and megabytes of the image files in ``folder``."""
    from PIL import Image

    files = image_files(folder)
    pixels = 0
    for path in files:
        with Image.open(path) as im:
            pixels += im.width * im.height
    return {
        "files": len(files),
        "jpeg": sum(p.suffix.lower() in (".jpg", ".jpeg") for p in files),
        "png": sum(p.suffix.lower() == ".png" for p in files),
        "megapixels": round(pixels / 1e6, 1),
        "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1),
    }


def small_folder(count: int, distinct: int = 64) -> Path:
    """``count`` small JPEG/PNG files (hard links to ``distinct`` real files): each is opened and decoded."""
    import numpy as np
    from PIL import Image

    base = CACHE / f"small-distinct-{distinct}-v1"
    if not (base / ".complete").exists():
        base.mkdir(parents=True, exist_ok=True)
        for index in range(distinct):
            rng = np.random.default_rng(10_000 + index)
            w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
            pixels = _synthetic_scene(rng)[:h, :w]
            name = f"s{index:03d}.{'png' if index % 4 else 'jpg'}"
            Image.fromarray(np.ascontiguousarray(pixels)).save(base / name)
        (base / ".complete").write_text("ok\n")
    folder = CACHE / f"small-{count}-v1"
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        originals = sorted(p for p in base.iterdir() if p.suffix in (".jpg", ".png"))
        for index in range(count):
            original = originals[index % len(originals)]
            _link(original, folder / f"f{index:06d}{original.suffix}")
        (folder / ".complete").write_text("ok\n")
    return folder


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: a copy decodes the same
        dst.write_bytes(src.read_bytes())


# ------------------------------------------------------------------------------------ measured runs
@dataclass
class Run:
    """One measured child process: timings, CPU, peak resident memory, and its stdout lines with times."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    stderr: str = ""

    def steady_rate(self, burst_s: float = 0.05) -> float:
        """Records per second after the first batch: excludes start-up, model load and the first decode.

        Records of one batch arrive together; the rate is taken between the end of the first batch and
        the last record, over the records that came after the first batch.
        """
        times = [t for t, line in self.lines if line.strip()]
        if len(times) < 2:
            return float("nan")
        first = times[0]
        later = [t for t in times if t - first > burst_s]
        if not later:
            return float("nan")
        return len(later) / (times[-1] - first)


def run_measured(command: Sequence[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> Run:
    """Run ``command``, timestamp each stdout line, and read the child's own peak RSS and CPU via wait4."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=err, env=full_env, text=True,
                                cwd=cwd)  # stderr to a file: a full pipe would block the child
        assert proc.stdout is not None
        lines = [(time.perf_counter(), line) for line in proc.stdout]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    return Run(command=list(command), returncode=proc.returncode, wall_s=wall,
               cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / _RSS_UNITS_PER_MB,
               lines=lines, stderr=stderr)


_RSS_UNITS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux


def python_command(*args: str | Path) -> list[str]:
    return [sys.executable, *[str(a) for a in args]]


def apn_command(*args: str | Path) -> list[str]:
    return python_command("-m", "apncli", *args)


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


# ---------------------------------------------------------------------------------------------- output
def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes into README and reads fine in a terminal)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    out = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


RawHelp = argparse.RawDescriptionHelpFormatter


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="Fewer files, steps, repeats (noisier).")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON to this file.")


def write_results(out: Path | None, results: dict[str, Any]) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results written to {out}", file=sys.stderr)


def fail(run: Run, what: str) -> None:
    """A benchmark whose command failed must say why instead of printing meaningless figures."""
    tail = "\n".join(run.stderr.strip().splitlines()[-15:])
    raise SystemExit(f"{what} failed with exit code {run.returncode}:\n{' '.join(run.command)}\n{tail}")
