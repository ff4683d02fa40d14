"""``apn train``: train (or resume) an APN detector on a dataset folder into a checkpoint ``scan`` loads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from apncli.cli import common
from apncli.data.layouts import LAYOUTS_HELP
from apncli.errors import TEACHER_INSTALL, UsageError, printable

#: ``--config`` names and what each is for. Importing the config registry here would load torch for every
#: ``apn`` command, ``--help`` included, so a test keeps these names equal to ``apncli.model.CONFIGS``.
CONFIG_CHOICES = {
    "lite": "the default: a small network, 224-px crops",
    "paper": "the paper's network: ConvNeXt-Base and ResNet-18 trunks, for --pretrained "
             "convnext_base=...,resnet18=...",
    "pretrained-lite0": "ImageNet EfficientNet-Lite0 trunks, 128-px crops, for --pretrained "
                        "efficientnet_lite0=efficientnet_lite0",
    "tiny": "tests only",
}

TRAIN_HELP = (
    "Train an APN detector on a local dataset (nothing is downloaded).\n\n"
    f"{LAYOUTS_HELP}\n\n"
    "--out receives train.log, metrics.jsonl, state-last.apn-state (resume with --resume OUT), "
    "best-weights.apn-state and the final model.safetensors, whose threshold is calibrated on held-back "
    "training files at --target-fpr; a run that fails before it starts leaves no new --out folder behind. "
    "Multi-GPU / multi-node: torchrun --nproc_per_node=N -m apncli train ... (--batch-size is the global "
    "batch)."
)


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_command)


def _range(text: str, what: str, cast: type = float) -> tuple[Any, Any]:
    """``"60-100"`` → (60, 100); a single value means lo = hi."""
    lo, sep, hi = text.partition("-") if not text.startswith("-") else (text, "", "")
    try:
        a = cast(lo)
        b = cast(hi) if sep else a
    except ValueError:
        raise UsageError(f"{what} must look like LO-HI, got {text!r}") from None
    return a, b


def _pairs(text: str | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep:
                raise UsageError(f"{what} entries must look like NAME=PATH, got {part.strip()!r}")
            out[key.strip()] = value.strip()
    return out


def _command_line(ctx: typer.Context) -> str:
    """The flags this run was given, for the checkpoint's training record."""
    parts = ["apn train"]
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "DEFAULT":
            continue
        flag = "--" + name.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def train_command(
    ctx: typer.Context,
    dataset: str = typer.Option(
        ..., "--dataset", help="genimage, diffusionforensics, forensynths, folder or manifest."
    ),
    data_root: Path = typer.Option(..., "--data-root", help="Dataset folder (or manifest file)."),
    out: Path = typer.Option(..., "--out", help="Run folder: logs, states, and the final model.safetensors."),
    train_on: str | None = typer.Option(
        None,
        "--train-on",
        help="Generator(s) to train on: genimage sdv14 (default), sdv15, midjourney, adm, glide, "
        "wukong, vqdm, biggan; diffusionforensics lsun_bedroom/adm (default); others: all (default) or "
        "names.",
    ),
    config: str = typer.Option(
        "lite", "--config",
        help="Network: " + "; ".join(f"{name} ({what})" for name, what in CONFIG_CHOICES.items()) + ".",
    ),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Passes over the training files."),
    batch_size: int = typer.Option(24, "--batch-size", min=1, help="Global batch (split over processes)."),
    lr: float = typer.Option(1e-4, "--lr", min=0.0, help="Adam learning rate of the network."),
    base_lr: float = typer.Option(
        1e-7, "--base-lr", min=0.0, help="Learning rate of the decomposition bases."
    ),
    club_lr: float = typer.Option(1e-5, "--club-lr", min=0.0, help="Learning rate of the CLUB estimator."),
    lr_step: int = typer.Option(
        30000, "--lr-step", min=1, help="Iterations between learning-rate decays (x0.1; the paper: 30000)."
    ),
    club_steps: int = typer.Option(3, "--club-steps", min=0, help="CLUB updates per detector step."),
    club_data: str = typer.Option(
        "fresh",
        "--club-data",
        help="CLUB batches: fresh (own loader, as the paper) or reuse (the detector's "
        "batch; about half the compute).",
    ),
    mi_variables: str = typer.Option(
        "fused", "--mi-variables", help="CLUB pair: fused (f_art, f_irr) or branch (one CLUB per branch)."
    ),
    feature_space: str = typer.Option(
        "raw", "--feature-space",
        help="Where L_gen, L_se1-3 and CLUB compare features: raw (the paper) or unit (L2-normalised: "
        "shrinking or growing the features cannot satisfy them).",
    ),
    loss_weights: str | None = typer.Option(
        None,
        "--loss-weights",
        help="Change loss weights (default 1 each), e.g. 'mi=0,pull=0.5'. Names: ce, "
        "ce_freq, ce_spatial, gen, se1, se2, se3, band, pull, mi.",
    ),
    teacher: str | None = typer.Option(
        None,
        "--teacher",
        help="Semantic teacher for L_se2/L_se3: 'clip_b16' (CLIP ViT-B/16 image tower in place of the "
        f"paper's BLIP; needs {escape(TEACHER_INSTALL)}) or a features file (safetensors: 'features' N×D + "
        "header 'paths'). Without one those terms are off and implicit purification is degenerate.",
    ),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="ImageNet trunks as TRUNK=WEIGHTS (a registered name or a file), comma-separated; a trunk "
        "loads into a config that uses it: convnext_base and resnet18 (paper: "
        "'convnext_base=convnext_base,resnet18=resnet18'), efficientnet_lite0 (pretrained-lite0: "
        "'efficientnet_lite0=efficientnet_lite0'), efficientnet_lite1, efficientnet_lite2.",
    ),
    crop: int | None = typer.Option(
        None, "--crop", help="Crop size (multiple of 32); default: the config's."
    ),
    branches: str = typer.Option(
        "both", "--branches",
        help="Branches feeding the artifact feature: both (the paper), or spatial / frequency alone "
        "(ablations: without the frequency-band proposal / without the spatial decomposition).",
    ),
    mask: str | None = typer.Option(
        None, "--mask",
        help="Band masks: hard (the paper's; no task gradient reaches the band proposers), soft, or "
        "straight-through (hard values, soft gradient). Default: the config's.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of splits, shuffling, augmentation and initialisation."),
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        min=0.0,
        max=0.9,
        help="Share of training files held back (half selects the "
        "best epoch, half calibrates the threshold).",
    ),
    val_max: int = typer.Option(5000, "--val-max", min=1, help="Most validation files scored per epoch."),
    target_fpr: float = typer.Option(
        0.05, "--target-fpr", help="False-positive rate on reals the threshold targets."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, max=64, show_default=False,
        help="Data-loading processes (per process) \\[default: the CPUs this process may use]."),
    device: str | None = typer.Option(None, "--device", help=common.DEVICE_HELP),
    amp: bool = typer.Option(
        False, "--amp/--no-amp",
        help="float16 mixed precision on CUDA (default off: it blurs the least-significant-bit traces)."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after this many steps (quick runs)."
    ),
    save_every: int = typer.Option(
        0, "--save-every", min=0, help="Also save the resumable state every N steps."
    ),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between metrics.jsonl step records."),
    fakes: list[str] = typer.Option(
        [],
        "--fakes",
        help="Extra fakes made from the reals, each paired with an aligned real view (same crop and "
        "augmentation), e.g. reconstruct:taef2 (repeatable).",
    ),
    no_augment: bool = typer.Option(
        False, "--no-augment", help="No augmentation (the paper's released setting)."
    ),
    compress_prob: float = typer.Option(
        0.5, "--compress-prob", min=0.0, max=1.0, help="Probability to re-encode an image (both classes)."
    ),
    quality: str = typer.Option("60-100", "--quality", help="Re-encoding quality range."),
    webp_share: float = typer.Option(
        0.25, "--webp-share", min=0.0, max=1.0, help="Share of re-encodings that use WebP instead of JPEG."
    ),
    blur_prob: float = typer.Option(
        0.1, "--blur-prob", min=0.0, max=1.0, help="Probability of Gaussian blur."
    ),
    blur_sigma: str = typer.Option("0.2-1.5", "--blur-sigma", help="Blur sigma range."),
    downscale_prob: float = typer.Option(
        0.0,
        "--downscale-prob",
        min=0.0,
        max=1.0,
        help="Probability to down-scale before cropping (both "
        "classes); off by default, use it when real and fake resolutions differ.",
    ),
    downscale_range: str = typer.Option("0.5-1.0", "--downscale-range", help="Down-scaling factor range."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue a run from its --out folder or state file."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name stored in the checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or log lines on stderr."),
) -> int:
    """Parse flags into a TrainConfig and run it; all torch work lives in apncli.training."""
    from apncli.data.augment import AugmentConfig
    from apncli.engine.device import available_cpus
    from apncli.training.losses import LossWeights
    from apncli.training.trainer import TrainConfig, train

    try:
        augment = (
            AugmentConfig.off()
            if no_augment
            else AugmentConfig(
                compress_prob=compress_prob,
                quality=_range(quality, "--quality", int),
                webp_share=webp_share,
                blur_prob=blur_prob,
                blur_sigma=_range(blur_sigma, "--blur-sigma"),
                downscale_prob=downscale_prob,
                downscale_range=_range(downscale_range, "--downscale-range"),
            )
        )
        weights = LossWeights.parse(loss_weights)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = TrainConfig(
        dataset=dataset,
        data_root=data_root,
        out=out,
        train_on=train_on,
        model=config,
        crop=crop,
        branches=branches,
        mask=mask,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        base_lr=base_lr,
        club_lr=club_lr,
        step_size=lr_step,
        club_steps=club_steps,
        club_data=club_data,
        mi_variables=mi_variables,
        feature_space=feature_space,
        seed=seed,
        val_fraction=val_fraction,
        val_max=val_max,
        target_fpr=target_fpr,
        workers=available_cpus() if workers is None else workers,
        device=common.parse_device(device),
        amp=amp,
        max_steps=max_steps,
        save_every=save_every,
        log_every=log_every,
        fakes=tuple(f.strip() for spec in fakes for f in spec.split(",") if f.strip()),
        teacher=teacher,
        pretrained=_pairs(pretrained, "--pretrained"),
        augment=augment,
        loss_weights=weights,
        resume=resume,
        name=name,
        command=_command_line(ctx),
        progress=not quiet,
    )
    _check_teacher_installed(teacher)
    log = None if quiet else (lambda message: common.stderr_console.print(printable(message), markup=False))
    with _removed_if_left_empty(out):
        result = train(cfg, log=log)
    if result.model_path is not None:
        if not quiet:
            common.stderr_console.print(_summary(result))
        typer.echo(str(result.model_path))
    return 0


