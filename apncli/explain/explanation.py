"""What ``apn explain`` shows, computed from one detector run (plus the occlusion reruns) of one image.

Every number here comes from what the network itself computed on the tile that pushed toward the
verdict: its band proposals and masks, its proposal weights, its artifact-related images. Nothing is a
separate heuristic, so the picture cannot disagree with the score it explains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from apncli.errors import UsageError
from apncli.explain import spectra
from apncli.explain.occlusion import occluded_probabilities
from apncli.model import BandProposal

if TYPE_CHECKING:
    from apncli.engine.detector import Analysis, Detector

SCHEMA = "apn.explain/1"
CHANNELS = ("B", "G", "R")  # the network's input order
COMPONENTS = ("amplitude", "phase")
MAP_CELLS = 24
ARTIFACT_PERCENTILES = (1.0, 99.5)
OVERVIEW_MAX_SIDE = 768


@dataclass(frozen=True)
class AxisRange:
    """One stripe of one band in one colour channel: inclusive bins and what they are in cycles/pixel."""

    bins: tuple[int, int]
    cycles_per_pixel: tuple[spectra.Interval, ...]
    valid: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": list(self.bins),
            "cycles_per_pixel": [[round(lo, 6), round(hi, 6)] for lo, hi in self.cycles_per_pixel],
            "valid": self.valid,
        }


@dataclass(frozen=True)
class ChannelRanges:
    """A band's row stripe (vertical frequencies f_y) and column stripe (horizontal f_x) in one channel."""

    rows: AxisRange
    columns: AxisRange

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows.to_dict(), "columns": self.columns.to_dict()}


@dataclass(frozen=True)
class Band:
    """Proposal k: its attention weight, where it sits per component and channel, and its occlusion Δp."""

    index: int
    weight: float
    share: float
    amplitude: tuple[ChannelRanges, ...]
    phase: tuple[ChannelRanges, ...]
    occlusion_delta: float | None

    @property
    def valid(self) -> bool:
        """Every stripe passed the validity filter (an invalid one degenerates to the DC row/column)."""
        return all(r.rows.valid and r.columns.valid for r in (*self.amplitude, *self.phase))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "weight": self.weight,
            "share": self.share,
            "valid": self.valid,
            "occlusion_delta": self.occlusion_delta,
            "amplitude": {c: r.to_dict() for c, r in zip(CHANNELS, self.amplitude, strict=True)},
            "phase": {c: r.to_dict() for c, r in zip(CHANNELS, self.phase, strict=True)},
        }


@dataclass(frozen=True)
class Tile:
    """One crop the detector scored: box (x, y, width, height) on the padded canvas, its p(AI), and the
    verdict the detector's rule gives that score on its own (image-level low signal aside)."""

    box: tuple[int, int, int, int]
    p_ai: float
    verdict: str


