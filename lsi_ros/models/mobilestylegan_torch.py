"""MobileStyleGAN-FFHQ's mapping and synthesis networks as plain torch modules with resident weights.

``ov_torch.OpenVINOModule`` interprets the IR op by op; this is the same network written as layers, so
the weights live on the device once, the elementwise ops between convolutions fuse under
``torch.compile``, and the forward pass has no host round trips (CUDA-graph ready). The weights come from
a converted graph (``OpenVINOModule.graph()``), read by their place in the network rather than by node
name, so the IR and the torch export (``MobileStyleGAN.export_torch``) load alike.

The synthesis network, as the 256² IR of ``mobilestylegan_ir`` runs it:

- 4x4 learnt constant -> modulated 3x3 conv (512 channels) -> 7 blocks -> to-image head (LL band only).
- Block: the input's channels are wavelet bands (LL, then 3 detail bands per channel) scaled by a
  style ("up"), a Haar IDWT doubles the resolution and quarters the channels, then two styled
  depthwise-separable convs (style scale, 3x3 depthwise, 1x1 pointwise with the demodulation folded
  in, fixed noise map, bias, leaky ReLU).
- Each of the 23 styles is an affine map of one W+ vector (the IR's order: conv, then up, conv1,
  conv2 per block, then the head).

Exits as in ``mobilestylegan_ir``: ``exact`` pools the 512² LL band to 256² (/2), ``fast`` runs the last
block at 256² on half the LL band of its input with 2x2-averaged noise maps.

Rewrites that change nothing but float rounding: the channels feeding each IDWT are reordered so each
output channel's four bands are adjacent (the IDWT becomes a 4x4 mix and a pixel shuffle), the first
conv's style of a block is folded into the block's "up" style (both are per-channel scales around a
per-channel linear map), style scales are folded into the affine weights, and the head keeps only its
LL rows with the final /2 folded in.
Research use only: the weights derive from NVIDIA StyleGAN2 / FFHQ (non-commercial licences).
"""

import torch
import torch.nn.functional as F  # noqa: N812

from lsi_ros.models.ov_torch import Graph

EXITS = ("exact", "fast")


