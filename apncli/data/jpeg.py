"""JPEG files that lack only their end marker (EOI): tell complete pixel data from missing pixel data.

Some phones and panorama modes write JPEGs whose entropy-coded data is complete but whose 2-byte EOI
marker is missing. libjpeg then decodes pixels identical to the intact file, but Pillow refuses the file as
truncated, and appending an EOI is not enough on its own: libjpeg silently fills *missing* data with grey,
which must never be scored. A file is accepted only if both hold:

1. every scan the frame needs is present: for each component, the scans' spectral ranges (Ss..Se) reach
   every one of the 64 coefficients at full precision (Al = 0), read from the scan headers; and
2. the last scan's entropy-coded data is complete: decoding with no filler and with four different
   filler byte strings between the data and the appended EOI gives the same pixels. A complete scan
   never reads the filler (libjpeg skips bytes before a marker); an incomplete one decodes the filler's
   bits as coefficients, which differ from filler to filler, while without filler libjpeg leaves the rest
   of the scan blank.

So the outcome does not depend on where the data happens to end, only on whether pixels are missing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EOI = b"\xff\xd9"
# No filler, zero bytes (always valid Huffman codes) and fixed pseudo-random bytes (never 0xFF, a marker).
_RANDOM_FILLERS = [np.random.default_rng(seed).integers(0, 255, 64, np.uint8).tobytes() for seed in (1, 2, 3)]
_FILLERS = (b"", bytes(64), *_RANDOM_FILLERS)
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 carry no length field
_SOF_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def missing_only_eoi(data: bytes, decode: Callable[[bytes], np.ndarray]) -> bytes | None:
    """``data`` with its EOI restored when only the EOI is missing, else ``None`` (pixels are missing).

    ``decode`` turns JPEG bytes into pixels (raising on failure); it is called twice.
    """
    if not data.startswith(b"\xff\xd8") or data.rstrip(b"\x00").endswith(EOI):
        return None
    if not _all_scans_present(data):
        return None
    try:
        first, *others = (decode(data + filler + EOI) for filler in _FILLERS)
    except Exception:
        return None
    return data + EOI if all(np.array_equal(first, other) for other in others) else None


def _all_scans_present(data: bytes) -> bool:
    """Whether the scan headers cover all 64 coefficients of every component at full precision."""
    components: list[int] | None = None
    progressive = False
    done: dict[int, set[int]] = {}
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return False
        if marker in _SOF and len(segment) >= 6:
            progressive = marker in _SOF_PROGRESSIVE
            components = [segment[6 + 3 * i] for i in range(segment[5]) if 6 + 3 * i < len(segment)]
            done = {c: set() for c in components}
        elif marker == 0xDA:  # start of scan: record what it covers, then skip its entropy-coded data
            if components is None or not _record_scan(segment, done, progressive):
                return False
            pos = _end_of_entropy_data(data, pos + 2 + length)
            continue
        pos += 2 + length
    return components is not None and all(len(coefs) == 64 for coefs in done.values())


def _record_scan(segment: bytes, done: dict[int, set[int]], progressive: bool) -> bool:
    count = segment[0] if segment else 0
    if len(segment) < 1 + 2 * count + 3:
        return False
    ids = [segment[1 + 2 * i] for i in range(count)]
    start, end, approx = segment[1 + 2 * count], segment[2 + 2 * count], segment[3 + 2 * count]
    if not progressive:
        start, end, approx = 0, 63, 0  # sequential scans carry every coefficient, whatever the header says
    if approx & 0x0F:  # Al > 0: a lower-precision pass; refinement scans complete it later
        return True
    for component in ids:
        if component not in done:
            return False
        done[component].update(range(start, min(end, 63) + 1))
    return True


def _end_of_entropy_data(data: bytes, pos: int) -> int:
    """Offset of the first marker after entropy-coded data starting at ``pos`` (len(data) if none)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos
