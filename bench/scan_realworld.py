"""`apn scan` on a real-world mix, against its decode floor and the CLIP peer, with where the time goes.

The mix (``common.REALWORLD_MIX``): web JPEGs of ~0.25 MP, 1024x768 JPEGs, ~1-MP PNG photos, 1024²
generator PNGs, WebP, and HEIC and JPEG originals up to 12 MP (content: the real photos of
``../shared/data`` when present). For each repeat three processes run back to back on the same files: the
decode floor (``decode_floor.py``: decode + crop only), `apn scan` (JSONL, default options: provenance
on) and the CLIP peer (``clip_peer.py``: CLIP ViT-B/16 INT8 in onnxruntime, 2 threads); the scan/floor
and scan/peer ratios are taken per repeat and their medians reported. Then one single-threaded pass
(``scan_stages.py``) splits each file's CPU into decode, crops, forward, provenance and output, which
gives the time split and the cost per image against megapixels. Start-up is the wall time of each
command on one small file.

Use a few hundred files for figures of record (``--files 384``): the scan (and the floor) decode up to
``pipeline.read_ahead`` files before the first record, part of which the steady window misses, so over 96
files scan / peer read ~7 % higher than over 384 (the peer reads nothing ahead).

The model is ``--weights`` or, by default, the registry's default detector when it is a ``--config``
network, else a random-weights ``--config`` checkpoint (same speed as trained weights).

    python bench/scan_realworld.py [--quick] [--weights W.safetensors] [--config pretrained-lite0] [--mix web]
                                   [--data FOLDER] [--files 48] [--repeats 3] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import clip_peer
import common

HERE = Path(__file__).resolve().parent
STAGES = ("decode", "crops", "forward", "provenance", "output")
FLOOR_TARGET, PEER_TARGET = 0.5, 3.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    load_before = os.getloadavg()[0]
    info = common.machine_info()
    if args.data:
        folder, origin = args.data, f"your folder {args.data}"
    else:
        folder, origin = common.mixed_folder(args.files, common.MIXES[args.mix], args.mix)
    stats = common.folder_stats(folder)
    count = stats["files"]
    weights, note = common.checkpoint_for(args.weights, args.config)
    commands = _commands(args, weights)
    one_small = sorted(common.small_folder(1).glob("f*"))
    startup = {kind: common.measure_stream(make(one_small), 1, f"{kind} start-up")
               for kind, make in commands.items()}
    runs: dict[str, list[common.Run]] = {kind: [] for kind in commands}
    for _ in range(args.repeats):  # back to back: each ratio compares runs under similar load
        for kind, make in commands.items():
            runs[kind].append(common.measure_stream(make([folder]), count, kind))
    stages = _stage_split(folder, weights, args)
    results = {
        "machine": info, "images": {**stats, "content": origin, "mix": None if args.data else args.mix},
        "model": note, "workers": args.workers,
        "repeats": args.repeats, "batch_size": args.batch_size or "apn scan default",
        "tiles": args.tiles or "model default", "clip": args.clip_note,
        "rows": {kind: common.rate_row(runs[kind], count, startup[kind]) for kind in commands},
        "ratios": _ratios(runs),
        "stages": stages,
        "load_note": common.load_note(load_before),
    }
    _print(results)
    common.write_results(args.out, results)
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--weights", help="Checkpoint to scan with (default: see above).")
    parser.add_argument("--config", default="pretrained-lite0",
                        help="Network of the random-weights checkpoint when no --weights (pretrained-lite0).")
    parser.add_argument("--mix", choices=sorted(common.MIXES), default="realworld",
                        help="Generated files: realworld (0.25-12 MP, JPEG/PNG/WebP/HEIC; default) or web "
                        "(issue 18's first mix: web-sized JPEGs and ~1-MP PNGs).")
    parser.add_argument("--files", type=int, help="Generated files (a multiple of 12 keeps the mix; 48).")
    parser.add_argument("--repeats", type=int, help="Floor + scan + peer rounds (default 3; --quick 1).")
    parser.add_argument("--no-clip", action="store_true", help="Leave the CLIP peer out.")
    common.add_scan_args(parser)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.files = args.files or (24 if args.quick else 48)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.clip_note = "left out (--no-clip)" if args.no_clip else clip_peer.available()
    return args


def _commands(args: argparse.Namespace, weights: Path) -> dict[str, Any]:
    """Command builders (paths → argv) for the floor, the scan and (when it can run) the CLIP peer."""
    tiles = ["--tiles", str(args.tiles)] if args.tiles else []
    batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    commands = {
        "floor": lambda paths: common.python_command(HERE / "decode_floor.py", *paths, "--weights", weights,
                                                     "--workers", args.workers, *tiles, *batch),
        "scan": lambda paths: common.apn_command("scan", *paths, "--weights", weights, "--jsonl", "--device",
                                                 "cpu", "--workers", str(args.workers), *batch, *tiles),
    }
    if args.clip_note is None:
        commands["clip"] = lambda paths: common.python_command(HERE / "clip_peer.py", *paths, "--threads", 2)
    return commands


def _ratios(runs: dict[str, list[common.Run]]) -> dict[str, dict[str, Any]]:
    """Steady-rate ratios per repeat (same round) and their median: scan / floor, scan / CLIP peer, and
    floor / CLIP peer ("floor_clip": about the most a scan of these files reaches against the peer, were
    its forward pass free)."""
    ratios = {}
    for key, (num, den) in {"floor": ("scan", "floor"), "clip": ("scan", "clip"),
                            "floor_clip": ("floor", "clip")}.items():
        if den in runs:
            each = [n.steady_rate() / d.steady_rate() for n, d in zip(runs[num], runs[den], strict=True)]
            ratios[key] = {"median": common.median(each), "each": [round(v, 3) for v in each]}
    return ratios


def _stage_split(folder: Path, weights: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One single-threaded pass of ``scan_stages.py``: start-up seconds and per-file stage CPU ms."""
    command = common.python_command(HERE / "scan_stages.py", folder, "--weights", weights)
    command += (["--tiles", str(args.tiles)] if args.tiles else []) + (
        ["--batch-size", str(args.batch_size)] if args.batch_size else [])
    run = common.run_measured(command)
    if run.returncode != 0:
        common.fail(run, "time split")
    lines = [json.loads(line) for _, line in run.lines if line.strip()]
    return {"startup": lines[0]["startup"], "files": lines[1:], "peak_rss_mb": run.peak_rss_mb}


