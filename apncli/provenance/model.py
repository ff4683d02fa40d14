"""The provenance record: evidence items, the C2PA status and the one-word summary.

Kept apart from the readers so that every reader produces the same item type and the summary rule lives in
one place: the scan output must show *what* was declared and *where*, never fold it into p_ai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DECLARED_AI = "declared-ai"
DECLARED_EDITED = "declared-edited"
CAMERA_METADATA = "camera-metadata"
NONE = "none"

# Strongest first: the summary is the first of these that any item indicates.
SUMMARY_PRECEDENCE = (DECLARED_AI, DECLARED_EDITED, CAMERA_METADATA)
SUMMARY_VALUES = (*SUMMARY_PRECEDENCE, NONE)

SOURCES = ("c2pa", "xmp", "exif", "png-text")

MAX_VALUE_CHARS = 2000


@dataclass(frozen=True)
class ProvenanceItem:
    """One piece of declared metadata, or one metadata block that could not be read (``error`` set)."""

    source: str
    field: str
    value: str | None
    indicates: str | None = None
    error: str | None = None
    truncated: bool = False
    manifest: str | None = None

    @classmethod
    def text(cls, source: str, name: str, value: str, indicates: str | None = None,
             manifest: str | None = None) -> ProvenanceItem:
        """Item whose value is cut to ``MAX_VALUE_CHARS``, so that one huge prompt cannot bloat a record."""
        truncated = len(value) > MAX_VALUE_CHARS
        return cls(source, name, value[:MAX_VALUE_CHARS], indicates, truncated=truncated, manifest=manifest)

    @classmethod
    def failure(cls, source: str, name: str, error: str) -> ProvenanceItem:
        """Build the item that stands for a metadata block that exists but could not be parsed."""
        return cls(source, name, None, error=error[:MAX_VALUE_CHARS])

    def to_dict(self) -> dict[str, Any]:
        """JSON form; optional keys appear only when they carry information."""
        out: dict[str, Any] = {"source": self.source, "field": self.field, "value": self.value,
                               "indicates": self.indicates}
        if self.error is not None:
            out["error"] = self.error
        if self.truncated:
            out["truncated"] = True
        if self.manifest is not None:
            out["manifest"] = self.manifest
        return out


@dataclass
class C2PAStatus:
    """What the C2PA library said about the file, kept as the library reported it.

    ``present``/``valid``/``trusted`` are ``None`` when unknown (not checked, or the library could not tell),
    so that "not checked" is never confused with "checked and absent".
    """

    checked: bool
    present: bool | None = None
    valid: bool | None = None
    trusted: bool | None = None
    validation_state: str | None = None
    validation_status: list[Any] = field(default_factory=list)
    claim_generator: str | None = None
    signer: dict[str, Any] | None = None
    actions: list[Any] = field(default_factory=list)
    digital_source_type: str | None = None
    manifests: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form with every key always present (stable schema for jq users)."""
        return {
            "checked": self.checked, "present": self.present, "valid": self.valid, "trusted": self.trusted,
            "validation_state": self.validation_state, "validation_status": self.validation_status,
            "claim_generator": self.claim_generator, "signer": self.signer, "actions": self.actions,
            "digital_source_type": self.digital_source_type, "manifests": self.manifests,
            "error": self.error,
        }


def summarize(items: list[ProvenanceItem]) -> str:
    """Strongest declaration among the items (declared-ai > declared-edited > camera-metadata > none)."""
    declared = {item.indicates for item in items}
    return next((level for level in SUMMARY_PRECEDENCE if level in declared), NONE)


@dataclass
class Provenance:
    """Metadata evidence about how an image was made; separate from, and never mixed into, p_ai."""

    items: list[ProvenanceItem]
    c2pa: C2PAStatus
    notes: list[str]

    @property
    def summary(self) -> str:
        return summarize(self.items)

    def to_dict(self) -> dict[str, Any]:
        """The ``provenance`` object of a scan record (schema: docs/provenance-schema.md)."""
        return {
            "summary": self.summary,
            "items": [item.to_dict() for item in self.items],
            "c2pa": self.c2pa.to_dict(),
            "notes": list(self.notes),
        }
