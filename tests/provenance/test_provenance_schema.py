"""The documented JSON schema (docs/provenance-schema.md) matches what ``to_dict`` produces."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from apncli.provenance import read_provenance
from apncli.provenance.classify import (
    classify_software,
    classify_source_type,
    looks_like_generation_parameters,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "provenance-schema.md"
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _json_blocks() -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)]


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool))


def check(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Validator for the JSON Schema subset the document uses (no jsonschema dependency)."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        assert any(_type_ok(value, k) for k in kinds), f"{where}: {value!r} is not {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "const" in schema:
        assert value == schema["const"], where
    if isinstance(value, str) and "maxLength" in schema:
        assert len(value) <= schema["maxLength"], where
    if isinstance(value, int) and "minimum" in schema:
        assert value >= schema["minimum"], where
    if isinstance(value, dict):
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing keys"
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(schema["properties"])
            assert not extra, f"{where}: undocumented keys {extra}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check(value[key], sub, f"{where}.{key}")
    if isinstance(value, list):
        assert len(value) <= schema.get("maxItems", len(value)), where
        assert len(value) >= schema.get("minItems", 0), where
        for i, element in enumerate(value):
            check(element, schema.get("items", {}), f"{where}[{i}]")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return _json_blocks()[0]


def test_document_examples_follow_the_schema(schema):
    examples = _json_blocks()[1:]
    assert len(examples) == 2
    for example in examples:
        check(example, schema)


def test_real_records_follow_the_schema(schema, write_jpeg, write_png, xmp_packet, iptc_ai, tmp_path,
                                        monkeypatch, request):
    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "Canon", "Adobe Photoshop 25.0"
    paths = [
        write_jpeg("xmp.jpg", xmp=xmp_packet(f'Iptc4xmpExt:DigitalSourceType="{iptc_ai}">'), exif=exif),
        write_jpeg("broken.jpg", xmp=b"<x:xmpmeta><oops></x:xmpmeta>"),
        write_png(texts=(("tEXt", "parameters", "Steps: 1, Seed: 2"), ("tEXt", "Comment", "y" * 3000))),
        tmp_path / "missing.jpg",
    ]
    if importlib.util.find_spec("c2pa") and importlib.util.find_spec("cryptography"):
        sign = request.getfixturevalue("c2pa_sign")
        paths.append(sign("signed.jpg", [{"action": "c2pa.created", "digitalSourceType": iptc_ai},
                                         {"action": "c2pa.edited"}]))
    for path in paths:
        check(read_provenance(path).to_dict(), schema, str(path.name))
    monkeypatch.setitem(sys.modules, "c2pa", None)
    check(read_provenance(paths[0]).to_dict(), schema, "no-c2pa")


@pytest.mark.parametrize(("text", "expected"), [
    ("Adobe Photoshop 25.0 (Windows)", "declared-edited"),
    ("Imagenomic Portraiture 3", None),  # "Imagen" only as a whole word
    ("DALL·E 3", "declared-ai"), ("DALL-E", "declared-ai"), ("stable-diffusion-webui", "declared-ai"),
    ("Google", None), ("HDR+ 1.0.540104767zd", None), ("Ver.1.00", None),
    ("Made with Google AI", "declared-ai"),
])
def test_software_vocabulary(text, expected):
    assert classify_software(text) == expected


def test_source_type_forms_and_parameter_shapes():
    assert classify_source_type("trainedAlgorithmicMedia") == "declared-ai"
    edits = "https://cv.iptc.org/newscodes/digitalsourcetype/humanEdits"
    assert classify_source_type(edits) == "declared-edited"
    assert classify_source_type("digsrctype:digitalCreation") is None
    assert looks_like_generation_parameters('{"steps": 28, "sampler": "k_euler", "seed": 1}')
    assert not looks_like_generation_parameters("Steps: a guide to the city's staircases")
