"""The whole benchmark suite in one go: scan vs decode floor (+ paper) on the small-file mix and on the
real-world mix (with the CLIP peer), training, memory growth.

Prints every table (Markdown, ready for README's performance section) and a one-line verdict per target;
``--out`` also saves every figure as JSON. About 10 minutes on 2 busy cores; ``--quick`` about 4.

    python bench/run_all.py [--quick] [--weights W.safetensors] [--data FOLDER] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import common
import memory_growth
import scan_realworld
import scan_throughput
import train_throughput


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--weights", help="Checkpoint to scan with (default: random-weights `lite`).")
    parser.add_argument("--data", type=Path, help="Scan the JPEG/PNG files of this folder instead.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    shared = ["--quick"] if args.quick else []
    scan_args = shared + (["--weights", args.weights] if args.weights else []) + (
        ["--data", str(args.data)] if args.data else [])
    command = ["python", "bench/run_all.py", *(sys.argv[1:] if argv is None else argv)]
    results = {"command": shlex.join(command), "scan": scan_throughput.main(scan_args)}
    print()
    results["realworld"] = scan_realworld.main(scan_args)
    print()
    results["training"] = train_throughput.main(shared)
    print()
    results["memory"] = memory_growth.main(shared)
    results["minutes"] = (time.perf_counter() - started) / 60
    print()
    _verdicts(results)
    common.write_results(args.out, results)
    return results


def _verdicts(results: dict[str, Any]) -> None:
    ratio = results["scan"]["scan_over_floor"]["median"]
    real = results["realworld"]["ratios"]
    growth = results["memory"]["growth"]
    print("### Targets")
    _target(f"scan throughput ≥ 0.5 × decode floor on {os.cpu_count()} cores", ratio, 0.5)
    _target("real-world mix: scan ≥ 0.5 × its decode floor", real["floor"]["median"],
            scan_realworld.FLOOR_TARGET)
    if "clip" in real:
        _target("real-world mix: scan ≥ 3 × the CLIP peer", real["clip"]["median"],
                scan_realworld.PEER_TARGET)
    print(f"- memory flat within 10 % from {results['memory']['runs'][0]['files']:,} to "
          f"{results['memory']['runs'][-1]['files']:,} files: {100 * growth:+.1f} % "
          f"→ {'met' if results['memory']['flat'] else 'NOT met'}")
    print(f"- suite took {results['minutes']:.1f} min; command: {results['command']}")


def _target(what: str, value: float, target: float) -> None:
    print(f"- {what}: {value:.2f} × → {'met' if value >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
