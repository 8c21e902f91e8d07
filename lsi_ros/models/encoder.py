"""The latent space imaging model: learned binary DMD patterns + a digital encoder to the latent.

Training sees ``LatentSpaceImager``: straight-through binary patterns (the paper's optical
encoder), the photodiode in the loop, and the encoder that maps the M measurements to the
generator's latent as an offset from its mean (normalised by the latent's per-dimension std).
At run time only ``MeasurementEncoder`` and the frozen patterns are needed.

Latent spaces: "w" (one 512-d vector, the generator repeats it for every layer) or "w+" (one vector
per generator layer, ``num_ws`` of them, as the paper encodes): a W prediction plus per-layer offsets
from the same features. The offsets start at zero, so a W+ encoder made from a trained W encoder
(``with_layer_offsets``) starts from exactly that encoder's faces. The offset head maps the features
to every layer's 512 values; with ``offset_rank`` R it passes through R numbers first (two matrices
instead of one, a fraction of the bytes), and ``low_rank_offsets`` factorises a trained full head so.
"""

import math

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


LATENT_SPACES = ("w", "w+")


def latent_space_of(num_ws: int) -> str:
    return "w+" if num_ws > 1 else "w"


def normalised_error(predicted, target, std):
    """Per-dimension error ``(predicted - target) / std`` of latents (N, D) or W+ (N, L, D) against
    targets in either form (a W target stands for every layer); numpy or torch alike."""
    if predicted.ndim == target.ndim + 1:
        target = target[:, None]
    elif target.ndim == predicted.ndim + 1:
        predicted = predicted[:, None]
    return (predicted - target) / std


