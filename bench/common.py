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
#: One cycle of the real-world mix (issue 18): what a fact-checker's folder holds. Web copies of ~0.25 MP
#: (ImageNet-like JPEG), 1024x768 JPEGs, ~1-MP PNG photos, 1024² generator PNGs, WebP from the web, and
#: phone (HEIC) and camera (JPEG) originals up to 12 MP. 12 files, 33.6 MP per cycle.
REALWORLD_MIX: tuple[tuple[float, tuple[int, int], str], ...] = (
    (0.25, (4, 3), "jpeg"),
    (0.79, (4, 3), "jpeg"),
    (1.0, (3, 2), "png"),
    (1.05, (1, 1), "png"),
    (0.25, (1, 1), "webp"),
    (12.0, (4, 3), "heic"),
    (0.79, (4, 3), "jpeg"),
    (2.0, (16, 9), "webp"),
    (1.05, (1, 1), "png"),
    (3.0, (4, 3), "heic"),
    (0.25, (4, 3), "jpeg"),
    (12.0, (4, 3), "jpeg"),
)
#: The web-sized mix of issue 18's first measurement (no phone or camera originals): ImageNet-like JPEGs of
#: ~500 px, 1024x768 JPEGs, ~1-MP PNG photos and 1024² generator PNGs. 4 files, 3.0 MP per cycle.
WEB_MIX: tuple[tuple[float, tuple[int, int], str], ...] = (
    (0.19, (4, 3), "jpeg"),
    (0.79, (4, 3), "jpeg"),
    (1.0, (3, 2), "png"),
    (1.05, (1, 1), "png"),
)
MIXES = {"realworld": REALWORLD_MIX, "web": WEB_MIX}
JPEG_QUALITIES = (92, 85, 95, 75)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SUFFIXES = {"jpeg": "jpg", "png": "png", "webp": "webp", "heic": "heic"}


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
    """``--weights`` if given, else the registry's default detector when it is a ``config`` network, else a
    cached random-weights ``config`` checkpoint (random weights run exactly as fast as trained ones)."""
    if weights:
        return Path(weights), f"checkpoint {weights}"
    from apncli.engine import cache, checkpoint, registry
    from apncli.model import get_config

    default = registry.default_name()
    if default is not None:
        path = cache.resolve_weights(default)
        if checkpoint.read_metadata(path)["config"]["name"] == config:
            return path, f"the shipped default detector `{default}`"

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
def mixed_folder(count: int, mix: Sequence[tuple[float, tuple[int, int], str]] = MIX,
                 name: str = "mixed") -> tuple[Path, str]:
    """A folder of ``count`` photos cycling through ``mix`` (megapixels, aspect, format; cached), and where
    their content came from.

    Content: real photos from ``../shared/data`` when present, else synthetic photo-like scenes; either is
    resized to the target size and given sensor-like noise, so big files have the entropy (and decode
    cost) of camera originals rather than of flat synthetic colour. ``name`` keeps different mixes apart.
    """
    sources = _real_sources()
    origin = f"real photos from {SHARED_DATA}" if sources else "synthetic photo-like scenes (no shared data)"
    version = "v1" if mix == MIX else f"v1-{_digest(mix)}"
    folder = CACHE / f"{name}-{count}-{'real' if sources else 'synthetic'}-{version}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _write_mixed(folder, index, sources, mix)
        done.write_text("ok\n")
    return folder, origin


