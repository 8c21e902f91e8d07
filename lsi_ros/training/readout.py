"""Learning a pattern set from what its measurements must pass on (``lsi patterns``).

A pattern set learnt through the generator needs the generator's backward pass in every step, which
a CPU affords only at batches of a few faces: too few for the 128 × 256² pattern pixels to see more
than noise. Here small read-out networks stand in for the encoder and the generator: one maps the
measurements of real photos to face-api's descriptor of each photo (who the person is), one maps the
measurements of the generator's own faces to their latents (what the encoder must read). Both train
with the patterns (straight-through binary, started from a model's) at batches of hundreds, with no
generator in the loop. What the read-outs can get from the measurements bounds what an encoder can;
the pattern set that lets them get it is then given a real encoder (``lsi train --patterns-from``).
"""

from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from lsi_ros.models.encoder import BinaryPatterns
from lsi_ros.training.finetune import PATTERN_MARGIN
from lsi_ros.training.losses import CONTRAST_TEMPERATURE, info_nce
from lsi_ros.training.train import learning_rate, measure

LOSSES = ("identity", "latent")


@dataclass
class ReadoutConfig:
    steps: int = 4000
    batch_size: int = 256  # photos and generated faces each
    lr: float = 1e-3  # read-out heads' peak learning rate
    pattern_lr: float = 2e-3  # patterns' peak learning rate
    photon_flux: float = 200.0
    learn_from: tuple = LOSSES  # the losses whose gradient reaches the patterns (none: they stay)
    contrastive_weight: float = 0.1  # InfoNCE over the batch's descriptors, beside the squared distance
    temperature: float = CONTRAST_TEMPERATURE
    width: int = 1024
    seed: int = 0


def readout_head(m: int, outputs: int, width: int = 1024) -> nn.Module:
    """Measurements (B, M) -> (B, outputs); batch norm takes the counts' scale."""
    return nn.Sequential(
        nn.BatchNorm1d(m),
        nn.Linear(m, width),
        nn.GELU(),
        nn.Linear(width, width),
        nn.GELU(),
        nn.Linear(width, outputs),
    )


def train_readout(
    photos: torch.Tensor,
    descriptors: torch.Tensor,
    generated: torch.Tensor,
    latents: torch.Tensor,
    base: torch.Tensor,
    config: ReadoutConfig,
):
    """Two heads on the same measurements: face-api's ``descriptors`` (N, 128) of the ``photos`` and
    the normalised ``latents`` (K, D) of the ``generated`` faces (both channel sums on the DMD, (N, H·W)
    uint16). The patterns grow from the binary ``base`` (M, H·W) and learn from the losses named in
    ``config.learn_from``. Returns the heads, the patterns module and the losses every 500 steps."""
    unknown = set(config.learn_from) - set(LOSSES)
    if unknown:
        raise ValueError(f"unknown losses {sorted(unknown)}: the patterns learn from {LOSSES}")
    if len(photos) != len(descriptors) or len(generated) != len(latents):
        raise ValueError("every photo needs its descriptor and every generated face its latent")
    rng = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    patterns = BinaryPatterns.from_binary(base, PATTERN_MARGIN).requires_grad_(bool(config.learn_from))
    m = base.shape[0]
    heads = nn.ModuleDict(
        {
            "identity": readout_head(m, descriptors.shape[1], config.width),
            "latent": readout_head(m, latents.shape[1], config.width),
        }
    )
    groups = [{"params": heads.parameters(), "peak": config.lr, "weight_decay": 1e-4}]
    if config.learn_from:
        groups.append({"params": patterns.parameters(), "peak": config.pattern_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups)
    curve = []
    label = "learnt for " + " and ".join(config.learn_from) if config.learn_from else "fixed"
    for step in tqdm(range(config.steps), desc=f"read-outs (patterns {label})"):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, group["peak"])
        shown = patterns()
        seen = {k: shown if k in config.learn_from else shown.detach() for k in heads}
        index = torch.randint(0, len(photos), (config.batch_size,), generator=rng)
        counts = measure(photos[index].float() / 255.0, seen["identity"], config.photon_flux, rng)
        squared = torch.cdist(heads["identity"](counts), descriptors[index]).pow(2)
        contrastive = info_nce(squared, torch.arange(len(index)), config.temperature)
        identity = squared.diagonal().mean() + config.contrastive_weight * contrastive
        index = torch.randint(0, len(generated), (config.batch_size,), generator=rng)
        counts = measure(generated[index].float() / 255.0, seen["latent"], config.photon_flux, rng)
        latent = (heads["latent"](counts) - latents[index]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        (identity + latent).backward()
        optimizer.step()
        if step % 500 == 0 or step + 1 == config.steps:
            curve.append(
                {
                    "step": step + 1,
                    "identity": round(float(identity.detach()), 4),
                    "latent": round(float(latent.detach()), 4),
                    "pixels_changed": round(pixels_changed(patterns, base), 4),
                }
            )
    return heads.eval(), patterns, curve


def read_out(head: nn.Module, patterns: BinaryPatterns, scenes: torch.Tensor, photon_flux: float, seed: int):
    """A head's reading (N, outputs) of ``scenes`` measured through the binary patterns at
    ``photon_flux``, 256 scenes at a time."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        shown = patterns()
        parts = [
            head(measure(scenes[s : s + 256].float() / 255.0, shown, photon_flux, rng))
            for s in range(0, len(scenes), 256)
        ]
    return torch.cat(parts).numpy()


def pixels_changed(patterns: BinaryPatterns, base: torch.Tensor) -> float:
    """The fraction of pattern pixels that differ from ``base`` (M, H·W)."""
    return float((patterns.binary().float() != base).float().mean())


def normalised_latents(encoder: nn.Module, latents) -> torch.Tensor:
    """Latents (N, D) in the encoder's normalised units, the ones its latent loss compares."""
    mean, std = (t.detach().float() for t in (encoder.latent_mean, encoder.latent_std))
    return (torch.as_tensor(latents).float() - mean) / std


def latent_error(read, truth: torch.Tensor) -> float:
    """Mean squared error of normalised latents (N, D), to four decimals."""
    return round(float((torch.as_tensor(read) - truth).pow(2).mean()), 4)
