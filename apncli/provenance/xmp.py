"""XMP packets found by a byte search, parsed for the few fields that say how an image was made.

A byte search works for every container (JPEG APP1, PNG iTXt, WebP chunk, TIFF tag, HEIF item) without a
format parser; the caller bounds how many bytes are searched, and each packet is capped in size.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from apncli.provenance.classify import classify_software, classify_source_type
from apncli.provenance.model import ProvenanceItem

MAX_PACKET_BYTES = 1 << 20
MAX_PACKETS = 4
MAX_ITEMS = 32

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
_XMP = "http://ns.adobe.com/xap/1.0/"
_PHOTOSHOP = "http://ns.adobe.com/photoshop/1.0/"
_STEVT = "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"

# Clark name -> (reported field name, classifier).
_FIELDS = {
    f"{{{_IPTC_EXT}}}DigitalSourceType": ("Iptc4xmpExt:DigitalSourceType", classify_source_type),
    f"{{{_XMP}}}CreatorTool": ("xmp:CreatorTool", classify_software),
    f"{{{_PHOTOSHOP}}}Credit": ("photoshop:Credit", classify_software),
    f"{{{_STEVT}}}softwareAgent": ("stEvt:softwareAgent", classify_software),
}

_START = re.compile(rb"<x:xmpmeta\b|<x:xapmeta\b")
_END = re.compile(rb"</x:xmpmeta\s*>|</x:xapmeta\s*>")
_FORBIDDEN = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


def find_packets(data: bytes) -> list[bytes | None]:
    """XMP packets in ``data``; ``None`` stands for a packet whose end is missing or too far away."""
    packets: list[bytes | None] = []
    for start in _START.finditer(data):
        if len(packets) == MAX_PACKETS:
            break
        end = _END.search(data, start.start(), start.start() + MAX_PACKET_BYTES)
        packets.append(data[start.start():end.end()] if end else None)
    return packets


def items_from_bytes(data: bytes) -> list[ProvenanceItem]:
    """Items from every XMP packet found in ``data`` (an error item for each packet that cannot be read)."""
    items: list[ProvenanceItem] = []
    for packet in find_packets(data):
        if packet is None:
            items.append(ProvenanceItem.failure("xmp", "packet", "XMP packet without an end tag"))
        else:
            items.extend(items_from_packet(packet.decode("utf-8", errors="replace")))
    return _dedupe(items)[:MAX_ITEMS]


def items_from_packet(text: str) -> list[ProvenanceItem]:
    """Items from one XMP packet; malformed XML becomes one error item instead of an exception."""
    if _FORBIDDEN.search(text):
        return [ProvenanceItem.failure("xmp", "packet", "XMP with a DOCTYPE/ENTITY declaration; not parsed")]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [ProvenanceItem.failure("xmp", "packet", f"malformed XMP: {exc}")]
    items = []
    for element in root.iter():
        pairs = [(name, value.strip()) for name, value in element.attrib.items()]
        if element.tag in _FIELDS:
            pairs.append((str(element.tag), _element_value(element)))
        for name, value in pairs:
            spec = _FIELDS.get(name)
            if spec and value:
                label, classify = spec
                items.append(ProvenanceItem.text("xmp", label, value, classify(value)))
    return _dedupe(items)[:MAX_ITEMS]


def _element_value(element: ET.Element) -> str:
    """Text of a simple property, its ``rdf:resource``, or the joined ``rdf:li`` values of an array."""
    if element.text and element.text.strip():
        return element.text.strip()
    resource = element.get(f"{{{_RDF}}}resource")
    if resource:
        return resource.strip()
    values = [li.text.strip() for li in element.iter(f"{{{_RDF}}}li") if li.text and li.text.strip()]
    return "; ".join(values)


def _dedupe(items: list[ProvenanceItem]) -> list[ProvenanceItem]:
    """Drop repeated items (Photoshop repeats the same softwareAgent in every history entry)."""
    return list(dict.fromkeys(items))
