"""Training losses: the terms of a training step (``training_terms``, the one place a step's loss is
made) and the image losses through the frozen generator, shared by training and the latent teacher.

``1 − MS-SSIM`` uses the largest Gaussian window whose four downsamplings still fit the image, so
the same loss works on 256² MobileStyleGAN faces (window 11) and the 64² DCGAN double (window 3).
"""

from collections.abc import Mapping

import torch
from pytorch_msssim import ms_ssim

IMAGE_LOSSES = ("l1", "l2", "ms-ssim")


def training_terms(
    predicted: torch.Tensor,
    target: torch.Tensor,
    rendered: torch.Tensor | None = None,
    decoded: torch.Tensor | None = None,
    image_terms: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """A training step's loss terms, each a scalar; the trainer sums them with its weights.

    ``predicted``, ``target``: latents (N, D) in the encoder's normalised units. ``rendered``: the true
    faces, ``decoded``: the generator's faces of ``predicted`` (N, C, H, W) in [0, 1], or None when
    no image term is weighted (decoding is costly). ``latent`` is their MSE; ``image`` the
    ``image_terms`` loss of the grayscale faces (the photodiode sees only the channel sum)."""
    terms = {"latent": torch.nn.functional.mse_loss(predicted, target)}
    if decoded is not None:
        gray = decoded.mean(1, keepdim=True), rendered.mean(1, keepdim=True)
        terms["image"] = image_loss(*gray, image_terms or {"l2": 1.0}).mean()
    return terms


def ms_ssim_window(side: int) -> int:
    """The largest odd Gaussian window (at most 11) whose 4 downsamplings fit a side (64² faces: 3)."""
    return min(11, (side - 1) // 16 // 2 * 2 + 1)


def image_loss(decoded: torch.Tensor, target: torch.Tensor, weights: Mapping[str, float]) -> torch.Tensor:
    """Per image ``(N,)``: the weighted sum of the named terms between (N, C, H, W) images in [0, 1]."""
    unknown = set(weights) - set(IMAGE_LOSSES)
    if unknown:
        raise ValueError(f"unknown image loss {sorted(unknown)}; choose from {IMAGE_LOSSES}")
    loss = decoded.new_zeros(len(decoded))
    for term, weight in weights.items():
        if not weight:
            continue
        if term == "l1":
            value = (decoded - target).abs().mean((1, 2, 3))
        elif term == "l2":
            value = (decoded - target).pow(2).mean((1, 2, 3))
        else:
            window = ms_ssim_window(target.shape[-1])
            value = 1.0 - ms_ssim(decoded, target, data_range=1.0, win_size=window, size_average=False)
        loss = loss + weight * value
    return loss
