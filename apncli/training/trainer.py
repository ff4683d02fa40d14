"""``apn train``: the APN training loop (reference §4.3, §5.2), single-process or under torchrun/DDP.

One outer iteration = one detector step (Adam on the full objective of :mod:`losses`, the CLUB bound
flowing into the features) followed by ``club_steps`` estimator steps (the CLUB's own Adam, on detached
features of fresh batches, or of the same batch with ``club_data="reuse"``). Both learning rates follow a
LinearLR warm-up chained with a StepLR decay, stepped every iteration.

Outputs in ``--out``: ``state-last.apn-state`` (everything needed to resume exactly, rewritten
atomically after every epoch, every ``save_every`` steps and on interruption), ``best-weights.apn-state``
(weights only, of the best epoch by validation AUC), ``metrics.jsonl`` (step and epoch records),
``train.log``, the final self-describing ``model.safetensors`` (engine checkpoint format, threshold
calibrated on held-back files), which ``apn scan --weights`` loads unchanged, and with ``--fakes``
``fakes-cache/`` (each real photo's synthesised fake, made once per run instead of once per epoch).

Choices worth knowing:

- Resume is exact (bit for bit on the same machine and thread count): model, both optimisers and
  schedulers, CLUB, RNG states, epoch/step, the sampler position and the CLUB stream position are saved;
  stochastic layers are reseeded from (seed, rank, step) every step, and augmentation is seeded per sample.
- Under torchrun, BatchNorm is synchronised and the CLUB bound is taken over the gathered batch (see
  :mod:`distributed`), so N processes follow the single-process run of the same global batch. Only rank 0
  logs, validates, calibrates and writes files; step records hold rank 0's batch losses.
- ``club_data="fresh"`` runs the detector (no gradient, training mode) on the CLUB's own batches, as the
  reference does; those forwards also update BatchNorm running statistics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Adam
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, StepLR
from torch.utils.data import DataLoader
from tqdm import tqdm

from apncli import __version__
from apncli.data.augment import AugmentConfig
from apncli.data.layouts import Sample, default_train_on, training_samples
from apncli.engine.cache import MODEL_FILE
from apncli.engine.checkpoint import default_preprocessing, save_checkpoint
from apncli.engine.device import autocast_dtype
from apncli.errors import TEACHER_INSTALL, UsageError
from apncli.model import APN, CLUB, APNConfig, APNOutput, build_model, get_config
from apncli.training import distributed as ddp
from apncli.training.calibration import Calibration, calibrate
from apncli.training.dataset import Batch, ResumableSampler, TrainDataset, collate, split_holdout
from apncli.training.evaluation import score_samples
from apncli.training.losses import FEATURE_SPACES, MI_VARIABLES, LossWeights, detector_loss, mi_pairs
from apncli.training.metrics import detection_report
from apncli.training.state import load_state, save_state
from apncli.training.teacher import registered_teacher

__all__ = ["TrainConfig", "TrainResult", "lr_schedule", "train"]

STATE_FILE = "state-last.apn-state"
LEGACY_STATE_FILE = "state-last.safetensors"  # what apn 0.1.0 called it; such runs still resume
FAKES_CACHE = "fakes-cache"
# The reference schedule, shared by TrainConfig's defaults and lr_schedule's (the recipe's baseline uses it)
WARMUP_ITERS = 20
WARMUP_START = 1.0 / 3.0
LR_GAMMA = 0.1
# Training intermediates are safetensors inside but not named so: only the final model.safetensors loads
# into apn scan, and a user picking "the .safetensors file" of a run folder must find that one.
BEST_FILE = "best-weights.apn-state"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
_MAX_REPORTED_ERRORS = 1000


@dataclass
class TrainConfig:
    """Everything one training run depends on (the CLI fills it from flags)."""

    dataset: str
    data_root: Path
    out: Path
    train_on: str | None = None
    model: str = "lite"
    crop: int | None = None
    branches: str = "both"  # APNConfig.branches: an ablation trains one branch alone
    mask: str | None = None  # APNConfig.mask: None keeps the config's (the paper's hard masks)
    epochs: int = 10
    batch_size: int = 24
    lr: float = 1e-4
    base_lr: float = 1e-7
    club_lr: float = 1e-5
    club_steps: int = 3
    club_data: str = "fresh"
    club_hidden: int | None = None
    mi_variables: str = "fused"
    feature_space: str = "raw"  # losses.FEATURE_SPACES: where alignment and CLUB compare features
    warmup_iters: int = WARMUP_ITERS
    warmup_start: float = WARMUP_START
    step_size: int = 30000
    club_step_size: int = 20000
    gamma: float = LR_GAMMA
    seed: int = 0
    val_fraction: float = 0.1
    val_max: int = 5000
    target_fpr: float = 0.05
    workers: int = 2
    device: str | None = None
    amp: bool = False  # float16 autocast on CUDA only when asked: see engine.device.autocast_dtype
    max_steps: int | None = None
    save_every: int = 0
    log_every: int = 10
    fakes: tuple[str, ...] = ()
    teacher: str | None = None  # a registered teacher (``clip_b16``) or a features file
    pretrained: dict[str, str] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    resume: Path | None = None
    name: str | None = None
    command: str = ""
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, AugmentConfig | LossWeights):
                v = v.to_dict()
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d


@dataclass
class TrainResult:
    """What a finished run produced (rank 0; other ranks get ``model_path=None``)."""

    model_path: Path | None
    calibration: Calibration | None
    epochs_done: int
    global_step: int
    best_epoch: int | None
    history: list[dict[str, Any]]
    skipped: list[str]
    interrupted: bool = False


def train(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Run (or resume) a training run; under torchrun every process calls this."""
    ctx, device = ddp.init_distributed(cfg.device)
    try:
        return _Run(cfg, ctx, device, log).run()
    finally:
        ddp.shutdown(ctx)


