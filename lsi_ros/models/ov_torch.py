"""Differentiable PyTorch execution of an OpenVINO model, with the weights read from the IR.

Whatever sub-graph mobilestylegan_ir builds (exact or fast 256x256 exit, W+ input) runs op by op in
torch: the reference the native network (mobilestylegan_torch) is checked against, and the source of
its weights (``graph()``). Covers the op types of that graph (and of the mapping network) only; anything
else raises NotImplementedError at construction.

A converted graph saves to one safetensors file (constants as tensors, the op list as JSON metadata)
and loads back without OpenVINO: what a GPU machine with torch alone builds the native network from.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file, save_file


def _conv_padding(attrs: dict) -> list[int]:
    if attrs.get("auto_pad", "explicit") != "explicit" or attrs["pads_begin"] != attrs["pads_end"]:
        raise NotImplementedError(f"asymmetric/auto padding {attrs}")
    return attrs["pads_begin"]


def _convolution(a, x, w):
    return F.conv2d(x, w, stride=a["strides"], padding=_conv_padding(a), dilation=a["dilations"])


def _group_convolution(a, x, w):
    groups = w.shape[0]
    return F.conv2d(
        x,
        w.flatten(0, 1),
        stride=a["strides"],
        padding=_conv_padding(a),
        dilation=a["dilations"],
        groups=groups,
    )


def _group_conv_transpose(a, x, w):
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


def _matmul(attrs, x, y):
    if attrs["transpose_a"]:
        x = x.transpose(-1, -2)
    if attrs["transpose_b"]:
        y = y.transpose(-1, -2)
    return x @ y


def _prelu(a, x, slope):
    return F.prelu(x, slope.reshape(-1))


def _gather(a, x, index, axis):
    if a["batch_dims"] != 0:
        raise NotImplementedError("Gather with batch_dims")
    axis = int(axis) % x.dim()
    flat = x.index_select(axis, index.reshape(-1).long())
    return flat.reshape((*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]))


def _reshape(a, x, shape):
    shape = [int(s) for s in shape]
    if a["special_zero"]:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(axes, rank: int) -> list[int]:
    return sorted(int(a) % rank for a in axes.reshape(-1))


def _unsqueeze(a, x, axes):
    for axis in _axes(axes, x.dim() + axes.numel()):
        x = x.unsqueeze(axis)
    return x


def _squeeze(a, x, axes):
    for axis in reversed(_axes(axes, x.dim())):
        x = x.squeeze(axis)
    return x


def _slice(a, x, start, stop, step, axes):
    index = [slice(None)] * x.dim()
    for b, e, s, a in zip(start.tolist(), stop.tolist(), step.tolist(), axes.tolist(), strict=True):
        index[a] = slice(b, min(e, x.shape[a]), s)
    return x[tuple(index)]


def _broadcast(a, x, shape):
    shape = [int(s) for s in shape]
    if a["mode"] == "bidirectional":
        return x * torch.ones(shape, dtype=x.dtype, device=x.device)
    return x.expand(shape)


def _avg_pool(a, x):
    if a["pads_begin"] != [0, 0] or a["pads_end"] != [0, 0]:
        raise NotImplementedError("padded AvgPool")
    return F.avg_pool2d(x, a["kernel"], a["strides"])


_OPS: dict[str, Callable] = {
    "Add": lambda _, x, y: x + y,
    "Multiply": lambda _, x, y: x * y,
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
    "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]),
    "ShapeOf": lambda _, x: torch.tensor(x.shape, dtype=torch.int64, device=x.device),
    "Broadcast": _broadcast,
    "Tile": lambda _, x, repeats: x.repeat(*[int(r) for r in repeats]),
    "AvgPool": _avg_pool,
    "Power": lambda _, x, y: torch.pow(x, y),
    "ReduceMean": lambda attrs, x, axes: x.mean(dim=_axes(axes, x.dim()), keepdim=attrs["keep_dims"]),
}


class Graph(NamedTuple):
    """A converted graph: value keys, each op's (type, attributes, input keys), constants by key."""

    input: str
    output: str
    ops: dict[str, tuple[str, dict, list[str]]]
    constants: dict[str, torch.Tensor]


