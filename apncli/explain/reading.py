"""The explanation in plain words, for a reader who is not a specialist.

Every sentence is computed from the same numbers the maps show: where the score sits against the
decision rule (and what score would change the verdict), how the tiles agree, whether any frequency
band stands out in the network's weights, and how far removing a band moves the score. What carries no
information is said once ("no single band stands out") instead of being drawn as if it did.
"""

from __future__ import annotations

from collections import Counter

from apncli.engine.verdicts import AI_GENERATED, INCONCLUSIVE, REAL
from apncli.explain.explanation import Band, Explanation

#: A score this close to a decision edge could flip with small changes (re-encoding, cropping).
NARROW_MARGIN = 0.02
WIDE_MARGIN = 0.10
#: Weights whose largest is within this factor of the smallest are "nearly equal".
EVEN_WEIGHTS = 1.2
#: A band whose removal moves p(AI) by less than this carries little evidence on its own.
SMALL_DELTA = 0.05
#: The order verdicts are counted in when tiles disagree.
VERDICTS = (REAL, INCONCLUSIVE, AI_GENERATED)
CHANGE = "What would change it:"


def tile_role(e: Explanation) -> str:
    """Why this tile is the one shown: it is the one that pushed toward the verdict."""
    if len(e.tiles) == 1:
        return "the only crop"
    return {AI_GENERATED: "the most AI-like tile", REAL: "the most real-looking tile",
            INCONCLUSIVE: "the tile closest to the image's score"}.get(e.verdict, "the analysed tile")


def bands_stand_out(e: Explanation) -> bool:
    """Whether the weights or the occlusion single out a band (otherwise a band table says nothing)."""
    return _uneven(e.bands) or bool(notable_bands(e))


def notable_bands(e: Explanation) -> list[Band]:
    """Bands whose removal moves the crop's p(AI) by SMALL_DELTA or more (none without occlusion).

    The reading names the strongest of them, so any view listing a subset of bands must list these.
    """
    return [b for b in e.bands if b.occlusion_delta is not None and abs(b.occlusion_delta) >= SMALL_DELTA]


def plain_reading(e: Explanation) -> list[str]:
    """A few sentences: what the score means, how sure, what would change it, tiles, bands."""
    lines = [_rule(e), _margin(e), _change(e)]
    if len(e.tiles) > 1:
        lines.append(_tiles(e))
    lines.append(_weights(e))
    if e.occlusion is not None:
        lines.append(_occlusion(e))
    return lines


def _edges(e: Explanation) -> tuple[float, float] | None:
    band = e.inconclusive_band
    return (band[0], band[1]) if band and band[0] < band[1] else None


def _rule(e: Explanation) -> str:
    """The rule as ``Detector.verdict`` applies it to a score.

    A checkpoint's threshold lies inside its inconclusive band (engine.checkpoint checks it), so with a
    non-empty band the threshold never decides: the band, edges included, reads inconclusive and only
    scores past its edges read real or ai-generated. With an empty band the threshold is the one edge.
    """
    edges = _edges(e)
    if edges is None:
        rule = f"real below {e.threshold:.3f}, ai-generated from {e.threshold:.3f} up"
    else:
        low, high = edges
        rule = (f"real below {low:.3f}, inconclusive from {low:.3f} to {high:.3f} (both included), "
                f"ai-generated above {high:.3f}")
    return (f"p(AI) = {e.p_ai:.3f} is the model's score (0 = real, 1 = AI-generated), not a probability of "
            f"being right. This model reads it as {rule}.")


