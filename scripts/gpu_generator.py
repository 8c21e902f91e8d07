"""Native MobileStyleGAN on one GPU: faces/s by batch, dtype and compilation, and the error of each.

Needs torch, numpy and safetensors (no OpenVINO) and two files made on a machine with OpenVINO:

    lsi data --export-torch .device/mobilestylegan            # the generator for torch alone (40 MB)
    python scripts/gpu_generator.py --make-reference          # OpenVINO faces of 16 seeds (6 MB)

Then, on the GPU (one command, --budget-s bounds the measuring; rows are written as they come):

    python scripts/gpu_generator.py --out "$OUT"

It checks the native network (fp32, TF32 off) against the OpenVINO faces and against the exported graph
run op by op (``OpenVINOModule``) on the same device, then times W+ -> 256² faces (the synthesis; the
mapping is a few matmuls) eager in fp32 / bf16 / fp16 at each --batches, and compiled
(``torch.compile``, and with CUDA graphs: mode "reduce-overhead") at --compile-batches. Each row has
faces/s, peak memory and the max abs error against the OpenVINO faces on [0, 1] RGB (one grey level
is 1/255), and against the same export's fp32 eager faces on the same device: with a float16 export
(half the size, to travel with a checkpoint) the weights alone move a face by up to 2 grey levels from
OpenVINO's, and the second error shows what each variant adds to that. Rows use the "generator" row
format of bench/generator.py. On a CPU it checks itself:

    python scripts/gpu_generator.py --device cpu --batches 2 --faces 2 --compile-batches \\
        --check-faces 2 --out /tmp/gpu_generator
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.generator import synchronize, torch_rate  # noqa: E402
from lsi_ros.models.ov_torch import OpenVINOModule  # noqa: E402
from lsi_ros.models.torch_generator import (  # noqa: E402
    INFO_FILE,
    SYNTHESIS_FILE,
    ExportedMobileStyleGAN,
    as_w_plus,
)

REFERENCE_SEEDS = list(range(2_000_000, 2_000_016))
PSI = 0.7
FACE_STEPS = 65535  # reference faces stored as uint16 steps of [0, 1]: 7.6e-6 at most, half of float32
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f} s] {message}", flush=True)


def make_reference(path: Path) -> None:
    """OpenVINO's w and [0, 1] faces (exact exit) of REFERENCE_SEEDS: what the GPU rows are checked on."""
    from lsi_ros.models.generators import MobileStyleGAN

    generator = MobileStyleGAN()
    w = generator.sample_latents(REFERENCE_SEEDS, truncation_psi=PSI)
    faces = np.rint(np.clip(generator.synthesize(w), 0.0, 1.0) * FACE_STEPS).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"w": torch.from_numpy(w), "faces": torch.from_numpy(np.ascontiguousarray(faces))}
    metadata = {"generator_id": generator.generator_id, "psi": str(PSI), "face_steps": str(FACE_STEPS)}
    save_file(tensors, str(path), metadata=metadata)
    log(f"reference faces of {len(w)} seeds -> {path}")


def load_reference(path: Path) -> dict:
    """w and [0, 1] float32 faces of the reference seeds."""
    reference = load_file(path)
    if reference["faces"].dtype != torch.float32:
        reference["faces"] = reference["faces"].to(torch.float32) / FACE_STEPS
    return reference


