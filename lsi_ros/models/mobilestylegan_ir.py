"""MobileStyleGAN-FFHQ OpenVINO IR from the `random-face` wheel, rewritten to serve 256x256 images.

The shipped synthesis IR maps one w (N, 512) to a 1024x1024 image. Its intermediate to-RGB heads were
pruned at export, so there is no 256x256 RGB node to cut at. What the graph does have is a Haar wavelet
output: the last block predicts 12 channels at 512x512 (LL + 3 detail bands per colour) and a Haar IDWT
makes the 1024x1024 image. For Haar, LL / 2 is exactly the 2x2 mean of the image, so:

- ``early_exit="exact"``: stop at LL (512x512), 2x2 average pool, / 2. Equals the area-downsampled 1024x1024
  output (to float rounding) and skips the 1024x1024 IDWT.
- ``early_exit="fast"``: also skip the 512x512 block: feed that block the LL half of its input wavelet (the
  2x2 mean of its upsampled input) at 256x256, with its fixed noise maps 2x2-averaged, and read LL / 2 of
  its output. An approximation; docs/generator.md has its PSNR/SSIM and speed.

Two further rewrites keep the graph fast and general: the per-layer style input becomes W+ (N, 23, 512),
one vector per modulation MatMul (plain w is repeated), and the channel VariadicSplit + 5-D reshape that
separate wavelet bands (OpenVINO's reference kernel, about half the run time) become strided Slices.
"""

import importlib.metadata
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops

from lsi_ros.models._packages import wheel_dir

PACKAGE = "random-face"
EXITS = ("exact", "fast")
NUM_WS = 23
_MODULATED_PARTS = ("up", "conv1", "conv2", "to_img")
# Node names in the pinned IR (random-face==2021.7.21.1); _check_shape guards them.
_FINAL_IDWT_LL = "ConvTranspose_775"  # first IDWT step of the output; input 0 is the 3-channel LL band
_LAST_BLOCK_IDWT_LL = "ConvTranspose_668"  # IDWT up-sampling into the 512x512 block; input 0 is LL
_LAST_BLOCK_FIRST_MUL = "Mul_686"  # modulation of the 512x512 block's first conv; input 1 is the IDWT


def data_dir() -> Path:
    return wheel_dir("random_face", PACKAGE) / "data"


def package_version() -> str:
    return importlib.metadata.version(PACKAGE)


def f32_config() -> dict:
    """CPU plugin config: the default bf16 inference on this CPU differs from f32 by up to 0.4."""
    return {ov.properties.hint.inference_precision: ov.Type.f32}


def read_mapping(core: ov.Core) -> ov.Model:
    model = core.read_model(data_dir() / "MappingNetwork.xml")
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 512])})
    return model


def _modulation_order(matmul) -> tuple[int, int]:
    """Order of a modulation MatMul in the network, from its weight name, e.g. m.layers.3.conv2...."""
    parts = matmul.input_value(1).get_node().get_friendly_name().split(".")
    if parts[1] == "conv1":
        return (-1, 0)
    return (int(parts[2]), _MODULATED_PARTS.index(parts[3]))


def _check_shape(output, channels: int, size: int) -> None:
    shape = output.get_partial_shape()
    if shape[1].get_length() != channels or shape[2].get_length() != size:
        raise RuntimeError(
            f"unexpected MobileStyleGAN IR: {output.get_node().get_friendly_name()} is {shape}"
        )


def _use_w_plus(model: ov.Model) -> ov.op.Parameter:
    (style,) = model.get_parameters()
    styles = ops.parameter([-1, NUM_WS, 512], ov.Type.f32, name="styles")
    consumers = list(style.output(0).get_target_inputs())
    matmuls = sorted(
        (c for c in consumers if c.get_node().get_type_name() == "MatMul"),
        key=lambda c: _modulation_order(c.get_node()),
    )
    if len(matmuls) != NUM_WS:
        raise RuntimeError(f"expected {NUM_WS} modulation MatMuls, found {len(matmuls)}")
    for index, target in enumerate(matmuls):
        target.replace_source_output(ops.gather(styles, ops.constant(index), ops.constant(1)).output(0))
    first = ops.gather(styles, ops.constant(0), ops.constant(1)).output(0)
    for target in consumers:
        if target.get_node().get_type_name() != "MatMul":
            target.replace_source_output(first)
    return styles


def _channel_slice(x, start: int, stop: int, step: int):
    def vec(value):
        return ops.constant(np.array([value], np.int64))

    return ops.slice(x, vec(start), vec(stop), vec(step), vec(1)).output(0)


def _slice_wavelet_bands(model: ov.Model) -> None:
    """Replace each band split (LL channels, then C x 3 detail channels reshaped to 5-D) by Slices."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "VariadicSplit" or op.get_output_partial_shape(0).rank.get_length() != 4:
            continue
        x = op.input_value(0)
        channels = x.get_partial_shape()[1].get_length()
        n_ll = int(op.input_value(2).get_node().get_data()[0])
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(_channel_slice(x, 0, n_ll, 1))
        for reshape in [t.get_node() for t in op.output(1).get_target_inputs()]:
            (split,) = [t.get_node() for t in reshape.output(0).get_target_inputs()]
            for band in range(3):
                for squeeze in [t.get_node() for t in split.output(band).get_target_inputs()]:
                    band_channels = _channel_slice(x, n_ll + band, channels, 3)
                    for target in list(squeeze.output(0).get_target_inputs()):
                        target.replace_source_output(band_channels)


def _run_last_block_at_256(nodes: dict) -> None:
    ll = nodes[_LAST_BLOCK_IDWT_LL].input_value(0)
    _check_shape(ll, 32, 256)
    half_ll = ops.multiply(ll, ops.constant(np.float32(0.5))).output(0)
    first_mul = nodes[_LAST_BLOCK_FIRST_MUL]
    _check_shape(first_mul.input_value(1), 32, 512)
    first_mul.input(1).replace_source_output(half_ll)
    for node in nodes.values():
        if node.get_type_name() != "Add":
            continue
        for port in node.inputs():
            source = port.get_source_output().get_node()
            if source.get_type_name() == "Constant" and list(source.get_output_shape(0)) == [1, 1, 512, 512]:
                noise = source.get_data().reshape(1, 1, 256, 2, 256, 2).mean(axis=(3, 5))
                port.replace_source_output(ops.constant(noise.astype(np.float32)).output(0))


def build_synthesis_256(core: ov.Core, early_exit: str = "exact") -> ov.Model:
    """Synthesis IR rewritten to W+ input (N, 23, 512) -> image (N, 3, 256, 256) in about [-1, 1]."""
    if early_exit not in EXITS:
        raise ValueError(f"early_exit must be one of {EXITS}, got {early_exit!r}")
    model = core.read_model(data_dir() / "SynthesisNetwork.xml")
    nodes = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    styles = _use_w_plus(model)
    if early_exit == "fast":
        _run_last_block_at_256(nodes)
    ll = nodes[_FINAL_IDWT_LL].input_value(0)
    if early_exit == "exact":
        ll = ops.avg_pool(ll, [2, 2], [0, 0], [0, 0], [2, 2], True).output(0)
    image = ops.multiply(ll, ops.constant(np.float32(0.5)))
    result = ops.result(image)
    sub = ov.Model([result], [styles], f"mobilestylegan_256_{early_exit}")
    sub.validate_nodes_and_infer_types()
    _slice_wavelet_bands(sub)
    sub.validate_nodes_and_infer_types()
    _check_shape(result.input_value(0), 3, 256)
    return sub


def build_synthesis_1024(core: ov.Core) -> ov.Model:
    """The untouched full-resolution IR (w (1, 512) -> (1, 3, 1024, 1024)): the reference for checks."""
    return core.read_model(data_dir() / "SynthesisNetwork.xml")