class MeasurementEncoder(nn.Module):
    """M measurements -> latent, ``w_mean + w_std · f(LayerNorm(y))``.

    LayerNorm over the measurements of a frame removes a global gain and offset (light level,
    amplifier gain, dark level, ambient light), so one model serves bright and dim scenes.
    With ``num_ws`` > 1 (W+) the output is (..., num_ws, latent_dim): the W estimate plus a per-layer
    offset (``layer_offsets``, zero at initialisation) from the same features.
    """

    def __init__(
        self,
        num_measurements: int,
        latent_dim: int = 512,
        width: int = 1024,
        depth: int = 2,
        num_ws: int = 1,
        offset_rank: int = 0,
    ):
        super().__init__()
        if not isinstance(num_ws, int) or num_ws < 1:
            raise ValueError(f"an encoder outputs at least one latent vector, not {num_ws!r}")
        if not isinstance(offset_rank, int) or offset_rank < 0 or (offset_rank and num_ws == 1):
            raise ValueError(f"an offset rank is a count of W+ offset features, not {offset_rank!r}")
        self.num_measurements = num_measurements
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.num_ws = num_ws
        self.offset_rank = offset_rank
        self.net = nn.Sequential(
            nn.LayerNorm(num_measurements),
            nn.Linear(num_measurements, width),
            nn.SiLU(),
            *[ResidualBlock(width) for _ in range(depth)],
            nn.LayerNorm(width),
            nn.Linear(width, latent_dim),
        )
        if num_ws > 1:
            out = nn.Linear(offset_rank or width, num_ws * latent_dim)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.layer_offsets = (
                nn.Sequential(nn.Linear(width, offset_rank, bias=False), out) if offset_rank else out
            )
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    @property
    def latent_space(self) -> str:
        return latent_space_of(self.num_ws)

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """The predicted offset ``(w - w_mean) / w_std`` (what the latent loss compares); W+:
        (..., num_ws, latent_dim)."""
        if self.num_ws == 1:
            return self.net(y)
        features = self.net[:-1](y)
        offsets = self.layer_offsets(features).unflatten(-1, (self.num_ws, self.latent_dim))
        return self.net[-1](features).unsqueeze(-2) + offsets

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_mean + self.latent_std * self.normalised(y)


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
        self.num_ws = first.num_ws
        self.offset_rank = first.offset_rank
        self._stacked, self._stacked_key = [], None  # the inference path's stacked weights, and of what

    def check_members(self) -> None:
        """Members must share their shape and latent normalisation (checked again after loading
        weights, which replace the buffers the constructor saw)."""
        first = self.members[0]
        for member in self.members[1:]:
            if _shape(member) != _shape(first):
                raise ValueError("ensemble members differ in shape")
            if not (
                torch.equal(member.latent_mean, first.latent_mean)
                and torch.equal(member.latent_std, first.latent_std)
            ):
                raise ValueError("ensemble members normalise the latent differently")

    @property
    def latent_space(self) -> str:
        return latent_space_of(self.num_ws)

    @property
    def latent_mean(self) -> torch.Tensor:
        return self.members[0].latent_mean

    @property
    def latent_std(self) -> torch.Tensor:
        return self.members[0].latent_std

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """The members' mean estimate; without gradients all members run at once, each layer one
        batched matrix product over stacked weights (half the time of one member after another at
        one frame), rebuilt whenever a member's weights change or move. W+ members run one after
        another (their offset heads branch off the stacked path)."""
        if torch.is_grad_enabled() or self.num_ws > 1:
            return torch.stack([member.normalised(y) for member in self.members]).mean(0)
        if y.ndim == 1:  # one frame without a batch axis, as a single encoder takes it
            return self.normalised(y[None])[0]
        nets = [member.net for member in self.members]
        key = tuple((p.data_ptr(), p._version) for net in nets for p in net.parameters())
        if self._stacked_key != key:
            self._stacked, self._stacked_key = stacked_layers(nets), key
        return run_stacked(self._stacked, y.expand(len(nets), *y.shape)).mean(0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_mean + self.latent_std * self.normalised(y)


def _shape(encoder: MeasurementEncoder) -> tuple:
    return (
        encoder.num_measurements,
        encoder.latent_dim,
        encoder.width,
        encoder.depth,
        encoder.num_ws,
        encoder.offset_rank,
    )


class StackedLinear:
    """K members' ``nn.Linear`` at one position: (K, B, in) -> (K, B, out) in one batched product."""

    def __init__(self, modules):
        self.weight = torch.stack([m.weight.detach() for m in modules]).transpose(1, 2).contiguous()
        self.bias = torch.stack([m.bias.detach() for m in modules])[:, None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def stacked_layers(nets, linear=StackedLinear) -> list[tuple]:
    """The members' layers, position by position, with their weights stacked along a first axis;
    ``linear`` builds what runs each position's ``nn.Linear`` modules."""
    layers = []
    for modules in zip(*nets, strict=True):
        first = modules[0]
        if isinstance(first, nn.LayerNorm):
            weight, bias = (
                torch.stack([getattr(m, n).detach() for m in modules])[:, None] for n in ("weight", "bias")
            )
            layers.append(("norm", first.normalized_shape, first.eps, weight, bias))
        elif isinstance(first, nn.Linear):
            layers.append(("linear", linear(modules)))
        elif isinstance(first, nn.SiLU):
            layers.append(("silu",))
        elif isinstance(first, ResidualBlock):
            layers.append(("residual", stacked_layers([m.net for m in modules], linear)))
        else:
            raise TypeError(f"no stacked form of {type(first).__name__}")
    return layers


def run_stacked(layers: list[tuple], x: torch.Tensor) -> torch.Tensor:
    """(K, B, F) through K members' stacked layers at once."""
    for kind, *parts in layers:
        if kind == "norm":
            shape, eps, weight, bias = parts
            x = nn.functional.layer_norm(x, shape, eps=eps) * weight + bias
        elif kind == "linear":
            x = parts[0](x)
        elif kind == "silu":
            x = nn.functional.silu(x)
        else:
            x = x + run_stacked(parts[0], x)
    return x


def build_encoder(
    num_measurements: int,
    latent_dim: int,
    width: int,
    depth: int,
    members: int = 1,
    num_ws: int = 1,
    offset_rank: int = 0,
) -> MeasurementEncoder | EncoderEnsemble:
    """An untrained encoder of a model file's architecture (one network, or an ensemble of them)."""
    if not isinstance(members, int) or members < 1:
        raise ValueError(f"an encoder has at least one member, not {members!r}")
    networks = [
        MeasurementEncoder(num_measurements, latent_dim, width, depth, num_ws, offset_rank)
        for _ in range(members)
    ]
    return networks[0] if members == 1 else EncoderEnsemble(networks)


def _members(encoder: MeasurementEncoder | EncoderEnsemble) -> list[MeasurementEncoder]:
    return list(encoder.members) if isinstance(encoder, EncoderEnsemble) else [encoder]


def _rebuilt(encoder, num_ws: int, offset_rank: int) -> MeasurementEncoder | EncoderEnsemble:
    """An untrained encoder shaped like ``encoder`` but for its offset head."""
    return build_encoder(
        encoder.num_measurements,
        encoder.latent_dim,
        encoder.width,
        encoder.depth,
        len(_members(encoder)),
        num_ws,
        offset_rank,
    ).to(encoder.latent_mean.device)


def _trunk_state(member: MeasurementEncoder) -> dict:
    return {k: v for k, v in member.state_dict().items() if not k.startswith("layer_offsets.")}


def with_layer_offsets(
    encoder: MeasurementEncoder | EncoderEnsemble, num_ws: int, offset_rank: int = 0
) -> MeasurementEncoder | EncoderEnsemble:
    """A W+ encoder of ``num_ws`` layers that starts as ``encoder`` (its weights, zero per-layer
    offsets, through ``offset_rank`` features when given): it decodes the same faces until training
    moves the offsets. An encoder that already has such a head keeps it."""
    widened = _rebuilt(encoder, num_ws, offset_rank)
    for target, source in zip(_members(widened), _members(encoder), strict=True):
        missing, _ = target.load_state_dict(_trunk_state(source), strict=False)
        if any(not k.startswith("layer_offsets.") for k in missing):
            raise ValueError(f"cannot widen the encoder: {missing} missing")
        if (source.num_ws, source.offset_rank) == (num_ws, offset_rank):
            target.load_state_dict(source.state_dict())
    return widened


def low_rank_offsets(
    encoder: MeasurementEncoder | EncoderEnsemble, rank: int
) -> MeasurementEncoder | EncoderEnsemble:
    """``encoder`` with each full W+ offset head replaced by its best rank-``rank`` factorisation
    (truncated SVD of the head's matrix; the bias stays): the same trunk, a smaller file."""
    if encoder.num_ws == 1 or encoder.offset_rank:
        raise ValueError("only a full W+ offset head can be factorised")
    if not 0 < rank < min(encoder.width, encoder.num_ws * encoder.latent_dim):
        raise ValueError(f"rank {rank} does not shrink a {encoder.width}-feature offset head")
    factorised = _rebuilt(encoder, encoder.num_ws, rank)
    for target, source in zip(_members(factorised), _members(encoder), strict=True):
        target.load_state_dict(_trunk_state(source), strict=False)
        u, s, vh = torch.linalg.svd(source.layer_offsets.weight.detach().float(), full_matrices=False)
        root = s[:rank].sqrt()
        with torch.no_grad():
            target.layer_offsets[0].weight.copy_(root[:, None] * vh[:rank])
            target.layer_offsets[1].weight.copy_(u[:, :rank] * root)
            target.layer_offsets[1].bias.copy_(source.layer_offsets.bias.detach())
    return factorised


class BinaryPatterns(nn.Module):
    """Learnable DMD patterns: weights in [0, 1] shown as round(clamp(w)) with a straight-through gradient."""

    def __init__(self, num_patterns: int, resolution: int, generator: torch.Generator | None = None):
        super().__init__()
        init = 0.5 + 0.05 * torch.randn(num_patterns, resolution * resolution, generator=generator)
        self.weight = nn.Parameter(init)
        self.resolution = resolution

    @classmethod
    def from_binary(cls, matrix: torch.Tensor, margin: float) -> "BinaryPatterns":
        """Patterns that show the binary ``matrix`` (P, H·W) of square patterns, their weights ``margin``
        from the 0.5 threshold: a pixel flips once training has moved it that far."""
        if not 0 < margin <= 0.5:
            raise ValueError(f"a margin lies in (0, 0.5], not {margin!r}")
        side = math.isqrt(matrix.shape[1])
        patterns = cls(matrix.shape[0], side)
        with torch.no_grad():
            patterns.weight.copy_(0.5 + margin * (2.0 * matrix.float() - 1.0))
        return patterns

    def forward(self) -> torch.Tensor:
        clamped = self.weight.clamp(0.0, 1.0)
        return (torch.round(clamped) - clamped).detach() + clamped

    def binary(self) -> torch.Tensor:
        return self.weight.detach().clamp(0.0, 1.0).round().to(torch.bool)