def _margin(e: Explanation) -> str:
    edges = _edges(e) or (e.threshold, e.threshold)
    if e.low_signal:
        return f"How sure: no verdict at all: {e.low_signal}; the score is not used."
    if e.verdict == INCONCLUSIVE:
        return ("How sure: not at all. The score is inside the band where the calibration images could not "
                "settle the verdict.")
    margin = e.p_ai - edges[1] if e.verdict == AI_GENERATED else edges[0] - e.p_ai
    if margin < NARROW_MARGIN:
        word = "barely: small changes such as re-encoding or cropping could flip it"
    elif margin < WIDE_MARGIN:
        word = "moderately"
    else:
        word = "clearly, as far as this model can tell"
    return f"How sure: {e.verdict}, {margin:.3f} past the nearest decision edge: {word}."


def _change(e: Explanation) -> str:
    if e.low_signal:
        return (f"{CHANGE} no score would: only an image with more texture, at least the size of the model's "
                "crop, can get a verdict.")
    edges = _edges(e)
    if edges is None:
        other = REAL if e.verdict == AI_GENERATED else AI_GENERATED
        side = "below" if e.verdict == AI_GENERATED else "at or above"
        return f"{CHANGE} a score {side} {e.threshold:.3f} would read {other}."
    low, high = edges
    if e.verdict == AI_GENERATED:
        return f"{CHANGE} a score of {high:.3f} or less would read inconclusive, below {low:.3f} real."
    if e.verdict == REAL:
        return f"{CHANGE} a score of {low:.3f} or more would read inconclusive, above {high:.3f} " \
               "ai-generated."
    return f"{CHANGE} a score below {low:.3f} would read real, above {high:.3f} ai-generated."


def _tiles(e: Explanation) -> str:
    """Tiles agree only when each tile's score alone would get the same verdict; else count per verdict."""
    scores = [t.p_ai for t in e.tiles]
    low, high = min(scores), max(scores)
    counts = Counter(t.verdict for t in e.tiles)
    if len(counts) == 1:
        agree = f"They agree: each tile alone would read {e.tiles[0].verdict}."
    else:
        split = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        agree = f"They do not agree: tile by tile the verdicts would be {split}."
    return (f"The image was scored as {len(scores)} tiles ({low:.3f} to {high:.3f}; the image score is their "
            f"mean). {agree} Shown: tile {e.tile_index + 1}, {tile_role(e)} (p(AI) {e.p_crop:.3f}).")


def _uneven(bands: list[Band]) -> bool:
    weights = [b.weight for b in bands]
    return bool(weights) and min(weights) > 0 and max(weights) / min(weights) >= EVEN_WEIGHTS


def _weights(e: Explanation) -> str:
    intro = (f"Bands are ranges of the image's frequency spectrum (coarse to fine detail), where generators "
             f"leave traces; the network weighs {len(e.bands)} of them.")
    weights = [b.weight for b in e.bands]
    if not _uneven(e.bands):
        spread = f"{min(weights):.2f} to {max(weights):.2f}"
        return f"{intro} Its weights are nearly equal ({spread}): none stands out."
    top = max(e.bands, key=lambda b: b.weight)
    return f"{intro} Band {top.index} weighs most ({top.share:.0%} of the total)."


def _occlusion(e: Explanation) -> str:
    """The band whose removal moves p(AI) most, signed as everywhere else: dp = p(crop) - p(without band)."""
    moved = notable_bands(e)
    if not moved:
        largest = max((abs(b.occlusion_delta or 0.0) for b in e.bands), default=0.0)
        return (f"Removing any one band moves the crop's p(AI) by at most {largest:.3f}: the evidence is "
                "spread over the spectrum, not in one band.")
    strongest = max(moved, key=lambda b: abs(b.occlusion_delta or 0.0))
    delta = strongest.occlusion_delta or 0.0
    change, towards = ("lowers", "AI-generated") if delta > 0 else ("raises", "real")
    return (f"Removing band {strongest.index} {change} the crop's p(AI) by {abs(delta):.3f} (from "
            f"{e.p_crop:.3f} to {e.p_crop - delta:.3f}, dp = {delta:+.3f}): its content pushes the score "
            f"toward {towards}.")


__all__ = ["bands_stand_out", "notable_bands", "plain_reading", "tile_role"]
