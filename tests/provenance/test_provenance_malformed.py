"""Malformed, hostile or missing metadata never breaks the scan: it becomes an error item or a note."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from apncli.provenance import SUMMARY_VALUES, Provenance, read_provenance
from apncli.provenance.reader import NOTE_ABSENT, NOTE_ERRORS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    size = len(data) if length is None else length
    return struct.pack(">I", size) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(*extra: bytes) -> bytes:
    """A valid 16x16 PNG with ``extra`` chunks inserted before its image data."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "PNG")
    data = buf.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + b"".join(extra) + data[ihdr_end:]


def assert_survives(path: Path) -> Provenance:
    """read_provenance returns a complete, JSON-serialisable record."""
    prov = read_provenance(path)
    record = json.loads(json.dumps(prov.to_dict()))
    assert record["summary"] in SUMMARY_VALUES
    assert set(record) == {"summary", "items", "c2pa", "notes"}
    return prov


def _errors(prov: Provenance, source: str) -> list[str]:
    return [i.error for i in prov.items if i.source == source and i.error]


def test_broken_xmp_xml_is_an_error_item_and_exif_still_read(write_jpeg):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    broken = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><unclosed attr="1></x:xmpmeta>'
    prov = assert_survives(write_jpeg(xmp=broken, exif=exif))
    assert _errors(prov, "xmp")[0].startswith("malformed XMP")
    assert prov.summary == "camera-metadata"
    assert NOTE_ERRORS in prov.notes


def test_xmp_entity_expansion_is_refused_quickly(write_jpeg, write_png):
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    packet = (f'<?xml version="1.0"?><!DOCTYPE x [{laughs}]>'
              '<x:xmpmeta xmlns:x="adobe:ns:meta/">&l9;</x:xmpmeta>')
    start = time.perf_counter()
    # In a JPEG the byte search starts at <x:xmpmeta, so the DOCTYPE is never seen: undefined entity.
    in_jpeg = assert_survives(write_jpeg(xmp=packet.encode()))
    # A PNG iTXt XMP chunk is parsed whole, so the declaration itself must be refused.
    in_png = assert_survives(write_png(texts=(("iTXt", "XML:com.adobe.xmp", packet),)))
    assert time.perf_counter() - start < 2
    assert "undefined entity" in _errors(in_jpeg, "xmp")[0]
    assert "DOCTYPE" in _errors(in_png, "xmp")[0]


def test_unterminated_xmp_packet(tmp_path):
    path = tmp_path / "cut.jpg"
    header = b"\xff\xd8\xff\xe1\x00\x40http://ns.adobe.com/xap/1.0/\x00"
    path.write_bytes(header + b'<x:xmpmeta xmlns:x="adobe:ns:meta/">')
    prov = assert_survives(path)
    assert "without an end tag" in _errors(prov, "xmp")[0]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_garbage_exif_block(write_jpeg, tmp_path):
    """Pillow skips what it cannot parse (with a warning); the rest of the record is still produced."""
    assert_survives(write_jpeg(exif=b"Exif\x00\x00" + bytes(range(256)) * 4))
    assert_survives(write_jpeg("mm.jpg", exif=b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0garbage"))
    bad_png = tmp_path / "bad-exif.png"
    bad_png.write_bytes(png_with(chunk(b"eXIf", b"MM\0\x2a\0\0\0\x08\xff\xff")))
    assert_survives(bad_png)


def test_truncated_jpeg_and_png(tmp_path, write_jpeg, write_png):
    jpeg = write_jpeg(exif=Image.Exif())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg.read_bytes()[:30])
    assert_survives(cut)
    png = write_png(texts=(("tEXt", "parameters", "Steps: 20, Sampler: Euler"),))
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png.read_bytes()[:-20])
    prov = assert_survives(cut_png)
    assert any("truncated" in e for e in _errors(prov, "png-text"))
    assert prov.summary == "declared-ai"  # the text chunk before the cut is still reported


def test_hostile_png_chunks(tmp_path):
    cases = {
        "huge-length.png": PNG_SIGNATURE + chunk(b"IHDR", b"\0" * 13) + chunk(b"tEXt", b"a\0b", 0xFFFFFFF0),
        "no-keyword.png": png_with(chunk(b"tEXt", b"no separator here")),
        "bad-zlib.png": png_with(chunk(b"zTXt", b"Comment\0\0not zlib data")),
        "bad-itxt.png": png_with(chunk(b"iTXt", b"prompt\0\x01\0\0\0\x78\x9cbroken")),
        "not-png-after-sig.png": PNG_SIGNATURE + b"\x00\x01",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        prov = assert_survives(path)
        assert any(i.error for i in prov.items), name


def test_zip_bomb_text_is_cut_not_expanded(tmp_path):
    bomb = zlib.compress(b"A" * (32 << 20), 9)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with(chunk(b"zTXt", b"Comment\0\0" + bomb)))
    start = time.perf_counter()
    prov = assert_survives(path)
    assert time.perf_counter() - start < 2
    comment = next(i for i in prov.items if i.field == "Comment")
    assert comment.truncated and len(comment.value) == 2000


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\xff\xd8\xff", b"GIF89a"])
def test_non_images_and_stubs(tmp_path, content):
    path = tmp_path / "odd.jpg"
    path.write_bytes(content)
    prov = assert_survives(path)
    assert prov.summary == "none" and NOTE_ABSENT in prov.notes


def test_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "missing.jpg", tmp_path):
        prov = assert_survives(path)
        assert prov.c2pa.checked is False
        assert prov.notes[0].startswith("The file could not be read")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    """Metadata-rich JPEG and PNG files for the mutation test."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "Canon", "GIMP"
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0Steps: 2, Seed: 1"
    jpeg, png = io.BytesIO(), io.BytesIO()
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
           b"</x:xmpmeta>")
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG", exif=exif.tobytes(), xmp=xmp)
    Image.new("RGB", (8, 8)).save(png, "PNG", exif=exif.tobytes())
    ztxt = png_with(chunk(b"zTXt", b"prompt\0\0" + zlib.compress(b"{}")))
    return [jpeg.getvalue(), ztxt, png.getvalue()]


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=8))
def test_mutated_files_never_raise(tmp_path, seeds, which, cut, flips):
    data = bytearray(seeds[which])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(data[: max(cut, 1)]) if cut < len(data) else bytes(data))
    assert_survives(path)