def _print(results: dict[str, Any]) -> None:
    m, rows = results["machine"], results["rows"]
    names = {"floor": "decode floor (decode + crop only)", "scan": "apn scan (default options)",
             "clip": "CLIP ViT-B/16 INT8 peer (onnxruntime, 2 threads)"}
    print(common.table(
        f"Real-world mix: scan throughput on CPU — {m['cpu']}, {m['cores']} cores, {m['date']}",
        ["what", "images/s (steady)", "images/s (end to end)", "CPU ms / image", "start-up s", "peak RSS MB"],
        [(names[kind], r["images_per_s"], r["images_per_s_end_to_end"], r["cpu_ms_per_image"], r["startup_s"],
          r["peak_rss_mb"]) for kind, r in rows.items()]))
    ratios = results["ratios"]
    print(f"scan / decode floor: {ratios['floor']['median']:.2f} (per repeat {ratios['floor']['each']}; "
          f"target ≥ {FLOOR_TARGET})")
    if "clip" in ratios:
        print(f"scan / CLIP peer: {ratios['clip']['median']:.2f} (per repeat {ratios['clip']['each']}; "
              f"target ≥ {PEER_TARGET})")
        print(f"decode floor / CLIP peer: {ratios['floor_clip']['median']:.2f} (per repeat "
              f"{ratios['floor_clip']['each']}): about the most a scan reaches with the same decoding")
    else:
        print(f"CLIP peer: {results['clip']}")
    print()
    _print_stages(results["stages"], rows["scan"]["startup_s"])
    print(f"images: {common.describe_images(results['images'])}, {results['images']['content']}")
    print(f"model: {results['model']}; workers {results['workers']}, batch {results['batch_size']}, tiles "
          f"{results['tiles']}; {results['repeats']} repeats; torch {m['torch']}, python {m['python']}")
    print(results["load_note"])


def _print_stages(stages: dict[str, Any], scan_startup_s: float) -> None:
    files = stages["files"]
    mean = {s: statistics.fmean(f["ms"][s] for f in files) for s in STAGES}
    total = sum(mean.values())
    print(common.table(
        "Where a scan's CPU goes (one thread, mean CPU ms per image)",
        [*STAGES, "total"], [[*(mean[s] for s in STAGES), total],
                             [*(f"{100 * mean[s] / total:.0f} %" for s in STAGES), "100 %"]]))
    start = stages["startup"]
    print(f"start-up: {scan_startup_s:.2f} s wall for `apn scan` of one small file; of it, importing the "
          f"engine (torch) {start['imports_s']:.2f} s, loading the checkpoint {start['model_load_s']:.2f} s")
    print("crops = the scan's decode step (decode_crops) minus a plain whole-image decode")
    print()
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for f in files:
        groups[(f["format"], round(f["megapixels"], 2))].append(f)
    rows = []
    for (fmt, mp), group in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        ms = {s: statistics.median(f["ms"][s] for f in group) for s in STAGES}
        rows.append((fmt, mp, len(group), *(ms[s] for s in STAGES), sum(ms.values())))
    print(common.table("Cost per image against megapixels (one thread, median CPU ms per image)",
                       ["format", "MP", "files", *STAGES, "total"], rows))


if __name__ == "__main__":
    main()
