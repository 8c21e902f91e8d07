"""Generator faces/s per device and backend: the face source of training, the dataset and the decoder.

Rows ("what": "generator") time W -> 256² RGB faces (the synthesis network; the mapping is a few small
matmuls): OpenVINO f32 on the CPU ("openvino"), the native torch network on the CPU and, where one is
present, on a CUDA GPU ("native-torch"). ``torch_rate`` is also what scripts/gpu_generator.py times.
"""

import os
import time

import numpy as np
import torch

SEED_START = 2_000_000  # held-out seeds, as the decoder rows use
PSI = 0.7


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_rate(net, w_plus: torch.Tensor, batch: int, passes: int = 2) -> tuple[float, torch.Tensor]:
    """Best faces/s over ``passes`` passes of all of ``w_plus`` in batches, and the output of the
    warm-up call on the first batch."""
    device = w_plus.device
    chunks = [w_plus[i : i + batch] for i in range(0, len(w_plus), batch)]
    with torch.inference_mode():
        first = net(chunks[0]).clone()
        synchronize(device)
        best = float("inf")
        for _ in range(passes):
            began = time.perf_counter()
            for chunk in chunks:
                net(chunk)
            synchronize(device)
            best = min(best, time.perf_counter() - began)
    return len(w_plus) / best, first


def _row(device: str, backend: str, early_exit: str, batch: int, faces: int, rate: float, **extra) -> dict:
    row = {
        "what": "generator",
        "device": device,
        "backend": backend,
        "early_exit": early_exit,
        "resolution": 256,
        "batch": batch,
        "faces": faces,
        "faces_per_s": round(rate, 2),
        **extra,
    }
    if device == "cpu":
        row["threads"] = torch.get_num_threads()
        row["load_1min"] = round(os.getloadavg()[0], 1)  # the machine may be shared: read rates with it
    return row


def rows(exits=("exact", "fast"), batch: int = 8, faces: int = 16) -> list:
    """OpenVINO and native torch on the CPU, side by side (interleaved per exit), and native torch on
    CUDA when a GPU is present."""
    from lsi_ros.models.generators import MobileStyleGAN

    out = []
    for early_exit in exits:
        openvino = MobileStyleGAN(early_exit, batch_size=batch)
        w = openvino.sample_latents(list(range(SEED_START, SEED_START + faces)), truncation_psi=PSI)
        openvino.synthesize(w[:batch])
        began = time.perf_counter()
        reference = openvino.synthesize(w)
        out.append(_row("cpu", "openvino", early_exit, batch, faces, faces / (time.perf_counter() - began)))
        net = openvino.torch_synthesis()
        w_plus = torch.from_numpy(np.repeat(w[:, None], openvino.num_ws, axis=1))
        rate, images = torch_rate(net, w_plus, batch, 1)
        error = float(f"{np.abs(images.permute(0, 2, 3, 1).numpy() - reference[:batch]).max():.3g}")
        out.append(
            _row("cpu", "native-torch", early_exit, batch, faces, rate, max_abs_error_vs_openvino=error)
        )
        if torch.cuda.is_available():
            device = torch.device("cuda")
            cuda_faces, cuda_batch = 1024, 256
            w_plus = torch.from_numpy(w[:1]).to(device)[:, None].expand(cuda_faces, openvino.num_ws, -1)
            rate, images = torch_rate(net.to(device), w_plus.contiguous(), cuda_batch)
            error = np.abs(images[0].permute(1, 2, 0).cpu().numpy() - reference[0]).max()
            name = torch.cuda.get_device_name(device)
            extra = {"gpu": name, "max_abs_error_vs_openvino": float(f"{error:.3g}")}
            out.append(_row("cuda", "native-torch", early_exit, cuda_batch, cuda_faces, rate, **extra))
            net.to("cpu")
    return out
