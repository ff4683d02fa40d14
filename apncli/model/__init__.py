"""The APN network: configs, spectral band proposal and masks, backbones, the model, and CLUB.

Pure tensor code: nothing here reads files or imports the rest of ``apncli``.
"""

from .apn import APN, APNOutput, build_model, load_backbone_weights
from .club import CLUB
from .config import CONFIGS, APNConfig, get_config
from .proposal import BandProposal

__all__ = [
    "APN",
    "CLUB",
    "CONFIGS",
    "APNConfig",
    "APNOutput",
    "BandProposal",
    "build_model",
    "get_config",
    "load_backbone_weights",
]
