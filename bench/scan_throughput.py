"""`apn scan` throughput and peak memory on CPU, against the decode floor, on the same files in one run.

For each repeat, three separate processes run over the same mixed JPEG/PNG folder (0.3–12 MP): the
decode floor (``decode_floor.py``: decode + crop only, same threads), `apn scan` with the default model
and default options, and — on the first files only — `apn scan` with the ``paper`` configuration.
Throughput is the steady rate of the output stream (records after the first batch, per second), so
start-up and model loading do not count; end-to-end wall time is reported too, and CPU time per image
net of a start-up run on one small file (the load-independent cost). Peak memory is the child's own
maximum RSS. The scan/floor ratio is taken per repeat (the two runs are back to back) and
its median reported, which cancels much of the noise of a shared machine.

    python bench/scan_throughput.py [--quick] [--weights W.safetensors] [--data FOLDER] [--out r.json]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import common


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    load_before = os.getloadavg()[0]
    info = common.machine_info()
    folder, origin = (args.data, f"your folder {args.data}") if args.data else common.mixed_folder(args.files)
    stats = common.folder_stats(folder)
    files = common.image_files(folder)
    commands, weights_note = _commands(args)
    one_small = sorted(common.small_folder(1).glob("f*"))
    startup = {kind: common.measure_stream(make(one_small), 1, f"{kind} start-up")
               for kind, make in commands.items() if kind != "paper" or args.paper_files}
    floors, scans = [], []
    for _ in range(args.repeats):  # back-to-back pairs: each ratio compares runs under similar load
        floors.append(common.measure_stream(commands["floor"]([folder]), len(files), "decode floor"))
        scans.append(common.measure_stream(commands["lite"]([folder]), len(files), "apn scan (lite)"))
    paper = None
    if args.paper_files:
        paper = common.measure_stream(commands["paper"](files[: args.paper_files]), args.paper_files,
                                      "apn scan (paper)")
    results = _summarise(info, stats, origin, weights_note, floors, scans, paper, startup, args)
    results["load_note"] = common.load_note(load_before)
    _print(results)
    common.write_results(args.out, results)
    return results


def _commands(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Command builders (paths → argv) for the floor and the two scans, and what the model is."""
    weights, note = common.checkpoint_for(args.weights, "lite")
    paper_weights = common.checkpoint_for(None, "paper")[0] if args.paper_files else None
    options = ["--jsonl", "--device", "cpu", "--workers", str(args.workers)]
    batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    options += batch
    tiles = ["--tiles", str(args.tiles)] if args.tiles else []
    floor_script = Path(__file__).with_name("decode_floor.py")
    return {
        "floor": lambda paths: common.python_command(floor_script, *paths, "--weights", weights,
                                                     "--workers", args.workers, *tiles, *batch),
        "lite": lambda paths: common.apn_command("scan", *paths, "--weights", weights, *options, *tiles),
        "paper": lambda paths: common.apn_command("scan", *paths, "--weights", paper_weights, *options),
    }, note


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--weights", help="Checkpoint to scan with (default: random-weights `lite`).")
    parser.add_argument("--files", type=int, help="Generated files (a multiple of 8 keeps the size mix; 48).")
    parser.add_argument("--repeats", type=int, help="Floor+scan pairs to run (default 3; --quick 1).")
    parser.add_argument("--paper-files", type=int, help="Files scanned with `paper` (8; --quick 2; 0 skips).")
    common.add_scan_args(parser)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.files = args.files or (16 if args.quick else 48)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.paper_files is None:
        args.paper_files = 2 if args.quick else 8
    return args


def _summarise(info: dict[str, Any], stats: dict[str, Any], origin: str, weights_note: str,
               floors: list[common.Run], scans: list[common.Run], paper: common.Run | None,
               startup: dict[str, common.Run], args: argparse.Namespace) -> dict[str, Any]:
    floor_rates = [r.steady_rate() for r in floors]
    scan_rates = [r.steady_rate() for r in scans]
    ratios = [s / f for s, f in zip(scan_rates, floor_rates, strict=True)]
    files = stats["files"]
    results: dict[str, Any] = {
        "machine": info, "images": {**stats, "content": origin}, "model": weights_note,
        "workers": args.workers, "batch_size": args.batch_size or "apn scan default", "repeats": args.repeats,
        "tiles": args.tiles or "model default",
        "floor": common.rate_row(floors, files, startup["floor"]),
        "scan_lite": common.rate_row(scans, files, startup["lite"]),
        "scan_over_floor": {"median": common.median(ratios), "each": [round(r, 3) for r in ratios]},
        "floor_rates": floor_rates, "scan_rates": scan_rates,
    }
    if paper is not None:
        paper_row = common.rate_row([paper], args.paper_files, startup["paper"])
        results["scan_paper"] = {**paper_row, "files": args.paper_files}
        paper_rate, lite_rate = results["scan_paper"]["images_per_s"], results["scan_lite"]["images_per_s"]
        results["paper_over_lite"] = paper_rate / lite_rate
    return results


def _print(results: dict[str, Any]) -> None:
    m, img = results["machine"], results["images"]
    rows = [("decode floor (decode + crop only)", results["floor"]),
            ("apn scan, default model (lite)", results["scan_lite"])]
    if "scan_paper" in results:
        paper = results["scan_paper"]
        rows.append((f"apn scan, paper config (first {paper['files']} files)", paper))
    print(common.table(
        f"Scan throughput on CPU — {m['cpu']}, {m['cores']} cores, {m['date']}",
        ["what", "images/s (steady)", "images/s (end to end)", "CPU ms / image", "start-up s", "peak RSS MB"],
        [(name, r["images_per_s"], r["images_per_s_end_to_end"], r["cpu_ms_per_image"], r["startup_s"],
          r["peak_rss_mb"]) for name, r in rows]))
    ratio = results["scan_over_floor"]
    print(f"scan / decode floor: {ratio['median']:.2f} (median of {ratio['each']}; target ≥ 0.5)")
    if "paper_over_lite" in results:
        print(f"paper / lite throughput: {results['paper_over_lite']:.3f}")
    print(f"images: {common.describe_images(img)}, {img['content']}")
    print(f"model: {results['model']}; workers {results['workers']}, batch {results['batch_size']}; "
          f"torch {m['torch']}, python {m['python']}")
    print(results.get("load_note", ""))


if __name__ == "__main__":
    main()
