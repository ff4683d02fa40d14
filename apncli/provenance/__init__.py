"""Metadata evidence (C2PA, XMP, EXIF, PNG text) about how an image was made, reported beside p_ai.

Declared metadata is a claim by whoever wrote the file, so it is shown with its source and never used to
change the detector's score; absent metadata is reported as proving nothing.
"""

from apncli.provenance.model import (
    CAMERA_METADATA,
    DECLARED_AI,
    DECLARED_EDITED,
    NONE,
    SOURCES,
    SUMMARY_VALUES,
    C2PAStatus,
    Provenance,
    ProvenanceItem,
)
from apncli.provenance.reader import read_provenance

__all__ = [
    "CAMERA_METADATA",
    "DECLARED_AI",
    "DECLARED_EDITED",
    "NONE",
    "SOURCES",
    "SUMMARY_VALUES",
    "C2PAStatus",
    "Provenance",
    "ProvenanceItem",
    "read_provenance",
]
