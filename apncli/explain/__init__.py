"""Explain a verdict from what the network itself computed: band maps, artifact image, weights, occlusion.

``explain_image`` runs the detector once on the tile that pushed toward the verdict (plus one rerun per
band for occlusion); ``render_figure`` draws the one-PNG figure, ``render_terminal`` the Rich view, and
``Explanation.to_dict`` the JSON documented in docs/explain-schema.md.
"""

from apncli.explain.explanation import SCHEMA, Band, Explanation, Tile, explain_image
from apncli.explain.figure import PANELS, FigureInfo, figure_name_for, render_figure
from apncli.explain.terminal import render_terminal

__all__ = [
    "PANELS",
    "SCHEMA",
    "Band",
    "Explanation",
    "FigureInfo",
    "Tile",
    "explain_image",
    "figure_name_for",
    "render_figure",
    "render_terminal",
]
