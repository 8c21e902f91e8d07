"""Differentiable PyTorch execution of an OpenVINO model, with the weights read from the IR.

Gives image losses a gradient through the frozen generator without a second copy of its architecture:
whatever sub-graph mobilestylegan_ir builds (exact or fast 256x256 exit, W+ input) runs op by op in torch.
Covers the op types of that graph only; anything else raises NotImplementedError at construction.
"""

from collections.abc import Callable

import numpy as np
import openvino as ov
import torch
import torch.nn.functional as F  # noqa: N812


def _attrs(node) -> dict:
    return node.get_attributes()


def _conv_padding(attrs: dict) -> list[int]:
    if attrs.get("auto_pad", "explicit") != "explicit" or attrs["pads_begin"] != attrs["pads_end"]:
        raise NotImplementedError(f"asymmetric/auto padding {attrs}")
    return attrs["pads_begin"]


def _convolution(node, x, w):
    a = _attrs(node)
    return F.conv2d(x, w, stride=a["strides"], padding=_conv_padding(a), dilation=a["dilations"])


def _group_convolution(node, x, w):
    a = _attrs(node)
    groups = w.shape[0]
    return F.conv2d(
        x,
        w.flatten(0, 1),
        stride=a["strides"],
        padding=_conv_padding(a),
        dilation=a["dilations"],
        groups=groups,
    )


def _group_conv_transpose(node, x, w):
    a = _attrs(node)
    groups, _, _, kh, kw = w.shape
    if list(a["strides"]) == [kh, kw] and _conv_padding(a) == [0, 0] and w.shape[1:3] == (1, 1):
        # Depthwise with stride == kernel (the Haar IDWT steps): each pixel becomes a kh x kw block.
        n, c, h, width = x.shape
        blocks = x[:, :, :, None, :, None] * w[:, 0, 0].reshape(1, groups, 1, kh, 1, kw)
        return blocks.reshape(n, c, h * kh, width * kw)
    return F.conv_transpose2d(
        x,
        w.flatten(0, 1),
        stride=a["strides"],
        padding=_conv_padding(a),
        output_padding=a["output_padding"],
        groups=groups,
        dilation=a["dilations"],
    )


def _matmul(node, a, b):
    attrs = _attrs(node)
    if attrs["transpose_a"]:
        a = a.transpose(-1, -2)
    if attrs["transpose_b"]:
        b = b.transpose(-1, -2)
    return a @ b


def _prelu(node, x, slope):
    return F.prelu(x, slope.reshape(-1))


def _gather(node, x, index, axis):
    if _attrs(node)["batch_dims"] != 0:
        raise NotImplementedError("Gather with batch_dims")
    axis = int(axis) % x.dim()
    flat = x.index_select(axis, index.reshape(-1).long())
    return flat.reshape((*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]))


def _reshape(node, x, shape):
    shape = [int(s) for s in shape]
    if _attrs(node)["special_zero"]:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(axes, rank: int) -> list[int]:
    return sorted(int(a) % rank for a in axes.reshape(-1))


def _unsqueeze(node, x, axes):
    for axis in _axes(axes, x.dim() + axes.numel()):
        x = x.unsqueeze(axis)
    return x


def _squeeze(node, x, axes):
    for axis in reversed(_axes(axes, x.dim())):
        x = x.squeeze(axis)
    return x


def _slice(node, x, start, stop, step, axes):
    index = [slice(None)] * x.dim()
    for b, e, s, a in zip(start.tolist(), stop.tolist(), step.tolist(), axes.tolist(), strict=True):
        index[a] = slice(b, min(e, x.shape[a]), s)
    return x[tuple(index)]


def _broadcast(node, x, shape):
    shape = [int(s) for s in shape]
    if _attrs(node)["mode"] == "bidirectional":
        return x * torch.ones(shape, dtype=x.dtype)
    return x.expand(shape)


def _avg_pool(node, x):
    a = _attrs(node)
    if a["pads_begin"] != [0, 0] or a["pads_end"] != [0, 0]:
        raise NotImplementedError("padded AvgPool")
    return F.avg_pool2d(x, a["kernel"], a["strides"])


_OPS: dict[str, Callable] = {
    "Add": lambda node, a, b: a + b,
    "Multiply": lambda node, a, b: a * b,
    "MatMul": _matmul,
    "Convolution": _convolution,
    "GroupConvolution": _group_convolution,
    "GroupConvolutionBackpropData": _group_conv_transpose,
    "PRelu": _prelu,
    "Gather": _gather,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Concat": lambda node, *xs: torch.cat(xs, dim=_attrs(node)["axis"]),
    "ShapeOf": lambda node, x: torch.tensor(x.shape, dtype=torch.int64),
    "Broadcast": _broadcast,
    "Tile": lambda node, x, repeats: x.repeat(*[int(r) for r in repeats]),
    "AvgPool": _avg_pool,
}


class OpenVINOModule(torch.nn.Module):
    """A single-input, single-output OpenVINO model as a frozen torch module (constants are buffers)."""

    def __init__(self, model: ov.Model):
        super().__init__()
        (parameter,) = model.get_parameters()
        (result,) = model.get_results()
        self._input = _key(parameter.output(0))
        self._output = _key(result.input_value(0))
        self._constants: dict[str, str] = {}
        self._steps: list[tuple[str, Callable, object, list[str], list[str]]] = []
        for node in model.get_ordered_ops():
            kind = node.get_type_name()
            if kind in ("Parameter", "Result"):
                continue
            if kind == "Constant":
                data = np.array(node.get_data())
                buffer = f"c{len(self._constants)}"
                dtype = np.float32 if data.dtype.kind == "f" else np.int64
                self.register_buffer(buffer, torch.from_numpy(data.astype(dtype)), persistent=False)
                self._constants[_key(node.output(0))] = buffer
            elif kind in _OPS and node.get_output_size() == 1:
                inputs = [_key(v) for v in node.input_values()]
                self._steps.append((_key(node.output(0)), _OPS[kind], node, inputs, []))
            else:
                raise NotImplementedError(f"OpenVINO op {kind} ({node.get_friendly_name()})")
        self._free_after_last_use()

    def _free_after_last_use(self) -> None:
        """Record, per step, the activations no later step reads, so forward drops them (memory)."""
        seen = {self._output}
        for _, _, _, inputs, release in reversed(self._steps):
            release.extend(k for k in dict.fromkeys(inputs) if k not in seen and k not in self._constants)
            seen.update(inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {key: getattr(self, buffer) for key, buffer in self._constants.items()}
        values[self._input] = x
        for key, fn, node, inputs, release in self._steps:
            values[key] = fn(node, *(values[k] for k in inputs))
            for k in release:
                del values[k]
        return values[self._output]


def _key(output) -> str:
    return f"{output.get_node().get_name()}:{output.get_index()}"