class OpenVINOModule(torch.nn.Module):
    """A single-input, single-output graph of OpenVINO op types as a frozen torch module (constants are
    buffers). Built from an ``ov.Model`` (``from_openvino``) or from a file ``save`` wrote (``load``)."""

    def __init__(self, input_key: str, output_key: str, constants: dict, steps: list):
        super().__init__()
        self._input, self._output = input_key, output_key
        self._constants: dict[str, str] = {}
        for key, value in constants.items():
            buffer = f"c{len(self._constants)}"
            self.register_buffer(buffer, torch.as_tensor(value), persistent=False)
            self._constants[key] = buffer
        self._graph = [list(step) for step in steps]  # [output key, op type, attributes, input keys]
        self._steps: list[tuple[str, Callable, dict, list[str], list[str]]] = []
        for key, kind, attrs, inputs in self._graph:
            if kind not in _OPS:
                raise NotImplementedError(f"OpenVINO op {kind} ({key})")
            self._steps.append((key, _OPS[kind], attrs, inputs, []))
        self._free_after_last_use()

    @classmethod
    def from_openvino(cls, model) -> "OpenVINOModule":
        (parameter,) = model.get_parameters()
        (result,) = model.get_results()
        constants, steps = {}, []
        for node in model.get_ordered_ops():
            kind = node.get_type_name()
            if kind in ("Parameter", "Result"):
                continue
            if kind == "Constant":
                data = np.array(node.get_data())
                dtype = np.float32 if data.dtype.kind == "f" else np.int64
                constants[_key(node.output(0))] = torch.from_numpy(data.astype(dtype))
            elif kind in _OPS and node.get_output_size() == 1:
                inputs = [_key(v) for v in node.input_values()]
                steps.append((_key(node.output(0)), kind, node.get_attributes(), inputs))
            else:
                raise NotImplementedError(f"OpenVINO op {kind} ({node.get_friendly_name()})")
        return cls(_key(parameter.output(0)), _key(result.input_value(0)), constants, steps)

    def save(self, path, dtype: torch.dtype = torch.float32) -> Path:
        """One safetensors file: the constants (floating ones as ``dtype``; ``load`` widens them to
        float32 again), and the op list as JSON metadata (no pickle)."""
        tensors = {}
        for buffer in self._constants.values():
            value = getattr(self, buffer)
            tensors[buffer] = (value.to(dtype) if value.is_floating_point() else value).contiguous()
        graph = {"input": self._input, "output": self._output, "constants": self._constants}
        graph["steps"] = self._graph
        save_file(tensors, str(path), metadata={"graph": json.dumps(graph)})
        return Path(path)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "OpenVINOModule":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            graph = json.loads((f.metadata() or {})["graph"])
        tensors = load_file(str(path), device=str(device))
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        constants = {key: tensors[buffer] for key, buffer in graph["constants"].items()}
        return cls(graph["input"], graph["output"], constants, graph["steps"])

    def graph(self) -> "Graph":
        """The op list and constants, for code that reads the weights by their place in the network."""
        ops = {key: (kind, attrs, inputs) for key, kind, attrs, inputs in self._graph}
        constants = {key: getattr(self, buffer) for key, buffer in self._constants.items()}
        return Graph(self._input, self._output, ops, constants)

    def _free_after_last_use(self) -> None:
        """Record, per step, the activations no later step reads, so forward drops them (memory)."""
        seen = {self._output}
        for _, _, _, inputs, release in reversed(self._steps):
            release.extend(k for k in dict.fromkeys(inputs) if k not in seen and k not in self._constants)
            seen.update(inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {key: getattr(self, buffer) for key, buffer in self._constants.items()}
        values[self._input] = x
        for key, fn, attrs, inputs, release in self._steps:
            values[key] = fn(attrs, *(values[k] for k in inputs))
            for k in release:
                del values[k]
        return values[self._output]


def _key(output) -> str:
    return f"{output.get_node().get_name()}:{output.get_index()}"
