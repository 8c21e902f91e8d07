"""Weight-only int8 inference for the encoder on the CPU: what ``latent_encoder`` runs frames with.

At one frame an encoder reads every weight once and does little arithmetic with it, so its latency is
the memory traffic of its matrices: the eight W+ members of m128-real read 25 MB of fp32 weights per
frame. ``Int8Encoder`` holds each matrix as int8 with one fp32 scale per output row (a model file
stored with ``weights: int8`` holds exactly these; an fp16 file's matrices are rounded so on loading)
and runs it through torch's int8 weight kernel (``aten._weight_int8pack_mm``), a quarter of the
bytes. That kernel takes bf16 activations, so each product's input and output are rounded to bf16;
the row scales, biases, norms and the members' mean stay fp32. The latent moves by far less than its
error (``bench/core.py`` measures both the time and the difference per shipped model). Inference only.
"""

import torch
from torch import nn

from lsi_ros.models.checkpoint import LsiModel, quantised_rows
from lsi_ros.models.encoder import EncoderEnsemble, MeasurementEncoder, run_stacked, stacked_layers

# The kernel reads each row in whole vectors with no tail: an inner size that is not a multiple of the
# vector (16 floats with AVX-512) reads past the row, giving garbage or a crash. Such layers stay fp32.
INNER_MULTIPLE = 64


def int8_kernels_available() -> bool:
    """Whether this torch build runs int8 weight products on the CPU."""
    try:
        x = torch.ones(1, INNER_MULTIPLE, dtype=torch.bfloat16)
        q = torch.ones(1, INNER_MULTIPLE, dtype=torch.int8)
        torch.ops.aten._weight_int8pack_mm(x, q, torch.ones(1, dtype=torch.bfloat16))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


class Int8Linear:
    """An ``nn.Linear`` (one member's) as int8 rows and fp32 row scales: ``x @ (q · scale).T + b``;
    fp32 as loaded where its input size is not a multiple of ``INNER_MULTIPLE``."""

    def __init__(self, modules):
        (module,) = modules
        self.bias = None if module.bias is None else module.bias.detach().float()
        if module.in_features % INNER_MULTIPLE:
            self.q, self.weight = None, module.weight.detach().float()
            return
        self.q, self.scale = quantised_rows(module.weight)
        self.unit_scales = torch.ones(len(self.scale), dtype=torch.bfloat16)  # scaled after, in fp32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.q is None:
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.q, self.unit_scales).float()
        y = y * self.scale if self.bias is None else torch.addcmul(self.bias, y, self.scale)
        return y.reshape(*x.shape[:-1], y.shape[-1])


class Int8Encoder(nn.Module):
    """An encoder (one network or an ensemble) run through int8 weight kernels; same call as the
    encoder it was made from: measurements (B, M) or (M,) -> latent (B, D) or W+ (B, L, D)."""

    def __init__(self, encoder: MeasurementEncoder | EncoderEnsemble):
        super().__init__()
        device = encoder.latent_mean.device
        if device.type != "cpu":
            raise ValueError(f"int8 weight kernels run on the CPU; the encoder is on {device}")
        members = list(encoder.members) if isinstance(encoder, EncoderEnsemble) else [encoder]
        self.num_measurements = encoder.num_measurements
        self.latent_dim = encoder.latent_dim
        self.num_ws = encoder.num_ws
        self.latent_space = encoder.latent_space
        self.register_buffer("latent_mean", encoder.latent_mean.detach().float())
        self.register_buffer("latent_std", encoder.latent_std.detach().float())
        self._members = []
        for member in members:
            offsets = []
            if member.num_ws > 1:
                heads = member.layer_offsets
                offsets = [Int8Linear([m]) for m in (heads if isinstance(heads, nn.Sequential) else [heads])]
            trunk = stacked_layers([member.net[:-1]], linear=Int8Linear)
            self._members.append((trunk, Int8Linear([member.net[-1]]), offsets))
        self.int8_matrices = sum(linear.q is not None for linear in self.linears())

    def linears(self):
        """Every member's ``Int8Linear`` layers, in the order they run."""

        def walk(layers):
            for kind, *parts in layers:
                if kind == "residual":
                    yield from walk(parts[0])
                elif kind == "linear":
                    yield parts[0]

        for trunk, last, offsets in self._members:
            yield from walk(trunk)
            yield last
            yield from offsets

    @torch.no_grad()
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 1:
            return self.forward(y[None])[0]
        total = 0.0
        for trunk, last, offsets in self._members:
            features = run_stacked(trunk, y.float()[None])[0]
            estimate = last(features)
            if offsets:
                offset = features
                for layer in offsets:
                    offset = layer(offset)
                estimate = estimate.unsqueeze(-2) + offset.unflatten(-1, (self.num_ws, self.latent_dim))
            total = total + estimate
        return self.latent_mean + self.latent_std * (total / len(self._members))


def inference_encoder(model: LsiModel, int8_kernels: bool = True) -> nn.Module:
    """What runs the model's frames: ``Int8Encoder`` on the CPU when ``int8_kernels`` and this torch has
    the kernel (and some matrix is of a size it takes), else the fp32 encoder it was loaded as."""
    on_cpu = model.encoder.latent_mean.device.type == "cpu"
    if not (int8_kernels and on_cpu and int8_kernels_available()):
        return model.encoder
    int8 = Int8Encoder(model.encoder)
    return int8 if int8.int8_matrices else model.encoder  # no matrix the kernel takes: fp32 as loaded
