"""Peak memory of `apn scan` on 1,000 vs 10,000 files: it must stay flat (the scan streams).

Each folder holds small JPEG/PNG files (hard links to 64 distinct images, so every file is really opened
and decoded); each scan is its own process, writing JSONL to a temp file with default options
(provenance on), and its peak RSS comes from ``wait4``. By default the test-only ``tiny`` configuration
scores the crops, because what could grow is the pipeline, discovery and the writers, not the network
(whose activations are bounded by the batch size) — pass ``--config lite`` or ``--weights`` to use
another model (10,000 files then take several minutes on 2 cores).

    python bench/memory_growth.py [--quick] [--sizes 1000,10000] [--config tiny] [--out r.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

import common

LIMIT = 0.10  # the target: within 10 %


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    load_before = os.getloadavg()[0]
    weights, note = common.checkpoint_for(args.weights, args.config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="apn-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = common.small_folder(size)
            out = os.path.join(tmp, f"scan-{size}.jsonl")
            print(f"scanning {size} files ...", file=sys.stderr, flush=True)
            run = common.run_measured(common.apn_command("scan", folder, "--weights", weights, "--out", out,
                                                         "--device", "cpu"))
            with open(out, encoding="utf-8") as handle:
                records = sum(1 for _ in handle)
            if run.returncode not in (0, 1) or records != size:
                common.fail(run, f"scan of {size} files ({records} records)")
            rows.append({"files": size, "peak_rss_mb": run.peak_rss_mb, "wall_s": run.wall_s,
                         "images_per_s": size / run.wall_s})
    first, last = rows[0], rows[-1]
    growth = (last["peak_rss_mb"] - first["peak_rss_mb"]) / first["peak_rss_mb"]
    per_file_kb = 1024 * (last["peak_rss_mb"] - first["peak_rss_mb"]) / max(1, last["files"] - first["files"])
    results = {"machine": common.machine_info(), "model": note, "runs": rows, "growth": growth,
               "kb_per_extra_file": per_file_kb, "flat": abs(growth) <= LIMIT,
               "load_note": common.load_note(load_before)}
    _print(results)
    common.write_results(args.out, results)
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--sizes", help="Comma-separated file counts (default 1000,10000; --quick 500,5000).")
    parser.add_argument("--config", default="tiny", help="Config of the random-weights model (default tiny).")
    parser.add_argument("--weights", help="Scan with this checkpoint instead.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ("500,5000" if args.quick else "1000,10000")
    return args


def _print(results: dict[str, Any]) -> None:
    m = results["machine"]
    rows = [(r["files"], r["peak_rss_mb"], r["images_per_s"]) for r in results["runs"]]
    print(common.table(f"Memory growth of apn scan — {m['cpu']}, {m['cores']} cores, {m['date']}",
                       ["files", "peak RSS MB", "images/s (end to end)"], rows))
    verdict = "flat" if results["flat"] else "NOT flat"
    print(f"growth {100 * results['growth']:+.1f} % ({results['kb_per_extra_file']:+.2f} KB per extra file): "
          f"{verdict} (target within ±{100 * LIMIT:.0f} %)")
    print(f"model: {results['model']}")
    print(results["load_note"])


if __name__ == "__main__":
    main()
