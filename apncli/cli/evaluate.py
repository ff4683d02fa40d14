"""``apn eval``: per-generator detection metrics of a checkpoint on a labelled dataset."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from apncli.cli import common, output
from apncli.data.layouts import LAYOUTS_HELP
from apncli.errors import UsageError, printable

EVAL_HELP = (
    "Measure a detector on a labelled dataset, per generator and as the cross-generator mean.\n\n"
    f"{LAYOUTS_HELP} GenImage is evaluated on every generator's val split, DiffusionForensics/ForenSynths "
    "on their test split, folder and manifest on every file. Where reals are shared (folder, manifest, a "
    "DiffusionForensics domain) each generator is scored against all of them.\n\n"
    "Which rule each number uses: acc real, acc fake and acc count every image at the bare threshold "
    "(p(AI) >= the checkpoint's calibrated threshold, or --threshold, is AI-generated; nothing is "
    "inconclusive). AP, AUC and TPR at 1% and 5% FPR use the raw scores (no threshold); a TPR@FPR "
    "finer than 1/reals is n/a. 'inconcl. real' and 'inconcl. fake' count the images `apn scan` with "
    "the same model and --threshold would call inconclusive (too little texture or too much padding, "
    "and, without --threshold, p(AI) inside the checkpoint's inconclusive band); they are counted in "
    "the accuracies as above. Intervals are 95% bootstrap intervals (--bootstrap), the mean's included. "
    "A small set (under 30 reals or fakes per generator) gets a one-line warning on stderr.\n\n"
    "--perturb adds robustness settings (each evaluated separately, plus 'none'); --align-format "
    "re-encodes both classes identically first so that the file format cannot give the answer away.\n\n"
    "Exit codes: 0 evaluated (unreadable files are skipped, each named on stderr); 2 usage error, "
    "model error or no readable image; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)

_COLUMNS = (
    ("n_real", "reals"),
    ("n_fake", "fakes"),
    ("acc_real", "acc real"),
    ("acc_fake", "acc fake"),
    ("acc", "acc"),
    ("ap", "AP"),
    ("auc", "AUC"),
    ("tpr_at_1pct_fpr", "TPR@1%"),
    ("tpr_at_5pct_fpr", "TPR@5%"),
    ("n_inconclusive_real", "inconcl. real"),
    ("n_inconclusive_fake", "inconcl. fake"),
)

#: What the JSON document says about the rule behind each figure (the --help text says the same).
RULES = {
    "acc_real, acc_fake, acc, acc_ci": "bare threshold: p(AI) >= threshold is AI-generated, every image "
                                       "counted (none is inconclusive)",
    "ap, auc, auc_ci, tpr_at_1pct_fpr, tpr_at_5pct_fpr": "raw scores, no threshold; a TPR@FPR finer than "
                                                          "1/n_real is null",
    "n_inconclusive_real, n_inconclusive_fake": "images `apn scan` would call inconclusive: low signal, "
                                                 "and without --threshold p(AI) in the inconclusive band",
}


def register(app: typer.Typer) -> None:
    app.command("eval", help=EVAL_HELP)(eval_command)


def eval_command(
    dataset: str = typer.Option(
        ..., "--dataset", help="genimage, diffusionforensics, forensynths, folder or manifest."
    ),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder (or manifest file)."),
    weights: str | None = typer.Option(None, "--weights", "-w", help=common.WEIGHTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    generators: str | None = typer.Option(
        None, "--generators", help="Only these generators (comma list; case is ignored)."
    ),
    perturb: str | None = typer.Option(
        None, "--perturb", help="Robustness settings, e.g. 'jpeg:75,resize:0.5,blur:1.0' (also webp:Q)."
    ),
    align_format: str | None = typer.Option(
        None, "--align-format", help="Re-encode every image first, e.g. jpeg:95 or webp:90."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Decision threshold (default: the checkpoint's calibrated one); as in `apn scan`, it also "
        "turns the inconclusive band off.",
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0, help="Bootstrap resamples for AUC/acc intervals (0: off)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and of --max-per-class sampling."),
    max_per_class: int | None = typer.Option(
        None,
        "--max-per-class",
        min=1,
        help="Score at most N reals and N fakes per generator (seeded sample).",
    ),
    device: str | None = typer.Option(None, "--device", help=common.DEVICE_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Crops per forward pass."),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="Decoding threads."),
) -> int:
    from apncli.data.augment import Perturbation, parse_perturbations
    from apncli.data.layouts import evaluation_groups
    from apncli.engine.detector import Detector
    from apncli.training.evaluation import evaluate_groups, small_set_warning

    try:
        perturbations = parse_perturbations(perturb)
        align = Perturbation.parse(align_format) if align_format else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if align is not None and align.kind not in ("jpeg", "webp"):
        raise UsageError("--align-format must be jpeg:Q or webp:Q")
    names = [g.strip() for g in generators.split(",") if g.strip()] if generators else None
    groups = evaluation_groups(dataset, data_root, names)
    if max_per_class:
        groups = _subsample(groups, max_per_class, seed)
    detector = Detector.load(weights, device=common.parse_device(device))
    cut = detector.info.threshold if threshold is None else threshold
    total = len({s.path for g in groups.values() for s in (*g.reals, *g.fakes)}) * len(perturbations)
    with _progress() as progress:
        task = progress.add_task("scoring", total=total)
        report = evaluate_groups(
            lambda images: detector.judge(images, threshold, batch_size=batch_size),
            groups,
            cut,
            perturbations,
            align,
            n_boot=bootstrap,
            seed=seed,
            workers=workers,
            on_progress=lambda n: progress.advance(task, n),
        )
    for message in report["skipped"]:
        common.stderr_console.print(printable(f"skipped unreadable file: {message}"), markup=False)
    if all(r["mean"].get("n_real", 0) + r["mean"].get("n_fake", 0) == 0 for r in report["results"].values()):
        raise UsageError("no readable images in the evaluation set")
    warning = small_set_warning(report["results"])
    if warning:
        common.stderr_console.print(printable(f"warning: {warning}"), markup=False)
    document = {
        "model": detector.describe(),
        "dataset": dataset,
        "data_root": str(data_root),
        "threshold": cut,
        "inconclusive_band": _band(detector.info.inconclusive_band if threshold is None else None),
        "rules": RULES,
        "align_format": align.name if align else None,
        "bootstrap": {"resamples": bootstrap, "seed": seed, "level": 0.95},
        "shared_reals": dataset in ("folder", "manifest", "diffusionforensics"),
        "warnings": [warning] if warning else [],
        **report,
    }
    if as_json:
        typer.echo(output.dumps(document, indent=2))
    else:
        _print_tables(document)
    return 0


def _subsample(groups: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """At most n reals and n fakes per generator, drawn reproducibly (shared reals stay shared)."""
    import numpy as np

    from apncli.data.layouts import EvalGroup

    def pick(items: list[Any], salt: int) -> list[Any]:
        if len(items) <= n:
            return items
        idx = np.random.default_rng([seed, salt]).choice(len(items), n, replace=False)
        return [items[i] for i in sorted(idx)]

    return {name: EvalGroup(name, pick(g.reals, 0), pick(g.fakes, 1)) for name, g in groups.items()}


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=common.stderr_console,
        transient=True,
        disable=not common.stderr_console.is_terminal,  # a pipe or log file gets no bar (nor its blank line)
    )


def _band(band: tuple[float, float] | None) -> list[float] | None:
    """The inconclusive band a scan applies, or None when it applies none (no band, an empty one)."""
    return list(band) if band is not None and band[0] < band[1] else None


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key.startswith("n_"):
        return str(value)
    if not isinstance(value, float) or math.isnan(value):
        return "n/a"
    return f"{value:.3f}"


def _ci(row: dict[str, Any], key: str) -> str:
    ci = row.get(f"{key}_ci")
    if ci and all(isinstance(v, float) and not math.isnan(v) for v in ci):
        return f"{ci[0]:.3f}-{ci[1]:.3f}"
    return "n/a"


def _caption(document: dict[str, Any]) -> str:
    """Which rule each column uses, under every table."""
    band = document["inconclusive_band"]
    inconclusive = "too little texture or too much padding"
    if band:
        inconclusive += f", or p(AI) in [{band[0]:.4f}, {band[1]:.4f}]"
    return (f"acc: every image at the bare threshold (p(AI) >= {document['threshold']:.4f} is AI). "
            "AP, AUC, TPR: raw scores. "
            f"inconcl.: what `apn scan` calls inconclusive ({inconclusive}).")


def _print_tables(document: dict[str, Any]) -> None:
    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console = Console(soft_wrap=False, width=max(console.width, 160))
    with_ci = document["bootstrap"]["resamples"] > 0
    for name, result in document["results"].items():
        title = f"{document['dataset']}: perturbation {name}, threshold {document['threshold']:.4f}"
        if document["align_format"]:
            title += f", aligned to {document['align_format']}"
        table = Table(title=title, title_justify="left", caption=_caption(document), caption_justify="left")
        table.add_column("generator", style="bold")
        for _, header in _COLUMNS:
            table.add_column(header, justify="right")
        cis = ("acc", "auc") if with_ci else ()
        for key in cis:
            table.add_column(f"{key} 95% CI", justify="right")
        for gen, row in result["generators"].items():
            table.add_row(Text(printable(gen)), *(_cell(row, key) for key, _ in _COLUMNS),
                          *(_ci(row, key) for key in cis))
        table.add_section()
        mean = result["mean"]
        table.add_row("mean", *(_cell(mean, key) for key, _ in _COLUMNS), *(_ci(mean, key) for key in cis),
                      style="bold")
        console.print(table)
