"""Training throughput (images/s) of the `lite` and `paper` configurations on this machine.

What is timed is one training step as ``apn train`` takes it, on random 224-px batches, so the figure
is the model's cost and not the data loader's: forward, the detector loss of
``apncli.training.losses.detector_loss`` (the three cross-entropies, the alignment, band, pull and CLUB
MI terms), backward, and the Adam step (with the decomposition bases in their own group). A second
figure adds the CLUB estimator phase with the trainer's defaults (3 estimator steps, each on a fresh
batch, which costs 3 extra forward passes without gradients). Each configuration runs in its own
process; peak RSS is that process's maximum.

    python bench/train_throughput.py [--quick] [--configs lite,paper] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import common

DEFAULTS = {"lite": {"batch": 8, "steps": 4}, "paper": {"batch": 2, "steps": 2}}
CLUB_STEPS = 3


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.batch, args.steps, args.threads)))
        return {}
    load_before = os.getloadavg()[0]
    rows = {}
    for name in args.configs.split(","):
        batch = args.batch or DEFAULTS[name]["batch"]
        steps = args.steps or max(1, DEFAULTS[name]["steps"] // (2 if args.quick else 1))
        print(f"training step: {name}, batch {batch}, {steps} timed steps ...", file=sys.stderr, flush=True)
        command = common.python_command(__file__, "--child", name, "--batch", batch, "--steps", steps)
        run = common.run_measured(command + (["--threads", str(args.threads)] if args.threads else []))
        if run.returncode != 0 or not run.lines:
            common.fail(run, f"training step of {name}")
        rows[name] = {**json.loads(run.lines[-1][1]), "peak_rss_mb": run.peak_rss_mb}
    results = {"machine": common.machine_info(), "configs": rows, "load_note": common.load_note(load_before)}
    _print(results)
    common.write_results(args.out, results)
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.RawHelp)
    parser.add_argument("--configs", default="lite,paper", help="Comma-separated configs.")
    parser.add_argument("--batch", type=int, help="Batch size (default: lite 8, paper 2).")
    parser.add_argument("--steps", type=int, help="Timed steps after one warm-up (default: lite 4, paper 2).")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    common.add_common_args(parser)
    return parser.parse_args(argv)


def _child(name: str, batch: int, steps: int, threads: int | None) -> dict[str, Any]:
    """Build the model and optimiser as the trainer does, then time detector steps and CLUB phases."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from apncli.model import CLUB, build_model
    from apncli.training.losses import LossWeights, detector_loss, mi_pairs

    torch.manual_seed(0)
    model = build_model(name).train()
    club = CLUB(model.config.feature_dim, model.config.feature_dim, model.config.feature_dim)
    optimizer = torch.optim.Adam([{"params": model.other_parameters(), "lr": 1e-4},
                                  {"params": model.base_parameters(), "lr": 1e-7}])
    club_optimizer = torch.optim.Adam(club.parameters(), lr=1e-5)
    crop = model.config.crop

    def batch_of() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(batch, 3, crop, crop), torch.randint(0, 2, (batch,))

    def detector_step() -> Any:
        x, y = batch_of()
        out = model(x)
        bases = (model.spatial_bases.semantic_base, model.spatial_bases.generative_base)
        mi = lambda o: club.mi_upper_bound(*mi_pairs(o, "fused")[0])  # noqa: E731
        loss, _ = detector_loss(out, y, LossWeights(), bases, mi)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return out

    def club_phase() -> None:
        for _ in range(CLUB_STEPS):
            with torch.no_grad():
                feats = model(batch_of()[0])
            x, y = mi_pairs(feats, "fused")[0]
            loss = club.learning_loss(x.detach(), y.detach())
            club_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            club_optimizer.step()

    detector_step()  # warm-up: allocator, oneDNN primitive caches
    step_s = _timed(detector_step, steps)
    club_s = _timed(club_phase, max(1, steps // 2))
    return {"batch": batch, "steps": steps, "threads": torch.get_num_threads(),
            "images_per_s": batch / step_s, "images_per_s_with_club": batch / (step_s + club_s),
            "seconds_per_step": step_s}


def _timed(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return common.median(times)


def _print(results: dict[str, Any]) -> None:
    m = results["machine"]
    rows = [(name, r["batch"], r["threads"], r["images_per_s"], r["images_per_s_with_club"],
             r["seconds_per_step"], r["peak_rss_mb"]) for name, r in results["configs"].items()]
    print(common.table(f"Training throughput on CPU — {m['cpu']}, {m['cores']} cores, {m['date']}",
                       ["config", "batch", "threads", "images/s (detector step)", "images/s (+ CLUB phase)",
                        "s / step", "peak RSS MB"], rows))
    print("step = forward + detector_loss (all terms, CLUB MI bound) + backward + Adam; random 224-px "
          "batches (no data loading). '+ CLUB phase' adds the trainer's default 3 estimator steps on fresh "
          "batches.")
    print(results["load_note"])


if __name__ == "__main__":
    main()