class _Reader:
    """Walks a converted graph backwards from a value to the constants that produced it."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def op(self, key: str, kind: str) -> tuple[dict, list[str]]:
        found = self.graph.ops.get(key)
        if found is None or found[0] != kind:
            raise ValueError(f"unexpected MobileStyleGAN graph: {key} is {found and found[0]}, not {kind}")
        return found[1], found[2]

    def kind(self, key: str) -> str | None:
        found = self.graph.ops.get(key)
        return found[0] if found else None

    def const(self, key: str) -> torch.Tensor | None:
        return self.graph.constants.get(key)

    def split(self, key: str, kind: str) -> tuple[str, torch.Tensor, dict]:
        """An op with one constant input: (the other input, the constant, the attributes)."""
        attrs, inputs = self.op(key, kind)
        values = [k for k in inputs if self.const(k) is None]
        constants = [self.const(k) for k in inputs if self.const(k) is not None]
        if len(values) != 1 or len(constants) != 1:
            raise ValueError(f"unexpected MobileStyleGAN graph: {kind} {key} has inputs {inputs}")
        return values[0], constants[0], attrs

    def affine(self, key: str) -> tuple[int, torch.Tensor, torch.Tensor]:
        """A style: (W+ index, weight, bias) of ``scale · (W @ w[index] + b)``, the scale folded in."""
        scale = 1.0
        if self.kind(key) == "Multiply":
            key, value, _ = self.split(key, "Multiply")
            scale = float(value)
        _, (key, _) = self.op(key, "Reshape")
        key, bias, _ = self.split(key, "Add")
        key, weight, attrs = self.split(key, "MatMul")
        if attrs["transpose_a"] or not attrs["transpose_b"]:
            raise ValueError(f"unexpected MobileStyleGAN graph: style MatMul {attrs}")
        _, (styles, index, axis) = self.op(key, "Gather")
        if styles != self.graph.input or int(self.const(axis)) != 1:
            raise ValueError(f"unexpected MobileStyleGAN graph: style {key} is not a W+ row")
        return int(self.const(index)), scale * weight, scale * bias.reshape(-1)

    def modulated(self, key: str) -> tuple[tuple, str]:
        """A style-scaled activation ``style · x``: (the style's affine, the key of x)."""
        _, inputs = self.op(key, "Multiply")
        styles = [k for k in inputs if self.kind(k) in ("Reshape", "Multiply")]
        if len(inputs) != 2 or len(styles) != 1:
            raise ValueError(f"unexpected MobileStyleGAN graph: modulation {key} has inputs {inputs}")
        (x,) = [k for k in inputs if k != styles[0]]
        return self.affine(styles[0]), x

    def styled_conv(self, key: str) -> tuple[dict, str]:
        """From a leaky ReLU back to its conv's input: the layer's tensors and the key of its input."""
        key, slope, _ = self.split(key, "PRelu")
        key, first, _ = self.split(key, "Add")
        key, second, _ = self.split(key, "Add")
        noise, bias = (first, second) if first.shape[1] == 1 else (second, first)
        layer = {"slope": float(slope), "noise": noise, "bias": bias.reshape(-1)}
        key, layer["pointwise"], attrs = self.split(key, "Convolution")
        if self.kind(key) == "GroupConvolution":
            key, depthwise, attrs = self.split(key, "GroupConvolution")
            layer["depthwise"] = depthwise.flatten(0, 1)
        layer["padding"] = attrs["pads_begin"][0]
        layer["style"], key = self.modulated(key)
        return layer, key

    def idwt(self, key: str) -> tuple[torch.Tensor, str]:
        """A Haar IDWT (per band: row then column transposed convs, summed): its (4 sub-pixels x 4 bands)
        mix, bands ordered LL then the 3 details, and the key of the banded input."""
        found, sources = [], set()
        for column in self.op(key, "Add")[1]:
            column_in, column_taps, attrs = self.split(column, "GroupConvolutionBackpropData")
            if list(attrs["strides"]) != [1, 2]:
                raise ValueError(f"unexpected MobileStyleGAN graph: IDWT column step {attrs}")
            for row in self.op(column_in, "Add")[1]:
                row_in, row_taps, attrs = self.split(row, "GroupConvolutionBackpropData")
                if list(attrs["strides"]) != [2, 1]:
                    raise ValueError(f"unexpected MobileStyleGAN graph: IDWT row step {attrs}")
                _, (source, start, _, step, axis) = self.op(row_in, "Slice")
                if int(self.const(axis)) != 1:
                    raise ValueError(f"unexpected MobileStyleGAN graph: band slice {row_in}")
                rows, columns = row_taps.reshape(-1, 2), column_taps.reshape(-1, 2)
                if not all(torch.equal(taps, taps[:1].expand_as(taps)) for taps in (rows, columns)):
                    raise ValueError("unexpected MobileStyleGAN graph: IDWT taps differ between channels")
                mix = rows[0][:, None] * columns[0][None, :]  # (row sub-pixel, column sub-pixel)
                found.append((int(self.const(step)), int(self.const(start)), mix.reshape(4)))
                sources.add(source)
        if len(found) != 4 or len(sources) != 1 or sorted(s for s, _, _ in found) != [1, 3, 3, 3]:
            raise ValueError(f"unexpected MobileStyleGAN graph: IDWT {key} bands {found}")
        found.sort(key=lambda band: band[:2])
        return torch.stack([mix for _, _, mix in found], dim=1), sources.pop()


def _band_order(channels: int) -> torch.Tensor:
    """Channel order putting each IDWT output channel's bands (LL c, details q+3c..q+3c+2) together."""
    q = channels // 4
    order = [[c, q + 3 * c, q + 3 * c + 1, q + 3 * c + 2] for c in range(q)]
    return torch.tensor(order).reshape(-1)


class SynthesisNetwork(torch.nn.Module):
    """W+ (N, 23, 512) -> image (N, 3, 256, 256) in about [-1, 1]; the IR's numbers to float rounding."""

    def __init__(self, graph: Graph, early_exit: str = "exact"):
        super().__init__()
        if early_exit not in EXITS:
            raise ValueError(f"early_exit must be one of {EXITS}, got {early_exit!r}")
        self.early_exit = early_exit
        reader = _Reader(graph)
        key, half, _ = reader.split(graph.output, "Multiply")
        _, (key,) = reader.op(key, "AvgPool")
        _, (key, start, stop, step, _) = reader.op(key, "Slice")
        bands = slice(int(reader.const(start)), int(reader.const(stop)), int(reader.const(step)))
        key, head_bias, _ = reader.split(key, "Add")
        key, head_weight, _ = reader.split(key, "Convolution")
        head_style, key = reader.modulated(key)
        convs, ups, mixes = [], [], []
        while reader.kind(key) == "PRelu":
            layer, key = reader.styled_conv(key)
            convs.append(layer)
            if reader.kind(key) == "Add":
                mix, key = reader.idwt(key)
                style, key = reader.modulated(key)
                ups.append(style)
                mixes.append(mix)
        _, (key, _) = reader.op(key, "Tile")
        _, (constant, _) = reader.op(key, "Broadcast")
        convs, ups = convs[::-1], ups[::-1]
        if len(convs) != 2 * len(ups) + 1 or any(not torch.equal(m, mixes[0]) for m in mixes):
            raise ValueError(f"unexpected MobileStyleGAN graph: {len(convs)} convs, {len(ups)} IDWTs")

        styles = [convs[0]["style"]]
        for block, up in enumerate(ups):
            styles += [up, convs[1 + 2 * block]["style"], convs[2 + 2 * block]["style"]]
        styles.append(head_style)
        if sorted(index for index, _, _ in styles) != list(range(len(styles))):
            raise ValueError("unexpected MobileStyleGAN graph: styles do not read W+ rows 0..n-1 once each")
        self.num_ws = len(styles)
        width = max(weight.shape[0] for _, weight, _ in styles)
        self.style_dim = styles[0][1].shape[1]
        affine_weight = torch.zeros(self.num_ws, width, self.style_dim)
        affine_bias = torch.zeros(self.num_ws, width)
        self.widths = [0] * self.num_ws
        # Style slot of each layer in forward order: conv, then (up, conv1, conv2) per block, then head.
        self.slots = [index for index, _, _ in styles]
        for (index, weight, bias), permute in zip(
            styles, [False] + [True, False, False] * len(ups) + [False], strict=True
        ):
            if permute:
                order = _band_order(weight.shape[0])
                weight, bias = weight[order], bias[order]
            affine_weight[index, : weight.shape[0]] = weight
            affine_bias[index, : weight.shape[0]] = bias
            self.widths[index] = weight.shape[0]
        self.register_buffer("affine_weight", affine_weight.transpose(1, 2).contiguous())
        self.register_buffer("affine_bias", affine_bias)
        self.register_buffer("constant", reader.const(constant).clone())
        # Band b of a group -> sub-pixel (a, c) of its output channel: (4 bands, 1, 2, 2).
        self.register_buffer("idwt_kernel", mixes[0].t().reshape(4, 1, 2, 2).contiguous())

        self.slopes, self.paddings = [], []
        for number, layer in enumerate(convs):
            feeds_idwt = number % 2 == 0 and number < len(convs) - 1
            order = _band_order(layer["pointwise"].shape[0]) if feeds_idwt else slice(None)
            noise = layer["noise"]
            if early_exit == "fast" and number >= len(convs) - 2:
                noise = F.avg_pool2d(noise, 2)
            self.register_buffer(f"pointwise{number}", layer["pointwise"][order].contiguous())
            self.register_buffer(f"bias{number}", layer["bias"][order].contiguous())
            self.register_buffer(f"noise{number}", noise.contiguous())
            if "depthwise" in layer:
                self.register_buffer(f"depthwise{number}", layer["depthwise"].contiguous())
            self.slopes.append(layer["slope"])
            self.paddings.append(layer["padding"])
        # The head: only the LL rows are read, and the output is LL / 2 (pooled for the exact exit).
        self.register_buffer("head_weight", (float(half) * head_weight[bands]).contiguous())
        self.register_buffer("head_bias", (float(half) * head_bias.reshape(-1)[bands]).contiguous())
        self.num_blocks = len(ups)
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPU (3x) and GPU tensor cores

    def _styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's style (N, channels), in forward order, from one batched matmul."""
        s = torch.baddbmm(self.affine_bias[:, None], w_plus.transpose(0, 1), self.affine_weight)
        return [s[slot, :, : self.widths[slot]] for slot in self.slots]

    def _conv(self, number: int, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        """Styled conv: style scale (None: already applied), (depthwise 3x3 +) pointwise conv, noise,
        bias, leaky ReLU."""
        if style is not None:
            x = x * style[:, :, None, None]
        pointwise = getattr(self, f"pointwise{number}")
        if number > 0:
            depthwise = getattr(self, f"depthwise{number}")
            x = F.conv2d(x, depthwise, padding=self.paddings[number], groups=depthwise.shape[0])
            x = F.conv2d(x, pointwise, getattr(self, f"bias{number}"))
        else:
            x = F.conv2d(x, pointwise, getattr(self, f"bias{number}"), padding=self.paddings[number])
        # In place on the conv's fresh output: fewer passes over memory, and autograd-safe (the conv's
        # backward does not read its output; the ReLU's reads its own).
        return F.leaky_relu(x.add_(getattr(self, f"noise{number}")), self.slopes[number], inplace=True)

    def _idwt(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4q, H, W), channels grouped per output channel as (LL, 3 details) -> (N, q, 2H, 2W): a
        transposed conv with stride = kernel = 2 in groups of four channels (one op, any layout)."""
        kernel = self.idwt_kernel.repeat(x.shape[1] // 4, 1, 1, 1)
        return F.conv_transpose2d(x, kernel, stride=2, groups=x.shape[1] // 4)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        styles = self._styles(w_plus)
        x = self.constant.expand(len(w_plus), -1, -1, -1)
        x = self._conv(0, x, styles[0])
        last = self.num_blocks - 1
        for block in range(self.num_blocks):
            up, first, second = styles[1 + 3 * block : 4 + 3 * block]
            # The first conv's style scales each IDWT output channel: fold it into its four bands.
            up = up * first.repeat_interleave(4, dim=1)
            if block == last and self.early_exit == "fast":
                x = x[:, ::4] * (0.5 * up[:, ::4, None, None])  # half the LL band at the input's size
            else:
                x = self._idwt(x * up[:, :, None, None])
            x = self._conv(1 + 2 * block, x, None)
            x = self._conv(2 + 2 * block, x, second)
        x = F.conv2d(x * styles[-1][:, :, None, None], self.head_weight, self.head_bias)
        return F.avg_pool2d(x, 2) if self.early_exit == "exact" else x


class MappingNetwork(torch.nn.Module):
    """z (N, 512) -> w (N, 512): pixel norm, then linear layers with leaky ReLU and a gain."""

    def __init__(self, graph: Graph):
        super().__init__()
        reader = _Reader(graph)
        key, layers = graph.output, []
        while reader.kind(key) == "Multiply" and any(reader.kind(k) == "PRelu" for k in graph.ops[key][2]):
            prelu, gain, _ = reader.split(key, "Multiply")
            add, slope, _ = reader.split(prelu, "PRelu")
            matmul, bias, _ = reader.split(add, "Add")
            key, weight, attrs = reader.split(matmul, "MatMul")
            if attrs["transpose_a"] or not attrs["transpose_b"]:
                raise ValueError(f"unexpected MobileStyleGAN mapping: MatMul {attrs}")
            layers.append((weight, bias.reshape(-1), float(slope), float(gain)))
        eps = [
            float(reader.split(k, "Add")[1])
            for k, (kind, _, inputs) in graph.ops.items()
            if kind == "Add" and any(reader.kind(i) == "ReduceMean" for i in inputs)
        ]
        if not layers or len(eps) != 1:
            raise ValueError("unexpected MobileStyleGAN mapping: no pixel norm or no layers")
        self.eps = eps[0]
        self.slopes, self.gains = [], []
        for number, (weight, bias, slope, gain) in enumerate(layers[::-1]):
            self.register_buffer(f"weight{number}", weight.contiguous())
            self.register_buffer(f"bias{number}", bias.contiguous())
            self.slopes.append(slope)
            self.gains.append(gain)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + self.eps)
        for number, (slope, gain) in enumerate(zip(self.slopes, self.gains, strict=True)):
            x = F.linear(x, getattr(self, f"weight{number}"), getattr(self, f"bias{number}"))
            x = F.leaky_relu(x, slope) * gain
        return x