# ------------------------------------------------------------------------------------------------ helpers


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _step_seed(seed: int, rank: int, step: int) -> int:
    """A per-(process, step) torch seed: stochastic layers never depend on how a run was resumed."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": np_state[1],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None so metadata passes the strict JSON the checkpoint format requires."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    step_size: int,
    gamma: float = LR_GAMMA,
    warmup_iters: int = WARMUP_ITERS,
    warmup_start: float = WARMUP_START,
) -> ChainedScheduler:
    """LinearLR warm-up (the reference: from 1/3 over 20 iterations) chained with StepLR, stepped every
    iteration. Public so a comparison model (the recipe's plain-CNN baseline) can follow the same schedule."""
    warm = LinearLR(optimizer, start_factor=warmup_start, total_iters=max(warmup_iters, 0))
    decay = StepLR(optimizer, step_size=max(step_size, 1), gamma=gamma)
    return ChainedScheduler([warm, decay])


def _unwrap(model: nn.Module) -> APN:
    return model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[return-value]


class _Stop:
    """SIGINT/SIGTERM set a flag; the loop saves its state at the next step boundary and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------------ the run


class _Run:
    def __init__(
        self, cfg: TrainConfig, ctx: ddp.DistContext, device: torch.device, log: Callable[[str], None] | None
    ) -> None:
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self._echo = log
        self.out = Path(cfg.out)
        self.history: list[dict[str, Any]] = []
        self.skipped: dict[str, None] = {}  # insertion-ordered set of "path: reason"
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.club_batches = 0
        self.epoch_loss = [0.0, 0]  # running sum and count of this epoch's step losses (resumable)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.earlier_seconds = 0.0  # training time of the sessions before a --resume
        self.session_start = time.monotonic()
        self._validate_cfg()

    # -- logging ----------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.ctx.is_main:
            return
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")
        if self._echo is not None:
            self._echo(message)

    def record(self, entry: dict[str, Any]) -> None:
        if self.ctx.is_main:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(_json_safe(entry)) + "\n")

    # -- setup ------------------------------------------------------------------------------------------
    def _validate_cfg(self) -> None:
        c = self.cfg
        if c.batch_size < 1 or c.batch_size % self.ctx.world_size:
            raise UsageError(
                f"--batch-size {c.batch_size} must be a positive multiple of the number of "
                f"processes ({self.ctx.world_size})"
            )
        if c.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if c.club_data not in ("fresh", "reuse"):
            raise UsageError(f"--club-data must be fresh or reuse, got {c.club_data!r}")
        if c.feature_space not in FEATURE_SPACES:
            raise UsageError(f"--feature-space must be one of {', '.join(FEATURE_SPACES)}")
        if c.mi_variables not in MI_VARIABLES:
            raise UsageError(f"--mi-variables must be one of {', '.join(MI_VARIABLES)}")
        if not 0 < c.target_fpr < 0.5:
            raise UsageError("--target-fpr must be in (0, 0.5)")
        if c.max_steps is not None and c.max_steps < 1:
            raise UsageError("--max-steps must be at least 1")

    def _model_config(self) -> APNConfig:
        try:
            config = get_config(self.cfg.model)
            return dataclasses.replace(config, crop=self.cfg.crop or config.crop, branches=self.cfg.branches,
                                       mask=self.cfg.mask or config.mask)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _fake_sources(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        sources = {}
        for spec in self.cfg.fakes:
            if not spec.startswith("reconstruct:"):
                raise UsageError(f"unknown --fakes source {spec!r}; supported: reconstruct:<autoencoder>")
            try:
                from apncli.data.reconstruct import DiskMemo, make_reconstruction_source
            except ImportError as exc:
                raise UsageError(
                    f"--fakes {spec} needs apncli.data.reconstruct, which is not available "
                    f"in this installation ({exc})"
                ) from None
            tag = spec.replace(":", "-")
            sources[spec] = DiskMemo(make_reconstruction_source(spec), self.out / FAKES_CACHE, tag)
        return sources

    def _setup(self) -> None:
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if c.resume is None and _state_in(self.out) is not None:
            raise UsageError(
                f"{self.out} already holds a training run; pass --resume {self.out} to continue "
                "it or choose another --out"
            )
        self.config = self._model_config()
        _seed_all(c.seed)
        samples = training_samples(c.dataset, Path(c.data_root), c.train_on)
        self.split = split_holdout(samples, c.val_fraction, c.seed)
        rng = np.random.default_rng([c.seed, 11])
        if len(self.split.val) > c.val_max:
            keep = sorted(rng.choice(len(self.split.val), c.val_max, replace=False))
            self.split.val = [self.split.val[i] for i in keep]
        sources = self._fake_sources()
        crop = self.config.crop
        self.dataset = TrainDataset(self.split.train, crop, c.augment, c.seed, sources, stream=0)
        self.club_dataset = TrainDataset(self.split.train, crop, c.augment, c.seed, sources, stream=1)
        self.per_rank_batch = c.batch_size // self.ctx.world_size
        if len(self.dataset) // self.ctx.world_size < self.per_rank_batch:
            raise UsageError(
                f"only {len(self.dataset)} training images: fewer than --batch-size {c.batch_size}"
            )
        world, rank = self.ctx.world_size, self.ctx.rank
        self.sampler = ResumableSampler(self.dataset, world, rank, c.seed)
        self.club_sampler = ResumableSampler(self.club_dataset, world, rank, c.seed + 1)
        self.steps_per_epoch = self.sampler.num_samples // self.per_rank_batch
        self._build_model()
        self._load_teacher()

    def _build_model(self) -> None:
        c = self.cfg
        torch.manual_seed(c.seed)
        model = build_model(self.config)
        self._load_pretrained(model)
        model.to(self.device)
        if self.ctx.enabled:
            model = ddp.convert_batchnorm(model, self.device)
        self.model = model
        self.net: nn.Module = model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
            # 1x1-conv gradients in channels_last have equivalent strides; DDP warns about them anyway.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.optimizer = Adam(
            [
                {"params": model.other_parameters(), "lr": c.lr, "name": "network"},
                {"params": model.base_parameters(), "lr": c.base_lr, "name": "decomposition_bases"},
            ]
        )
        self.scheduler = lr_schedule(self.optimizer, c.step_size, c.gamma, c.warmup_iters, c.warmup_start)
        pairs = 1 if c.mi_variables == "fused" else 2
        dim, hidden = self.config.feature_dim, c.club_hidden or self.config.feature_dim
        self.clubs = nn.ModuleList([CLUB(dim, dim, hidden) for _ in range(pairs)]).to(self.device)
        self.club_optimizer = Adam(self.clubs.parameters(), lr=c.club_lr)
        self.club_scheduler = lr_schedule(
            self.club_optimizer, c.club_step_size, c.gamma, c.warmup_iters, c.warmup_start
        )
        self.amp_dtype = autocast_dtype(self.device) if (c.amp and self.device.type == "cuda") else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _load_pretrained(self, model: APN) -> None:
        """ImageNet trunks for the ``paper`` config (``--pretrained convnext_base=PATH,resnet18=PATH``)."""
        from apncli.engine.cache import resolve_weights
        from apncli.engine.checkpoint import load_torch_weights_only
        from apncli.model import load_backbone_weights

        for name, where in self.cfg.pretrained.items():
            path = resolve_weights(where)
            try:
                n = load_backbone_weights(model, name, load_torch_weights_only(path))
            except ValueError as exc:
                raise UsageError(f"--pretrained {name}={where}: {exc}") from None
            self.log(f"initialised {name} from {path} ({n} tensors)")
        if self.config.spatial_backbone == "convnext_base" and not self.cfg.pretrained:
            self.log(
                "note: training the paper config from scratch; the paper starts ConvNeXt-B and the "
                "semantic ResNet-18 from ImageNet weights (--pretrained)"
            )

    def _load_teacher(self) -> None:
        """Semantic-teacher features for L_se2/L_se3 (a registered image tower or a features file)."""
        self.teacher: torch.Tensor | None = None
        self.teacher_rows: torch.Tensor | None = None
        if self.cfg.teacher is None:
            self._warn_no_teacher()
            return
        from apncli.training.teacher import load_teacher

        feats, rows = load_teacher(
            self._teacher_file(self.cfg.teacher),
            [it.sample for it in self.dataset.items],
            Path(self.cfg.data_root),
            self.config.feature_dim,
        )
        self.teacher, self.teacher_rows = feats.to(self.device), rows
        covered = int((rows >= 0).sum())
        self.log(f"semantic teacher: {self.cfg.teacher} covers {covered}/{len(rows)} training images")

    def _warn_no_teacher(self) -> None:
        """Without a teacher nothing anchors the artifact-irrelevant features: say so loudly."""
        self.log("semantic teacher: none, so L_se2 and L_se3 are off (pass --teacher clip_b16)")
        if self.cfg.loss_weights.se1 > 0:
            self.log(
                "WARNING: implicit purification is degenerate without a semantic teacher: L_se1 only asks "
                "the two branches' artifact-irrelevant features to agree, which a constant satisfies, so "
                "they can collapse and purify nothing. Pass --teacher clip_b16 "
                f"({TEACHER_INSTALL})."
            )

    def _teacher_file(self, teacher: str) -> Path:
        """A features file as given, or a registered tower's features, computed once into the run folder."""
        if registered_teacher(teacher) is None:
            return Path(teacher)
        from apncli.engine.cache import resolve_weights
        from apncli.model.clip import ClipImageTower
        from apncli.training.teacher import write_teacher_features

        path = self.out / f"teacher-{teacher}.apn-teacher"  # safetensors inside; not a detector
        if self.ctx.is_main:
            tower = ClipImageTower(resolve_weights(teacher), threads=torch.get_num_threads())
            paths = [s.path for s in self.split.train]
            write_teacher_features(tower, paths, path, teacher, self.log)
        self.ctx.barrier()
        return path

    # -- resume -----------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "club": self.clubs.state_dict(),
            "club_optimizer": self.club_optimizer.state_dict(),
            "club_scheduler": self.club_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "progress": {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "club_batches": self.club_batches,
                "epoch_loss": self.epoch_loss,
            },
            "best": {"metric": self.best_metric, "epoch": self.best_epoch},
            "seconds": self._seconds(),
            "history": self.history,
            "skipped": list(self.skipped)[-_MAX_REPORTED_ERRORS:],
            "run": self.cfg.to_dict(),
            "model_config": self.config.to_dict(),
        }

    def _save_state(self) -> None:
        if self.ctx.is_main:
            save_state(self.out / STATE_FILE, self._state())
        self.ctx.barrier()

    def _load_training_state(self, state: dict[str, Any]) -> None:
        """Every stateful part of the run, as ``_save_state`` wrote it."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.clubs.load_state_dict(state["club"])
        self.club_optimizer.load_state_dict(state["club_optimizer"])
        self.club_scheduler.load_state_dict(state["club_scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])

    def _resume(self) -> None:
        where = Path(self.cfg.resume)  # type: ignore[arg-type]
        path = _state_in(where) if where.is_dir() else where
        if path is None or not path.is_file():
            raise UsageError(f"--resume {where}: no {STATE_FILE} there")
        state = load_state(path)
        if state.get("model_config") != self.config.to_dict():
            raise UsageError(f"--resume {where}: the saved run used a different model config")
        saved = state.get("run", {})
        for key in ("dataset", "train_on", "batch_size", "seed", "val_fraction", "club_data", "mi_variables",
                    "feature_space"):
            if str(saved.get(key)) != str(getattr(self.cfg, key)):
                self.log(
                    f"warning: resuming with {key}={getattr(self.cfg, key)!r}, "
                    f"the run used {saved.get(key)!r}"
                )
        try:
            self._load_training_state(state)
        except (KeyError, ValueError, RuntimeError) as exc:  # e.g. a state written by another apn version
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"--resume {where}: the saved state does not fit this version of apn ({first})"
            ) from None
        p = state["progress"]
        self.epoch, self.step_in_epoch = int(p["epoch"]), int(p["step_in_epoch"])
        self.global_step, self.club_batches = int(p["global_step"]), int(p["club_batches"])
        self.epoch_loss = [float(p["epoch_loss"][0]), int(p["epoch_loss"][1])]
        self.best_metric, self.best_epoch = state["best"]["metric"], state["best"]["epoch"]
        self.earlier_seconds = float(state.get("seconds", 0.0))
        self.history, self.skipped = list(state["history"]), dict.fromkeys(state["skipped"])
        self._trim_metrics_log()
        self.log(
            f"resumed from {path} at epoch {self.epoch + 1}, step {self.step_in_epoch} "
            f"(global step {self.global_step})"
        )

    def _trim_metrics_log(self) -> None:
        """Drop records written after the resumed state, so the log reads like one uninterrupted run."""
        path = self.out / METRICS_FILE
        if not self.ctx.is_main or not path.exists():
            return
        keep = [
            ln
            for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("global_step", 0) <= self.global_step
        ]
        path.write_text("".join(f"{ln}\n" for ln in keep), encoding="utf-8")

    # -- data -------------------------------------------------------------------------------------------
    def _loader(self, dataset: TrainDataset, sampler: ResumableSampler) -> DataLoader:
        workers = max(0, self.cfg.workers)
        return DataLoader(
            dataset,
            batch_size=self.per_rank_batch,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if workers else None,
        )

    def _club_batches(self) -> Iterator[Batch]:
        """An endless stream of CLUB batches whose position is derived from ``club_batches`` (resumable)."""
        per_epoch = max(self.club_sampler.num_samples // self.per_rank_batch, 1)
        while True:
            epoch, offset = divmod(self.club_batches, per_epoch)
            self.club_dataset.set_epoch(epoch)
            self.club_sampler.set_epoch(epoch)
            self.club_sampler.set_start(offset * self.per_rank_batch)
            for batch in self._loader(self.club_dataset, self.club_sampler):
                self.club_batches += 1
                yield batch

    # -- steps ------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _mi_pairs(self, out: APNOutput) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return mi_pairs(out, self.cfg.mi_variables, self.cfg.feature_space)

    def _mi_bound(self, out: APNOutput) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        for club, (x, y) in zip(self.clubs, self._mi_pairs(out), strict=True):
            x, y = ddp.gather_with_grad(x.float()), ddp.gather_with_grad(y.float())
            total = total + club.mi_upper_bound(x, y)
        return total

    def _teacher_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.teacher is None or self.teacher_rows is None:
            return None, None
        rows = self.teacher_rows[indices]
        mask = rows >= 0
        return self.teacher[rows.clamp(min=0).to(self.device)], mask.to(self.device)

    def _detector_step(self, batch: Batch) -> tuple[dict[str, float], APNOutput]:
        model = _unwrap(self.net)
        x = batch.images.to(self.device, non_blocking=True)
        y = batch.labels.to(self.device, non_blocking=True)
        teacher, mask = self._teacher_batch(batch.indices)
        self.clubs.requires_grad_(False)
        self.clubs.eval()
        with self._autocast():
            out = self.net(x)
        use_mi = self.cfg.loss_weights.mi > 0
        bases = (model.spatial_bases.semantic_base, model.spatial_bases.generative_base)
        loss, terms = detector_loss(
            out, y, self.cfg.loss_weights, bases, self._mi_bound if use_mi else None, teacher, mask,
            self.cfg.feature_space,
        )
        if self.ctx.enabled:
            loss = loss + _ddp_anchor(out)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["loss"] = float(loss.detach())
        with torch.no_grad():
            values["train_acc"] = float((out.logits.argmax(1) == y).float().mean())
        return values, out

    def _club_step(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        self.clubs.requires_grad_(True)
        self.clubs.train()
        loss = torch.stack(
            [club.learning_loss(x.float(), y.float()) for club, (x, y) in zip(self.clubs, pairs, strict=True)]
        ).sum()
        self.club_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ddp.all_reduce_grads(list(self.clubs.parameters()))
        self.club_optimizer.step()
        self.club_scheduler.step()
        return float(loss.detach())

    def _club_phase(self, out: APNOutput, club_stream: Iterator[Batch] | None) -> float:
        """``club_steps`` estimator updates on detached features (fresh batches or the detector's batch)."""
        if self.cfg.loss_weights.mi <= 0 or self.cfg.club_steps <= 0:
            return float("nan")
        losses = []
        for _ in range(self.cfg.club_steps):
            if club_stream is None:
                feats = out
            else:
                batch = next(club_stream)
                self._note_errors(batch.errors)
                with torch.no_grad(), self._autocast():
                    feats = _unwrap(self.net)(batch.images.to(self.device, non_blocking=True))
            pairs = [(x.detach(), y.detach()) for x, y in self._mi_pairs(feats)]
            losses.append(self._club_step(pairs))
        return float(np.mean(losses))

    def _note_errors(self, errors: list[str]) -> None:
        for e in errors:
            if e not in self.skipped:
                self.skipped[e] = None
                self.log(f"skipped unreadable file: {e}")

    # -- validation / calibration -------------------------------------------------------------------------
    def _metadata(self, threshold: float = 0.5, band: tuple[float, float] = (0.5, 0.5)) -> dict[str, Any]:
        name = (
            self.cfg.name
            or f"apn-{self.config.name}-{self.cfg.dataset}-"
            f"{self.cfg.train_on or default_train_on(self.cfg.dataset)}"
        )
        return {
            "format_version": 1,
            "name": name.replace(",", "+")[:200],
            "config": self.config.to_dict(),
            "preprocessing": default_preprocessing(self.config),
            "threshold": float(threshold),
            "inconclusive_band": [float(band[0]), float(band[1])],
        }

    def _score(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """p(AI) of each file exactly as ``apn scan`` would compute it (the detector's crops and tiling)."""
        from apncli.engine.detector import Detector

        copy_model = build_model(self.config)
        copy_model.load_state_dict(self.model.state_dict())
        detector = Detector.from_model(copy_model, self._metadata(), device=str(self.device))
        scored = score_samples(
            lambda imgs: detector.predict(imgs, batch_size=self.per_rank_batch * 2),
            samples,
            workers=max(1, self.cfg.workers),
        )
        return scored.labels, scored.scores, scored.errors

    def _validate(self) -> dict[str, Any] | None:
        if not self.split.val or not self.ctx.is_main:
            return None
        labels, scores, errors = self._score(self.split.val)
        self._note_errors(errors)
        if labels.size == 0:
            return None
        return detection_report(labels, scores, 0.5)

    def _is_better(self, report: dict[str, Any] | None) -> bool:
        if report is None:
            return True  # no validation split: the latest epoch is the one we keep
        metric = report["auc"] if not math.isnan(report["auc"]) else report["acc"]
        if self.best_metric is None or metric > self.best_metric:
            self.best_metric = metric
            return True
        return False

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        tmp = self.out / f".{BEST_FILE}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        tmp.replace(self.out / BEST_FILE)

    # -- main loop --------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self._setup()
        if self.cfg.resume is not None:
            self._resume()
        else:
            target = self.cfg.train_on or default_train_on(self.cfg.dataset)
            self.log(
                f"training {self.config.name} on {self.cfg.dataset}:{target} "
                f"({len(self.split.train)} files, {len(self.dataset)} items; val {len(self.split.val)}, "
                f"calibration {len(self.split.calib)}) on {self.device} x{self.ctx.world_size}"
            )
        self.session_start = time.monotonic()
        interrupted = stopped = False
        with _Stop() as stop:
            while self.epoch < self.cfg.epochs and not stopped:
                stopped, interrupted = self._run_epoch(stop)
        result = self._finish(interrupted, self._seconds())
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _run_epoch(self, stop: _Stop) -> tuple[bool, bool]:
        """Train one epoch (or what is left of it); returns (stopped early, interrupted)."""
        c = self.cfg
        epoch_start = time.monotonic()
        self.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.step_in_epoch * self.per_rank_batch)
        club_stream = self._club_batches() if c.club_data == "fresh" else None
        self.net.train()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{c.epochs}",
            disable=not (self.ctx.is_main and c.progress and sys.stderr.isatty()),
            leave=False,
            dynamic_ncols=True,
        )
        stopped = interrupted = False
        tick = time.monotonic()
        for batch in self._loader(self.dataset, self.sampler):
            self._note_errors(batch.errors)
            torch.manual_seed(_step_seed(c.seed, self.ctx.rank, self.global_step))
            values, out = self._detector_step(batch)
            values["club_loss"] = self._club_phase(out, club_stream)
            self.global_step += 1
            self.step_in_epoch += 1
            self.epoch_loss = [self.epoch_loss[0] + values["loss"], self.epoch_loss[1] + 1]
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if self.global_step % max(c.log_every, 1) == 0 or self.global_step == 1:
                now = time.monotonic()
                rate = c.batch_size * max(c.log_every, 1) / max(now - tick, 1e-9)
                self.record(
                    {
                        "type": "step",
                        "epoch": self.epoch + 1,
                        "step": self.step_in_epoch,
                        "global_step": self.global_step,
                        "lr": self.scheduler.get_last_lr()[0],
                        "images_per_s": rate,
                        **values,
                    }
                )
                tick = now
            if not math.isfinite(values["loss"]):
                raise RuntimeError(f"loss became {values['loss']} at step {self.global_step}; lower --lr")
            if c.save_every and self.global_step % c.save_every == 0:
                self._save_state()
            if self._any(stop.requested):
                stopped = interrupted = True
                break
            if c.max_steps is not None and self.global_step >= c.max_steps:
                stopped = True
                break
        bar.close()
        if club_stream is not None:
            club_stream.close()
        if stopped and self.step_in_epoch < self.steps_per_epoch:
            self._save_state()  # mid-epoch stop: resume continues from this exact batch
            self._record_partial(interrupted)
            return stopped, interrupted
        self._end_epoch(epoch_start)
        return stopped, interrupted

    def _any(self, flag: bool) -> bool:
        """True on every process if it is true on one (so all stop at the same step, never deadlock)."""
        if not self.ctx.enabled:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def _gather_skipped(self) -> None:
        """Rank 0 learns about files the other processes could not read, for the log and the summary."""
        if not self.ctx.enabled:
            return
        everyone: list[Any] = [None] * self.ctx.world_size
        torch.distributed.all_gather_object(everyone, list(self.skipped))
        if self.ctx.is_main:
            for errors in everyone[1:]:
                self._note_errors(errors or [])

    def _record_partial(self, interrupted: bool) -> None:
        why = "interrupted" if interrupted else f"--max-steps {self.cfg.max_steps} reached"
        self.log(
            f"{why} at epoch {self.epoch + 1}, step {self.step_in_epoch}; state saved "
            f"(continue with --resume {self.out})"
        )
        if self.best_epoch is None and not interrupted and self.ctx.is_main:
            self._save_best()  # no finished epoch yet: the current weights are all there is

    def _seconds(self) -> float:
        """Training time of the whole run, summed over interrupted and resumed sessions."""
        return self.earlier_seconds + time.monotonic() - self.session_start

    def _end_epoch(self, started: float) -> None:
        self._gather_skipped()
        report = self._validate()
        better = self._is_better(report) if self.ctx.is_main else False
        if better:
            self.best_epoch = self.epoch + 1
            self._save_best()
        entry = {
            "type": "epoch",
            "epoch": self.epoch + 1,
            "global_step": self.global_step,
            "train_loss": self.epoch_loss[0] / max(self.epoch_loss[1], 1),
            "val": report,
            "best": better,
            "skipped_files": len(self.skipped),
            "seconds": time.monotonic() - started,
        }
        self.history.append(_json_safe(entry))
        self.record(entry)
        val = f"val AUC {report['auc']:.4f} acc {report['acc']:.4f}" if report else "no validation split"
        self.log(
            f"epoch {self.epoch + 1}/{self.cfg.epochs}: loss {entry['train_loss']:.4f}, {val}"
            + (" (best)" if better else "")
        )
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_loss = [0.0, 0]
        self._save_state()

    def _finish(self, interrupted: bool, seconds: float) -> TrainResult:
        result = TrainResult(
            None,
            None,
            self.epoch,
            self.global_step,
            self.best_epoch,
            self.history,
            list(self.skipped),
            interrupted,
        )
        if interrupted or not self.ctx.is_main:
            self.ctx.barrier()
            return result
        from safetensors.torch import load_file

        best = self.out / BEST_FILE
        if best.exists():
            self.model.load_state_dict(load_file(str(best)))
        calibration_set = self.split.calib or self.split.val
        labels, scores, errors = (
            self._score(calibration_set) if calibration_set else (np.zeros(0, np.int64), np.zeros(0), [])
        )
        self._note_errors(errors)
        try:
            cal = calibrate(labels, scores, self.cfg.target_fpr) if (labels == 0).any() else None
        except ValueError as exc:  # saturated held-back reals: no threshold meets the target
            raise UsageError(f"cannot calibrate the decision threshold: {exc}; use a larger --target-fpr "
                             f"(the trained weights are in {self.out / BEST_FILE})") from None
        if cal is None:
            self.log("warning: no held-back real images (--val-fraction 0?): threshold left at 0.5")
        for warning in cal.warnings if cal is not None else ():
            self.log(f"warning: {warning}")
        result.calibration = cal
        result.model_path = self._write_model(cal, labels, scores, seconds)
        self.ctx.barrier()
        return result

    def _teacher_description(self) -> dict[str, str] | None:
        """What stood in for the paper's BLIP features (checkpoint metadata), None without a teacher."""
        from apncli.training.teacher import TEACHER_SUBSTITUTION

        if self.cfg.teacher is None:
            return None
        entry = registered_teacher(self.cfg.teacher)
        if entry is not None:
            return {"name": entry.name, "model": entry.description, "note": TEACHER_SUBSTITUTION}
        return {"name": Path(self.cfg.teacher).name, "model": "precomputed features file",
                "note": "user-supplied features in place of the paper's BLIP image embedding"}

    def _write_model(
        self, cal: Calibration | None, labels: np.ndarray, scores: np.ndarray, seconds: float
    ) -> Path:
        threshold, band = (cal.threshold, cal.inconclusive_band) if cal else (0.5, (0.5, 0.5))
        meta = self._metadata(threshold, band)
        best_val = next((h["val"] for h in self.history if h["epoch"] == self.best_epoch), None)
        meta["training"] = _json_safe(
            {
                "command": self.cfg.command,
                "dataset": self.cfg.dataset,
                "data_root": str(self.cfg.data_root),
                "train_on": self.cfg.train_on or default_train_on(self.cfg.dataset),
                "epochs": self.epoch,
                "steps": self.global_step,
                "best_epoch": self.best_epoch,
                "seed": self.cfg.seed,
                "processes": self.ctx.world_size,
                "files": {
                    "train": len(self.split.train),
                    "val": len(self.split.val),
                    "calibration": len(self.split.calib),
                },
                "skipped_files": len(self.skipped),
                "semantic_teacher": self._teacher_description(),
                "seconds": seconds,
                "hyperparameters": {
                    k: v
                    for k, v in self.cfg.to_dict().items()
                    if k not in ("command", "data_root", "out", "resume", "progress")
                },
            }
        )
        metrics: dict[str, Any] = {"validation": best_val}
        if cal is not None:
            metrics["calibration"] = cal.to_dict()
            metrics["calibration"]["report"] = detection_report(labels, scores, cal.threshold)
        meta["metrics"] = _json_safe(metrics)
        meta["provenance"] = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "apn_version": __version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "trained_by": "apn train",
        }
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        path = save_checkpoint(self.out / MODEL_FILE, state, meta)
        self.log(f"wrote {path}")
        return path


def _state_in(folder: Path) -> Path | None:
    """A run folder's resumable state, under this version's name or apn 0.1.0's; None if it has none."""
    for name in (STATE_FILE, LEGACY_STATE_FILE):
        if (folder / name).is_file():
            return folder / name
    return None


def _ddp_anchor(out: APNOutput) -> torch.Tensor:
    """0 × every output tensor: DDP then sees a gradient (zero) for outputs no loss term uses.

    The proposers' score heads are computed but unused by design (reference §8.3), and a zero loss
    weight can leave a branch out of the loss; DDP would otherwise wait forever for those gradients.
    """
    tensors: list[torch.Tensor] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.requires_grad:
                tensors.append(obj.float().sum())
        elif dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                collect(getattr(obj, f.name))

    collect(out)
    return torch.stack(tensors).sum() * 0.0 if tensors else torch.zeros(())


def _worker_init(worker_id: int) -> None:
    """Loader workers use one thread and ignore Ctrl-C: the main process stops at a step boundary and
    saves its state, which needs the workers alive until then."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