def _real_sources() -> list[Path]:
    root = SHARED_DATA / "train" / "real"
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:: max(1, len(files) // 24)]


def _write_mixed(folder: Path, index: int, sources: list[Path],
                 mix: Sequence[tuple[float, tuple[int, int], str]]) -> None:
    import numpy as np
    from PIL import Image

    import apncli.data.images  # noqa: F401  (registers the HEIF plugin with Pillow)

    megapixels, (aw, ah), fmt = mix[index % len(mix)]
    width = round((megapixels * 1e6 * aw / ah) ** 0.5)
    height = round(megapixels * 1e6 / width)
    rng = np.random.default_rng(index)
    pixels = _photo(width, height, rng, sources[index % len(sources)] if sources else None)
    image = Image.fromarray(pixels)
    path = folder / f"img{index:05d}.{SUFFIXES[fmt]}"
    quality = JPEG_QUALITIES[index % len(JPEG_QUALITIES)]
    if fmt == "jpeg":
        subsampling = 2 if index % 3 else 0  # mostly 4:2:0 like cameras, some 4:4:4
        image.save(path, "JPEG", quality=quality, subsampling=subsampling, progressive=index % 5 == 0)
    elif fmt == "png":
        image.save(path, "PNG", compress_level=6)
    elif fmt == "webp":
        image.save(path, "WEBP", quality=quality)
    else:  # phone originals: HEIC (pillow-heif)
        image.save(path, "HEIF", quality=quality)


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
    """Count, files per format, total megapixels and megabytes of the image files in ``folder``."""
    from PIL import Image

    import apncli.data.images  # noqa: F401  (registers the HEIF plugin with Pillow)

    files = image_files(folder)
    pixels = 0
    formats: dict[str, int] = {}
    for path in files:
        with Image.open(path) as im:
            pixels += im.width * im.height
            formats[str(im.format)] = formats.get(str(im.format), 0) + 1
    return {
        "files": len(files),
        "formats": formats,
        "megapixels": round(pixels / 1e6, 1),
        "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1),
    }


def describe_images(stats: dict[str, Any]) -> str:
    """``48 files (36 JPEG, 12 PNG), 190.8 MP, 82.4 MB``: one line for the notes under a table."""
    formats = ", ".join(f"{n} {fmt}" for fmt, n in sorted(stats["formats"].items()))
    return f"{stats['files']} files ({formats}), {stats['megapixels']} MP, {stats['megabytes']} MB"


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

    def steady_rate(self, burst_s: float = 0.002) -> float:
        """Records per second over the last three quarters of the output: leaves out start-up, model load
        and the pipeline filling up (a scan decodes ``2 x workers + batch`` files ahead before its first
        record, so a window from the first record on would credit it with work done before the window).

        Records of one batch arrive together (within ``burst_s``); the window opens at the last record of
        the batch at the quarter mark and counts the records after it, up to the last one.
        """
        times = [t for t, line in self.lines if line.strip()]
        start = len(times) // 4
        while start + 1 < len(times) and times[start + 1] - times[start] < burst_s:
            start += 1
        if len(times) - start < 2 or times[-1] <= times[start]:
            return float("nan")
        return (len(times) - 1 - start) / (times[-1] - times[start])


def run_measured(command: Sequence[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> Run:
    """Run ``command``, timestamp each stdout line, and read the child's own peak RSS and CPU via wait4.

    The command is started by a small launcher process: Linux hands a process the peak RSS of the memory
    it was forked from (``ru_maxrss`` after fork + exec), so a child forked straight from this process
    would report at least this process's own peak (hundreds of MB once it has generated 12-MP images or
    imported torch). The launcher starts fresh and small, and reports its child's figure.
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile(mode="w+") as err, tempfile.NamedTemporaryFile(mode="r") as peak:
        start = time.perf_counter()
        launch = [sys.executable, "-c", _LAUNCHER, peak.name, *command]
        proc = subprocess.Popen(launch, stdout=subprocess.PIPE, stderr=err, env=full_env, text=True,
                                cwd=cwd)  # stderr to a file: a full pipe would block the child
        assert proc.stdout is not None
        lines = [(time.perf_counter(), line) for line in proc.stdout]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
        maxrss = int(peak.read() or usage.ru_maxrss)
    return Run(command=list(command), returncode=proc.returncode, wall_s=wall,
               cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mb=maxrss / _RSS_UNITS_PER_MB,
               lines=lines, stderr=stderr)


#: ``python -c _LAUNCHER PEAK_FILE COMMAND...``: runs COMMAND, writes its ru_maxrss to PEAK_FILE, exits as it.
_LAUNCHER = """import os, subprocess, sys
_, status, usage = os.wait4(subprocess.Popen(sys.argv[2:]).pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


_RSS_UNITS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux


def python_command(*args: str | Path) -> list[str]:
    return [sys.executable, *[str(a) for a in args]]


def apn_command(*args: str | Path) -> list[str]:
    return python_command("-m", "apncli", *args)


SCORED_EXIT_CODES = (0, 1)  # 1 = something was flagged, which random weights may well do


def measure_stream(command: list[str], expected: int, what: str) -> Run:
    """Run a JSONL-printing command (a scan, the decode floor, the CLIP peer) and check it printed
    ``expected`` records, none of them an error (a failed decode is cheap and would inflate the rate)."""
    print(f"running {what} ...", file=sys.stderr, flush=True)
    run = run_measured(command)
    records = [line for _, line in run.lines if line.strip()]
    if run.returncode not in SCORED_EXIT_CODES or len(records) != expected:
        fail(run, f"{what} ({len(records)} of {expected} records)")
    errors = [record for record in map(json.loads, records) if record.get("error")]
    if errors:
        first = errors[0]
        raise SystemExit(f"{what}: {len(errors)} files failed, e.g. {first['path']}: {first['error']}")
    return run


def rate_row(runs: list[Run], files: int, startup: Run) -> dict[str, float]:
    """Median figures of repeated runs; CPU per image leaves out the start-up (imports, model load)."""
    rates = [r.steady_rate() for r in runs]
    if all(rate != rate for rate in rates):  # one output burst (few files): fall back to net wall time
        rates = [files / max(1e-9, r.wall_s - startup.wall_s) for r in runs]
    return {
        "images_per_s": median(rates),
        "images_per_s_end_to_end": median([files / r.wall_s for r in runs]),
        "cpu_ms_per_image": median([1000 * (r.cpu_s - startup.cpu_s) / files for r in runs]),
        "startup_s": startup.wall_s,
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
    }


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


def add_scan_args(parser: argparse.ArgumentParser) -> None:
    """The options every scan benchmark passes on: its own files, decode threads, batch, tiles."""
    parser.add_argument("--data", type=Path, help="Scan the image files of this folder instead.")
    parser.add_argument("--workers", type=int, default=2, help="Decode threads (default 2).")
    parser.add_argument("--batch-size", type=int, help="Pass --batch-size to apn scan (default: its own).")
    parser.add_argument("--tiles", type=int, help="Pass --tiles to every command (default: the model's).")


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
