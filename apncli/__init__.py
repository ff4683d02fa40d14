"""apn: tell whether an image was made by an AI generator (Artifact Purification Network)."""

__version__ = "0.1.0"
