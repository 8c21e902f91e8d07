"""The latent space imaging model: learned binary DMD patterns + a digital encoder to the latent.

Training sees ``LatentSpaceImager``: straight-through binary patterns (the paper's optical
encoder), the photodiode in the loop, and the encoder that maps the M measurements to the
generator's latent as an offset from its mean (normalised by the latent's per-dimension std).
At run time only ``MeasurementEncoder`` and the frozen patterns are needed.
"""

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, x):
        return x + self.net(x)


class MeasurementEncoder(nn.Module):
    """M measurements -> latent, ``w_mean + w_std · f(LayerNorm(y))``.

    LayerNorm over the measurements of a frame removes a global gain and offset (light level,
    amplifier gain, dark level, ambient light), so one model serves bright and dim scenes.
    """

    def __init__(self, num_measurements: int, latent_dim: int = 512, width: int = 1024, depth: int = 2):
        super().__init__()
        self.num_measurements = num_measurements
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.net = nn.Sequential(
            nn.LayerNorm(num_measurements),
            nn.Linear(num_measurements, width),
            nn.SiLU(),
            *[ResidualBlock(width) for _ in range(depth)],
            nn.LayerNorm(width),
            nn.Linear(width, latent_dim),
        )
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """The predicted offset ``(w - w_mean) / w_std`` (what the latent loss compares)."""
        return self.net(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_mean + self.latent_std * self.net(y)


class EncoderEnsemble(nn.Module):
    """Encoders of the same measurements, trained apart, their estimates averaged.

    Each encoder alone overfits the faces it learnt from in its own way; the mean of their estimates
    has a lower latent error than any of them. Same interface as ``MeasurementEncoder``; the latent
    normalisation is shared (the members' buffers must agree)."""

    def __init__(self, members: list[MeasurementEncoder]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.check_members()
        first = members[0]
        self.num_measurements = first.num_measurements
        self.latent_dim = first.latent_dim
        self.width = first.width
        self.depth = first.depth
        self._stacked, self._stacked_key = [], None  # the inference path's stacked weights, and of what

    def check_members(self) -> None:
        """Members must share their shape and latent normalisation (checked again after loading
        weights, which replace the buffers the constructor saw)."""
        first = self.members[0]
        for member in self.members[1:]:
            shape = (member.num_measurements, member.latent_dim, member.width, member.depth)
            if shape != (first.num_measurements, first.latent_dim, first.width, first.depth):
                raise ValueError("ensemble members differ in shape")
            if not (
                torch.equal(member.latent_mean, first.latent_mean)
                and torch.equal(member.latent_std, first.latent_std)
            ):
                raise ValueError("ensemble members normalise the latent differently")

    @property
    def latent_mean(self) -> torch.Tensor:
        return self.members[0].latent_mean

    @property
    def latent_std(self) -> torch.Tensor:
        return self.members[0].latent_std

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """The members' mean estimate; without gradients all members run at once, each layer one
        batched matrix product over stacked weights (half the time of one member after another at
        one frame), rebuilt whenever a member's weights change or move."""
        if torch.is_grad_enabled():
            return torch.stack([member.normalised(y) for member in self.members]).mean(0)
        if y.ndim == 1:  # one frame without a batch axis, as a single encoder takes it
            return self.normalised(y[None])[0]
        nets = [member.net for member in self.members]
        key = tuple((p.data_ptr(), p._version) for net in nets for p in net.parameters())
        if self._stacked_key != key:
            self._stacked, self._stacked_key = _stacked_layers(nets), key
        return _run_stacked(self._stacked, y.expand(len(nets), *y.shape)).mean(0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_mean + self.latent_std * self.normalised(y)


def _stacked_layers(nets) -> list[tuple]:
    """The members' layers, position by position, with their weights stacked along a first axis."""
    layers = []
    for modules in zip(*nets, strict=True):
        first = modules[0]
        if isinstance(first, nn.LayerNorm):
            weight, bias = (
                torch.stack([getattr(m, n).detach() for m in modules])[:, None] for n in ("weight", "bias")
            )
            layers.append(("norm", first.normalized_shape, first.eps, weight, bias))
        elif isinstance(first, nn.Linear):
            weight = torch.stack([m.weight.detach() for m in modules]).transpose(1, 2).contiguous()
            layers.append(("linear", weight, torch.stack([m.bias.detach() for m in modules])[:, None]))
        elif isinstance(first, nn.SiLU):
            layers.append(("silu",))
        elif isinstance(first, ResidualBlock):
            layers.append(("residual", _stacked_layers([m.net for m in modules])))
        else:
            raise TypeError(f"no stacked form of {type(first).__name__}")
    return layers


def _run_stacked(layers: list[tuple], x: torch.Tensor) -> torch.Tensor:
    """(K, B, F) through K members' stacked layers at once."""
    for kind, *parts in layers:
        if kind == "norm":
            shape, eps, weight, bias = parts
            x = nn.functional.layer_norm(x, shape, eps=eps) * weight + bias
        elif kind == "linear":
            x = torch.baddbmm(parts[1], x, parts[0])
        elif kind == "silu":
            x = nn.functional.silu(x)
        else:
            x = x + _run_stacked(parts[0], x)
    return x


def build_encoder(
    num_measurements: int, latent_dim: int, width: int, depth: int, members: int = 1
) -> MeasurementEncoder | EncoderEnsemble:
    """An untrained encoder of a model file's architecture (one network, or an ensemble of them)."""
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"an encoder has at least one member, not {members!r}")
    networks = [MeasurementEncoder(num_measurements, latent_dim, width, depth) for _ in range(members)]
    return networks[0] if members == 1 else EncoderEnsemble(networks)


class BinaryPatterns(nn.Module):
    """Learnable DMD patterns: weights in [0, 1] shown as round(clamp(w)) with a straight-through gradient."""

    def __init__(self, num_patterns: int, resolution: int, generator: torch.Generator | None = None):
        super().__init__()
        init = 0.5 + 0.05 * torch.randn(num_patterns, resolution * resolution, generator=generator)
        self.weight = nn.Parameter(init)
        self.resolution = resolution

    def forward(self) -> torch.Tensor:
        clamped = self.weight.clamp(0.0, 1.0)
        return (torch.round(clamped) - clamped).detach() + clamped

    def binary(self) -> torch.Tensor:
        return self.weight.detach().clamp(0.0, 1.0).round().to(torch.bool)