def _check_teacher_installed(teacher: str | None) -> None:
    """Refuse a registered ``--teacher`` (``clip_b16``) before anything starts when onnxruntime or the wheel
    carrying the tower is missing, naming both installs (training would stop at the first it misses)."""
    from apncli.training.teacher import missing_install, registered_teacher

    entry = registered_teacher(teacher)
    missing = None if entry is None else missing_install(entry)  # None: no teacher, or a features file
    if missing is not None:
        raise UsageError(f"--teacher {teacher} {missing}")


@contextlib.contextmanager
def _removed_if_left_empty(folder: Path) -> Iterator[None]:
    """On failure, remove ``folder`` and the parents this run created for it, if they are still empty: a run
    that never started leaves no run folder behind. Folders that existed before are never touched."""
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):  # not empty (the run wrote something), or already gone
                path.rmdir()
        raise


def _summary(result: Any) -> Table:
    """One table a person reads at the end of a long run."""
    table = Table(title="apn train: summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    best = next((h for h in result.history if h.get("epoch") == result.best_epoch), None)
    val = (best or {}).get("val") or {}
    cal = result.calibration
    rows = [
        ("model", str(result.model_path)),
        ("epochs / steps", f"{result.epochs_done} / {result.global_step}"),
        ("best epoch", str(result.best_epoch) if result.best_epoch else "-"),
        ("validation AUC / acc@0.5", _fmt(val.get("auc")) + " / " + _fmt(val.get("acc"))),
        ("threshold", _fmt(cal.threshold) if cal else "0.5 (not calibrated)"),
        ("inconclusive band", _band(cal)),
        (
            "calibration FPR / TPR",
            f"{_fmt(cal.achieved_fpr)} / {_fmt(cal.tpr)} (n={cal.n_real}+{cal.n_fake})" if cal else "-",
        ),
        ("unreadable files skipped", str(len(result.skipped))),
        *(("[bold yellow]warning[/]", warning) for warning in (cal.warnings if cal else ())),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _band(cal: Any) -> str:
    if cal is None:
        return "-"
    low, high = cal.inconclusive_band
    return f"[{_fmt(low)}, {_fmt(high)}]" if low < high else "none (empty: no 'inconclusive' verdicts)"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"