def unit_faces(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, R, R) in about [-1, 1] -> (N, R, R, 3) float32 in [0, 1]."""
    return ((image.float() + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)


def max_error(faces: torch.Tensor, reference: torch.Tensor) -> float:
    return float((faces.float().cpu() - reference).abs().max())


def significant(x: float) -> float:
    return float(f"{x:.3g}")


def mean_error(faces: torch.Tensor, reference: torch.Tensor) -> float:
    return float((faces.float().cpu() - reference).abs().mean())


class Rows:
    """Rows kept in order and written to --out after each one, so a cut-short run keeps what it measured."""

    def __init__(self, out: Path, header: dict):
        self.path = out / "generator_gpu.json"
        self.results = {**header, "rows": []}

    def add(self, row: dict) -> None:
        self.results["rows"].append(row)
        log(json.dumps(row))
        self.write()

    def write(self) -> None:
        self.results["seconds"] = round(time.perf_counter() - START, 1)
        self.path.write_text(json.dumps(self.results, indent=2) + "\n")


def checks(generator: ExportedMobileStyleGAN, export: Path, reference: dict, device, n: int) -> dict:
    """fp32 native vs OpenVINO faces and w, and vs the exported graph run op by op on this device, on
    the first ``n`` reference seeds."""
    reference = {key: value[:n] for key, value in reference.items()}
    seeds_w = generator.sample_latents(REFERENCE_SEEDS[:n], PSI)
    w = reference["w"].to(device)
    with torch.inference_mode():
        native = unit_faces(generator.synthesis(as_w_plus(w, generator.num_ws)))
        interpreted = OpenVINOModule.load(export / SYNTHESIS_FILE, device).eval()
        graph = unit_faces(interpreted(as_w_plus(w, generator.num_ws).contiguous()))
    del interpreted
    return {
        "export_stored_as": json.loads((export / INFO_FILE).read_text()).get("stored_as", "float32"),
        "seeds": [REFERENCE_SEEDS[0], REFERENCE_SEEDS[n - 1]],
        "w_max_abs_error_vs_openvino": float((seeds_w.cpu() - reference["w"]).abs().max()),
        "native_fp32_max_abs_error_vs_openvino": max_error(native, reference["faces"]),
        "graph_fp32_max_abs_error_vs_openvino": max_error(graph, reference["faces"]),
        "native_vs_graph_max_abs": float((native - graph).abs().max()),
    }


def measure(net, name: str, dtype, batch: int, faces: int, w_ref: torch.Tensor, reference, fp32) -> dict:
    """One row: faces/s of ``net`` on ``faces`` W+ latents (the reference ones first), its peak memory
    and the error of its first outputs against the OpenVINO faces and the ``fp32`` eager ones."""
    device = w_ref.device
    w_plus = as_w_plus(w_ref, net_num_ws(net)).repeat((faces + len(w_ref) - 1) // len(w_ref), 1, 1)[:faces]
    w_plus = w_plus.to(dtype).contiguous()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    with torch.inference_mode():
        first = unit_faces(net(w_plus[:batch])[: len(w_ref)]).clone()
    synchronize(device)
    warm_s = time.perf_counter() - began
    rate, _ = torch_rate(net, w_plus, batch)
    row = {
        "what": "generator",
        "device": device.type,
        "backend": "native-torch",
        "variant": name,
        "dtype": str(dtype).removeprefix("torch."),
        "early_exit": "exact",
        "resolution": 256,
        "batch": batch,
        "faces": faces,
        "faces_per_s": round(rate, 1),
        "first_call_s": round(warm_s, 1),
        "max_abs_error_vs_openvino": significant(max_error(first, reference["faces"][: len(first)])),
        "mean_abs_error_vs_openvino": significant(mean_error(first, reference["faces"][: len(first)])),
        "max_abs_error_vs_fp32": significant(max_error(first, fp32[: len(first)])),
        "mean_abs_error_vs_fp32": significant(mean_error(first, fp32[: len(first)])),
    }
    if device.type == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        row["gpu"] = torch.cuda.get_device_name(device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--export", default=".device/mobilestylegan", help="MobileStyleGAN.export_torch folder"
    )
    parser.add_argument("--reference", default=".device/generator_reference.safetensors")
    parser.add_argument("--make-reference", action="store_true", help="write --reference (needs OpenVINO)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="*", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--compile-batches", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--faces", type=int, default=4096, help="faces per timing pass (at least a batch)")
    parser.add_argument(
        "--check-faces", type=int, default=len(REFERENCE_SEEDS), help="reference faces checked"
    )
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new row after this")
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    if args.make_reference:
        make_reference(Path(args.reference))
        return
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows as the CPU computes them
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__}
    if device.type == "cuda":
        header["gpu"] = torch.cuda.get_device_name(device)
    rows = Rows(out, header)
    reference = load_reference(Path(args.reference))
    generator = ExportedMobileStyleGAN(args.export, device)
    rows.results["checks"] = checks(generator, Path(args.export), reference, device, args.check_faces)
    log(json.dumps(rows.results["checks"]))
    rows.write()
    w_ref = reference["w"].to(device)
    with torch.inference_mode():
        fp32 = unit_faces(generator.synthesis(as_w_plus(w_ref, generator.num_ws))).cpu()

    # Most telling first, so a spent budget drops the least: fp32 and bf16 by batch, the compiled and
    # CUDA-graph variants at the first compile batch, TF32, fp16, then the other compile batches.
    first, *more = args.compile_batches or [None]
    plan = [("eager", dtype, b) for dtype in ("float32", "bfloat16") for b in args.batches]
    if first:
        plan += [(v, "bfloat16", first) for v in ("compiled", "compiled+cudagraphs")]
        plan += [("compiled", "float32", first), ("compiled+cudagraphs", "float16", first)]
    plan += [("eager-tf32", "float32", b) for b in args.batches[len(args.batches) // 2 :][:1]]
    plan += [("eager", "float16", b) for b in args.batches]
    plan += [("compiled+cudagraphs", "bfloat16", b) for b in more]
    if device.type != "cuda":
        plan = [step for step in plan if step[1] != "float16"]  # no fast fp16 kernels on a CPU
    nets = {}
    for variant, dtype_name, batch in plan:
        if time.perf_counter() - START > args.budget_s:
            log(f"budget spent: {variant} {dtype_name} batch {batch} not measured")
            continue
        dtype = DTYPES[dtype_name]
        key = (variant, dtype_name)
        if key not in nets:
            nets[key] = _variant(generator.synthesis, variant, dtype)
        try:
            faces = max(args.faces, batch)
            rows.add(measure(nets[key], variant, dtype, batch, faces, w_ref, reference, fp32))
        except torch.OutOfMemoryError:
            rows.add(
                {"what": "generator", "variant": variant, "dtype": dtype_name, "batch": batch, "oom": True}
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    log(f"done -> {rows.path}")


def net_num_ws(net) -> int:
    return getattr(net, "_orig_mod", net).num_ws


def _variant(synthesis, variant: str, dtype):
    """The synthesis network in ``dtype`` (a copy of the buffers), eager or compiled; "eager-tf32" lets
    fp32 matmuls and convolutions use TF32 while it runs."""
    net = copy.deepcopy(synthesis).to(dtype)
    if variant == "eager-tf32":
        return _TF32(net)
    if variant == "compiled":
        return torch.compile(net, dynamic=False)
    if variant == "compiled+cudagraphs":
        return torch.compile(net, mode="reduce-overhead", dynamic=False)
    return net


class _TF32(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.num_ws = net.num_ws

    def forward(self, w_plus):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            return self.net(w_plus)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


if __name__ == "__main__":
    main()
