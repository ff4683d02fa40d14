"""Vocabularies that turn declared metadata into what it indicates (declared-ai / -edited / camera).

All rules are deliberately literal (known IPTC codes, known tool names, known parameter layouts): the point
is to report what the file *says*, not to guess, so an unknown tool name indicates nothing.
"""

from __future__ import annotations

import re

from apncli.provenance.model import CAMERA_METADATA, DECLARED_AI, DECLARED_EDITED

# IPTC NewsCodes "digitalsourcetype" (also used by C2PA actions), by local name.
AI_SOURCE_TYPES = frozenset({
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
    "compositeSynthetic",
})
EDITED_SOURCE_TYPES = frozenset({
    "algorithmicallyEnhanced", "humanEdits", "minorHumanEdits", "composite", "compositeCapture",
})
CAPTURE_SOURCE_TYPES = frozenset({"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm"})

# C2PA actions that change what the picture shows (format conversion, publishing, etc. do not count).
EDIT_ACTIONS = frozenset({
    "c2pa.edited", "c2pa.color_adjustments", "c2pa.cropped", "c2pa.drawing", "c2pa.filtered",
    "c2pa.orientation", "c2pa.placed", "c2pa.removed", "c2pa.resized",
})

_GENERATOR_RE = re.compile(
    r"midjourney|dall[\s·\-_.]?e|stable[\s_-]?diffusion|\bsdxl\b|firefly|\bimagen\b|novelai|comfyui"
    r"|automatic1111|invokeai|fooocus|ideogram|leonardo[\s.]?ai|\bflux(\.1)?\b|chatgpt|openai|gpt-4o"
    r"|gpt-image|image creator|\bgemini\b|google ai|nano banana|dreamstudio|craiyon|kandinsky"
    r"|playground ?ai|\bdiffusers\b",
    re.IGNORECASE,
)
_EDITOR_RE = re.compile(
    r"photoshop|\bgimp\b|lightroom|affinity photo|pixelmator|paint\.net|snapseed|\bcanva\b|photopea"
    r"|capture one|darktable|rawtherapee|luminar|picsart|facetune|photoscape|krita|paintshop|acdsee"
    r"|\bfotor\b|photodirector",
    re.IGNORECASE,
)

# PNG text keys written by generation front-ends (A1111/Forge, ComfyUI, InvokeAI, Fooocus, NovelAI...).
GENERATION_KEYS = frozenset({
    "parameters", "prompt", "workflow", "dream", "sd-metadata", "sd_metadata", "invokeai_metadata",
    "invokeai_graph", "negative_prompt", "generation_data", "fooocus_scheme",
})
_A1111_RE = re.compile(r"\bSteps:\s*\d+,[^\n]{0,500}?\b(Sampler|CFG scale|Seed):", re.IGNORECASE)
_MIDJOURNEY_RE = re.compile(r"\bJob ID:\s*[0-9a-f]{8}-", re.IGNORECASE)
PARAMETER_SCAN_CHARS = 64 * 1024
_JSON_PARAM_RE = re.compile(r'"(steps|sampler|seed|cfg_scale|scale|n_samples|uc|negative_prompt)"\s*:')


def source_type_term(value: str) -> str:
    """Local name of a digital source type given as a URI, a ``prefix:term`` or a bare term."""
    return re.split(r"[/:#]", value.strip())[-1]


def classify_source_type(value: str) -> str | None:
    """What an IPTC/C2PA digital source type declares."""
    term = source_type_term(value)
    if term in AI_SOURCE_TYPES:
        return DECLARED_AI
    if term in EDITED_SOURCE_TYPES:
        return DECLARED_EDITED
    if term in CAPTURE_SOURCE_TYPES:
        return CAMERA_METADATA
    return None


def classify_software(value: str) -> str | None:
    """What a software/tool name declares: a known generator, a known editor, or nothing."""
    if _GENERATOR_RE.search(value):
        return DECLARED_AI
    if _EDITOR_RE.search(value):
        return DECLARED_EDITED
    return None


def classify_action(action: str) -> str | None:
    """A C2PA action on its own only tells that the picture was edited (or nothing)."""
    return DECLARED_EDITED if action in EDIT_ACTIONS else None


def looks_like_generation_parameters(text: str) -> bool:
    """True for the parameter blocks generators write (A1111 ``Steps: ...``, Midjourney job ids, JSON).

    Only the first ``PARAMETER_SCAN_CHARS`` are searched, which keeps a hostile megabyte of text cheap.
    """
    text = text[:PARAMETER_SCAN_CHARS]
    if "Negative prompt:" in text or _A1111_RE.search(text) or _MIDJOURNEY_RE.search(text):
        return True
    return len(set(_JSON_PARAM_RE.findall(text))) >= 2


def rank(indicates: str | None) -> int:
    """Sort key: higher for stronger declarations (used to pick the headline digital source type)."""
    order = {DECLARED_AI: 3, DECLARED_EDITED: 2, CAMERA_METADATA: 1}
    return order.get(indicates or "", 0)
