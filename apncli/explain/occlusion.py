"""Band occlusion: how much p(AI) drops when one proposed band's frequency content is removed.

The proposal weights say what the network *attends to*; occlusion says what its *decision depends on*.
Showing both lets a reader check one against the other. Definition (also in docs/explain-schema.md):

    x_k  = irfft2( rfft2(x) · (1 - M^A_k) )   per colour channel, output size H×W
    Δp_k = p(x) - p(x_k)

where M^A_k is band k's amplitude mask (per channel, the network's own mask) and p is the full model's
softmax probability of class 1 on the analysed crop. x_k is not clipped back to [0, 1]: clipping would put
back frequency content we just removed. Positive Δp_k: the band's content pushes the crop towards
"AI-generated".
"""

from __future__ import annotations

import torch
from torch import Tensor

from apncli.model import APN

#: What "without band k" means, for every view that shows Δp (terminal caption, figure note, README).
WITHOUT_BAND = ("the crop with its Fourier coefficients zeroed inside the band's amplitude stripes (soft "
                "masks: scaled by 1 - mask), per colour channel, so those frequencies lose amplitude and "
                "phase alike while the band's phase stripes are left alone")


def remove_band(x: Tensor, mask: Tensor) -> Tensor:
    """x (..., 3, H, W) with the rfft2 bins where ``mask`` (..., 3, H, W') is 1 zeroed (soft masks scale)."""
    freq = torch.fft.rfft2(x.float())
    return torch.fft.irfft2(freq * (1.0 - mask.to(torch.float32)), s=x.shape[-2:])


def occluded_probabilities(model: APN, x: Tensor, amplitude_masks: Tensor, chunk: int = 4) -> Tensor:
    """p(AI) of crop x (1, 3, H, W) with each band removed in turn: (K,) for masks (3, K, H, W').

    Occluded crops go through the model ``chunk`` at a time: in eval mode samples are independent, and
    a chunk bounds memory (each sample already costs 2·K band-head passes).
    """
    masks = amplitude_masks.transpose(0, 1)  # (K, 3, H, W')
    probabilities = []
    with torch.inference_mode():
        for start in range(0, masks.shape[0], chunk):
            part = masks[start:start + chunk]
            occluded = remove_band(x.expand(part.shape[0], -1, -1, -1), part).to(x.dtype)
            if x.is_contiguous(memory_format=torch.channels_last):
                occluded = occluded.contiguous(memory_format=torch.channels_last)
            probabilities.append(model.probability(occluded).float())
    return torch.cat(probabilities)


__all__ = ["WITHOUT_BAND", "occluded_probabilities", "remove_band"]