@dataclass
class Explanation:
    """Everything the figure, the terminal view and the JSON show for one image.

    Maps are numpy arrays on the network's unshifted half-plane ((3, H, W/2+1), B,G,R order); use
    :meth:`centred_band_map` / :meth:`centred_log_spectrum` for the centred full-plane view.
    """

    source: str | None
    image_size: tuple[int, int]  # width, height of the decoded image
    p_ai: float
    verdict: str
    threshold: float
    inconclusive_band: tuple[float, float] | None
    model: dict[str, Any]  # name, sha256, config
    tiles: list[Tile]
    tile_index: int
    padded: bool
    low_signal: str | None  # why the image is too poor for a verdict (then "inconclusive"), or None
    p_crop: float
    crop_rgb: np.ndarray
    overview_rgb: np.ndarray  # the padded canvas, shrunk to at most OVERVIEW_MAX_SIDE
    overview_scale: float  # overview pixels per canvas pixel
    bands: list[Band]
    band_maps: dict[str, np.ndarray]  # component → (3, H, W') Σ w_k M_k / Σ w_k
    log_spectrum: np.ndarray  # (H, W') log(1+|X|) of the crop, mean over channels
    artifact_map: np.ndarray  # (H, W) |x̄_art| mean over channels, stretched from artifact_range to [0, 1]
    artifact_range: tuple[float, float]  # |x̄_art| at its 1st and 99.5th percentiles
    mask_mode: str
    occlusion: np.ndarray | None  # (K,) p(AI) of the crop with band k removed
    figure: str | None = None  # set by whoever writes the figure (the CLI's --out)

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        return self.tiles[self.tile_index].box

    @property
    def crop_size(self) -> tuple[int, int]:
        """(H, W) of the analysed crop, which is also the spectrum's size."""
        return self.crop_rgb.shape[0], self.crop_rgb.shape[1]

    def centred_band_map(self, component: str) -> np.ndarray:
        """(H, W) centred full-plane band map of ``component``, averaged over colour channels."""
        return spectra.centred_full_plane(self.band_maps[component].mean(0), self.crop_size[1])

    def centred_log_spectrum(self) -> np.ndarray:
        """(H, W) centred full-plane log(1+|X|) of the analysed crop."""
        return spectra.centred_full_plane(self.log_spectrum, self.crop_size[1])

    def decision_rule(self) -> str:
        """The rule as the verdict applies it, in a few words: "inconclusive 0.583-0.677" (real below,
        ai-generated above: the threshold inside the band decides nothing), or "threshold 0.500" when the
        band is empty. Three decimals, as in the plain-language reading, so an edge is never misread."""
        band = self.inconclusive_band
        if band and band[0] < band[1]:
            return f"inconclusive {band[0]:.3f}-{band[1]:.3f}"
        return f"threshold {self.threshold:.3f}"

    def band_display_max(self) -> float:
        """Top of the colour scale shared by both band maps: their largest channel-mean share (≤ 1).

        A single bin rarely gets the whole weight, so a fixed 0..1 scale would paint everything dark.
        """
        top = max(float(self.centred_band_map(c).max()) for c in COMPONENTS)
        return top if top > 0 else 1.0

    def bands_by_weight(self) -> list[Band]:
        return sorted(self.bands, key=lambda b: -b.weight)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON document (docs/explain-schema.md); its key set is stable."""
        height, width = self.crop_size
        return {
            "schema": SCHEMA,
            "path": self.source,
            "image": {"width": self.image_size[0], "height": self.image_size[1]},
            "verdict": self.verdict,
            "low_signal": self.low_signal,
            "p_ai": self.p_ai,
            "threshold": self.threshold,
            "inconclusive_band": list(self.inconclusive_band) if self.inconclusive_band else None,
            "model": dict(self.model),
            "crop": {
                "box": list(self.crop_box),
                "tile_index": self.tile_index,
                "tile_count": len(self.tiles),
                "p_ai": self.p_crop,
                "padded": self.padded,
            },
            "tiles": [{"box": list(t.box), "p_ai": t.p_ai} for t in self.tiles],
            "spectrum": {
                "height": height,
                "width": width,
                "columns": width // 2 + 1,
                "channel_order": list(CHANNELS),
                "mask": self.mask_mode,
            },
            "bands": [band.to_dict() for band in self.bands],
            "occlusion": self._occlusion_dict(),
            "maps": self._maps_dict(),
            "figure": self.figure,
        }

    def _occlusion_dict(self) -> dict[str, Any]:
        without = None if self.occlusion is None else [float(p) for p in self.occlusion]
        return {
            "enabled": self.occlusion is not None,
            "p_crop": self.p_crop,
            "p_without": without,
            "deltas": None if without is None else [self.p_crop - p for p in without],
        }

    def _maps_dict(self) -> dict[str, Any]:
        def grid(image: np.ndarray) -> list[list[float]]:
            return np.round(spectra.cells(image, MAP_CELLS).astype(np.float64), 4).tolist()

        return {
            "cells": MAP_CELLS,
            "amplitude": grid(self.centred_band_map("amplitude")),
            "phase": grid(self.centred_band_map("phase")),
            "artifact": grid(self.artifact_map),
            "artifact_range": list(self.artifact_range),
        }


def explain_image(detector: Detector, rgb: np.ndarray, *, occlusion: bool = True,
                  source: str | None = None) -> Explanation:
    """Run the detector on an RGB uint8 image and collect what its network computed, for people to read.

    Large images are tiled by the detector; the explanation is of the tile that pushed toward the verdict
    (``Detector.analyse`` says which), and every tile's score is kept.
    ``occlusion`` adds K extra forward passes (one per band) for the Δp sanity check. Raises UsageError
    for a model without the frequency branch.
    """
    if detector.info.config.branches == "spatial":
        raise UsageError(f"model {detector.info.name!r} has no frequency branch (an ablation): "
                         "there are no bands to explain")
    analysis = detector.analyse(rgb)
    model, out = detector.model, analysis.output
    with torch.inference_mode():
        masks = {name: m[0] for name, m in model.band_masks(out).items()}  # (3, K, H, W')
        weights = out.band_weights[0].float()
        p_crop = float(torch.softmax(out.logits.float(), dim=-1)[0, 1])
        p_without = None
        if occlusion:
            p_without = occluded_probabilities(model, analysis.input_tensor, masks["amplitude"])
        band_maps = {name: spectra.weighted_band_map(m.float(), weights).cpu().numpy()
                     for name, m in masks.items()}
        artifact, artifact_range = _artifact_map(out.art_images, weights)
        log_spec = spectra.log_amplitude(analysis.input_tensor[0])
    occ = None if p_without is None else p_without.cpu().numpy().astype(np.float64)
    tiles, index = _tiles(detector, analysis)
    overview, overview_scale = _overview(detector, rgb)
    return Explanation(
        source=source,
        image_size=(int(rgb.shape[1]), int(rgb.shape[0])),
        p_ai=analysis.p_ai,
        verdict=detector.verdict(analysis.p_ai, signal=analysis.signal),
        threshold=detector.info.threshold,
        inconclusive_band=detector.info.inconclusive_band,
        model={"name": detector.info.name, "sha256": detector.info.sha256,
               "config": detector.info.config.name},
        tiles=tiles,
        tile_index=index,
        padded=rgb.shape[0] < detector.crop_size or rgb.shape[1] < detector.crop_size,
        low_signal=analysis.signal.low_signal,
        p_crop=p_crop,
        crop_rgb=np.ascontiguousarray(analysis.crop_rgb),
        overview_rgb=overview,
        overview_scale=overview_scale,
        bands=_bands(out.amplitude, out.phase, weights, p_crop, occ, analysis.input_tensor.shape[-2:]),
        band_maps=band_maps,
        log_spectrum=log_spec,
        artifact_map=artifact,
        artifact_range=artifact_range,
        mask_mode=model.config.mask,
        occlusion=occ,
    )


def _artifact_map(art_images: torch.Tensor | None,
                  weights: torch.Tensor) -> tuple[np.ndarray, tuple[float, float]]:
    """|Σ_k w_k x_k^art / Σ_k w_k|, mean over channels, stretched from its 1st to its 99.5th percentile.

    Most proposals include the DC row or column, so x̄_art carries the crop's mean brightness everywhere;
    dividing by the maximum alone would paint the map flat. The stretch shows where it is relatively
    strong, and the range (in pixel-intensity units, [0, 1] scale) says how much that is.
    """
    if art_images is None:
        raise ValueError("the analysis carries no artifact images (forward needs return_images=True)")
    total = float(weights.sum())
    mixed = torch.einsum("kchw,k->chw", art_images[0].float(), weights) / (total if total > 0 else 1.0)
    magnitude = mixed.abs().mean(0).cpu().numpy().astype(np.float64)
    low, high = (float(v) for v in np.percentile(magnitude, ARTIFACT_PERCENTILES))
    if high <= low:
        return np.zeros_like(magnitude), (low, high)
    return np.clip((magnitude - low) / (high - low), 0.0, 1.0), (low, high)


def _bands(amplitude: BandProposal, phase: BandProposal, weights: torch.Tensor, p_crop: float,
           p_without: np.ndarray | None, size: torch.Size) -> list[Band]:
    height, width = int(size[0]), int(size[1])
    ranges = {"amplitude": _ranges(amplitude, height, width), "phase": _ranges(phase, height, width)}
    total = float(weights.sum())
    bands = []
    for k, w in enumerate(weights.tolist()):
        bands.append(Band(
            index=k,
            weight=float(w),
            share=float(w) / total if total > 0 else 0.0,
            amplitude=tuple(ranges["amplitude"][c][k] for c in range(len(CHANNELS))),
            phase=tuple(ranges["phase"][c][k] for c in range(len(CHANNELS))),
            occlusion_delta=None if p_without is None else p_crop - float(p_without[k]),
        ))
    return bands


def _ranges(prop: BandProposal, height: int, width: int) -> list[list[ChannelRanges]]:
    """[channel][k] → ChannelRanges, from the filtered boundaries with the model's own floor/clamp."""
    columns = width // 2 + 1
    row_a, row_b = spectra.hard_bins(prop.starts_x[0], prop.ends_x[0], height)
    col_a, col_b = spectra.hard_bins(prop.starts_y[0], prop.ends_y[0], columns)
    valid_x, valid_y = prop.valid_x[0].tolist(), prop.valid_y[0].tolist()
    row_a, row_b, col_a, col_b = (t.tolist() for t in (row_a, row_b, col_a, col_b))
    out: list[list[ChannelRanges]] = []
    for c in range(len(CHANNELS)):
        per_band = []
        for k in range(len(row_a[c])):
            rows = AxisRange((row_a[c][k], row_b[c][k]),
                             tuple(spectra.row_intervals(row_a[c][k], row_b[c][k], height)),
                             bool(valid_x[c][k]))
            cols = AxisRange((col_a[c][k], col_b[c][k]),
                             (spectra.column_interval(col_a[c][k], col_b[c][k], width),),
                             bool(valid_y[c][k]))
            per_band.append(ChannelRanges(rows, cols))
        out.append(per_band)
    return out


def _tiles(detector: Detector, analysis: Analysis) -> tuple[list[Tile], int]:
    """Every scored crop with its p(AI) and the verdict of that score, and which of them was analysed."""
    plan = analysis.plan
    tiles = [Tile((x, y, plan.size, plan.size), float(p), detector.verdict(float(p)))
             for (y, x), p in zip(plan.positions, analysis.tile_probabilities, strict=True)]
    return tiles, analysis.tile_index


def _overview(detector: Detector, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The wrap-padded canvas the crops were cut from, shrunk for display, and its scale factor."""
    from apncli.data import crops as crop_ops

    canvas = crop_ops.pad_to(rgb, detector.crop_size)
    scale = min(1.0, OVERVIEW_MAX_SIDE / max(canvas.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(canvas.shape[1] * scale)), max(1, round(canvas.shape[0] * scale)))
        canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(canvas), scale


__all__ = ["CHANNELS", "SCHEMA", "AxisRange", "Band", "ChannelRanges", "Explanation", "Tile", "explain_image"]
