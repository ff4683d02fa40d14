"""``apn report``: one self-contained, offline HTML page from scan records.

The page needs no server and no network: styles and script are inlined (a Content-Security-Policy with
their hashes forbids anything else to run or load), and the records travel as JSON inside a
``<script type="application/json">`` block whose ``<``, ``>`` and ``&`` are written as JSON ``\\u`` escapes,
so no path or metadata value can end the block. The script builds every card with ``textContent`` and
``setAttribute`` only, never from markup, so a file name or EXIF field holding ``<script>`` shows as
text. It renders one page of cards at a time (sorting, verdict filters and a path search run on the
records in memory), which keeps a 10,000-record report quick to open.

Images are either embedded (``embed``, the default: JPEG thumbnails of at most ``THUMB_PX`` pixels and
the explanation figures as ``data:`` URIs, so the file can be mailed on its own), linked (``link``:
relative links to the scanned files and figures, for large runs kept next to their images) or left out
(``none``).
"""

from __future__ import annotations

import base64
import concurrent.futures as futures
import datetime as dt
import hashlib
import html
import io
import json
import os
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from apncli import __version__
from apncli.report.results import ScanResults, model_key

IMAGE_MODES = ("embed", "link", "none")
THUMB_PX = 160  # longest side of an embedded thumbnail
THUMB_QUALITY = 70
VERDICTS = ("ai-generated", "inconclusive", "real", "error")


def render_report(results: ScanResults, base: Path, images: str = "embed", workers: int = 4) -> str:
    """The whole page as text; ``base`` is the folder the page will live in (for ``link`` images)."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, not {images!r}")
    data = {"records": results.records, "images": _images(results.records, base, images, workers),
            "band": _band(results.manifests)}
    style, script = _asset("report.css"), _asset("report.js")
    parts = {"csp": _csp(style, script), "style": style, "summary": _summary(results),
             "data": _json_for_script(data), "script": script}
    # One pass over the template only, so a "{data}" inside a file name is never substituted.
    return re.sub(r"\{(csp|style|summary|data|script)\}", lambda match: parts[match[1]],
                  _asset("template.html"))


class HtmlReportWriter:
    """A scan record writer (``apn scan --html FILE``): keeps the records and, on close, renders the page
    for a file in ``base`` and hands the text to ``save`` (which decides how it is written)."""

    def __init__(self, save: Callable[[str], None], base: Path, manifest: dict[str, Any],
                 images: str = "embed") -> None:
        self.save, self.base, self.manifest, self.images = save, base, manifest, images
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.save(render_report(ScanResults(self.records, [self.manifest]), self.base, self.images))


def _asset(name: str) -> str:
    return resources.files("apncli.report").joinpath(name).read_text(encoding="utf-8")


def _csp(style: str, script: str) -> str:
    """Only our own inline style and script may apply; images only from data: URIs or local files."""
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"

    return (f"default-src 'none'; img-src data: file: 'self'; style-src {digest(style)}; "
            f"script-src {digest(script)}; base-uri 'none'; form-action 'none'")


def _json_for_script(value: Any) -> str:
    """JSON that cannot close its ``<script>`` block or open a comment: ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _band(manifests: list[dict[str, Any]]) -> list[float] | None:
    """The calibrated inconclusive band, marked on every p(AI) bar; none when a threshold was overridden."""
    for manifest in manifests:
        if manifest.get("threshold_override") is not None:
            return None
        band = (manifest.get("model") or {}).get("inconclusive_band")
        if isinstance(band, list) and len(band) == 2 and band[0] < band[1]:
            return band
    return None


def verdict_counts(records: list[dict[str, Any]]) -> Counter[str]:
    """Records per verdict; unreadable files count as ``error``."""
    return Counter(record.get("verdict") or "error" for record in records)


def _summary(results: ScanResults) -> str:
    """The page head, rendered here so it reads without JavaScript; every value escaped."""
    records = results.records
    counts = verdict_counts(records)
    models = {model_key(record): record.get("model") or {} for record in records}
    rows = [("images", str(len(records)))]
    for (sha256, threshold), model in models.items():
        rows.append(("model", f"{model.get('name', 'unknown')} (sha256 {sha256})"))
        rows.append(("threshold", _number(threshold)))
    band = _band(results.manifests)
    if band is not None:
        rows.append(("inconclusive band", f"{_number(band[0])} – {_number(band[1])} (shaded on the bars)"))
    created = sorted({m["created"] for m in results.manifests if isinstance(m.get("created"), str)})
    rows.append(("scanned", ", ".join(created) or "unknown (no manifest: JSONL input)"))
    rows.append(("report written", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                 + f" by apn {__version__}"))
    if results.sources:
        rows.append(("from", ", ".join(results.sources)))
    if results.skipped_lines:
        rows.append(("left out", f"{results.skipped_lines} torn line(s) of an interrupted run"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    chips = "".join(f'<span class="count v-{v}">{html.escape(v)}: <b>{counts.get(v, 0)}</b></span>'
                    for v in VERDICTS)
    manifests = "".join(f"<pre>{html.escape(json.dumps(m, indent=2, ensure_ascii=False))}</pre>"
                        for m in results.manifests)
    details = f"<details><summary>run manifest</summary>{manifests}</details>" if manifests else ""
    return f'<div class="counts">{chips}</div><table class="meta">{table}</table>{details}'


def _number(value: object) -> str:
    """Three decimals for people (the manifest below keeps every digit)."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _images(records: list[dict[str, Any]], base: Path, mode: str,
            workers: int) -> list[dict[str, str | None]]:
    """Per record: ``thumb`` and ``figure`` as data: URIs (embed), relative URLs (link) or nothing."""
    if mode == "none":
        return [{"thumb": None, "figure": None} for _ in records]
    source: Callable[[str], str | None] = _thumbnail_uri if mode == "embed" else lambda p: _link(p, base)
    figure: Callable[[str], str | None] = _file_uri if mode == "embed" else lambda p: _link(p, base)

    def one(record: dict[str, Any]) -> dict[str, str | None]:
        shown = record.get("figure")
        return {"thumb": None if record.get("error") else source(record["path"]),
                "figure": figure(shown) if isinstance(shown, str) else None}

    with futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # decoders release the GIL
        return list(pool.map(one, records))


def _thumbnail_uri(path: str) -> str | None:
    """A small JPEG of the image (EXIF orientation applied), or ``None`` when it cannot be read."""
    from PIL import Image

    from apncli.data.images import decode_image

    try:
        image = Image.fromarray(decode_image(path).pixels)
    except Exception:  # the record already tells why a file is unreadable; no thumbnail is enough here
        return None
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_uri(path: str) -> str | None:
    """An explanation figure (PNG) embedded as it is."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError:
        return None


def _link(path: str, base: Path) -> str | None:
    """A relative URL from the page's folder to ``path``; every special character percent-escaped."""
    if not Path(path).exists():
        return None
    relative = os.path.relpath(Path(path).resolve(), base.resolve())
    return urllib.parse.quote(Path(relative).as_posix())
