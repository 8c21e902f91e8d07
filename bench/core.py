"""Encoder latency, decoder throughput, bytes on the wire and classical reconstruction time.

Single-frame encoder latency on one thread (the node's setting) for each shipped model, batched
throughput, decoder images/s at 256², the serialized size of each message per frame, and the time
the Hadamard baselines need per frame at the same pattern budgets, all against the DMD's frame time.
"""

import os
import platform
import time

import numpy as np
import torch
from rclpy.serialization import serialize_message

from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.registry import find_model
from lsi_ros.optics import ALP4_DLP7000, DLPC900_1080P
from lsi_ros.ros import image, latent


def _percentiles(samples_ms) -> dict:
    return {
        "p50_ms": round(float(np.percentile(samples_ms, 50)), 4),
        "p95_ms": round(float(np.percentile(samples_ms, 95)), 4),
    }


def _latency_row(name: str, m: int, encoder, frames: int) -> dict:
    y = torch.rand(1, m) * 20000
    with torch.inference_mode():
        for _ in range(50):
            encoder(y)
        samples = []
        for _ in range(frames):
            start = time.perf_counter()
            encoder(y)
            samples.append(1e3 * (time.perf_counter() - start))
        batch = torch.rand(256, m) * 20000
        start = time.perf_counter()
        for _ in range(10):
            encoder(batch)
        batched = 2560 / (time.perf_counter() - start)
    return {
        "what": "encoder",
        "model": name,
        "M": m,
        **_percentiles(samples),
        "threads": 1,
        "batched_frames_per_s": round(batched),
        "frame_time_ms_9.5kHz": round(1e3 * DLPC900_1080P.frame_time(m), 3),
        "frame_time_ms_22.7kHz": round(1e3 * ALP4_DLP7000.frame_time(m), 3),
    }


def encoder_rows(
    models=("m32", "m64", "m128", "m256", "m32-real", "m128-real", "m128-framed"),
    frames: int = 2000,
    faces: int = 16,
) -> list:
    """One frame on one thread (latent_encoder's setting) and batches of 256, per shipped model, in
    fp32 and through the int8 kernels the node runs it with, and how far the int8 latents and the
    faces they decode are from the fp32 ones on ``faces`` held-out faces (photon flux 200)."""
    from lsi_ros.models.int8_encoder import inference_encoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, scenes = [], None
    try:
        for name in models:
            model = load_model(find_model(name))
            m = model.num_measurements
            rows.append({**_latency_row(name, m, model.encoder, frames), "kernels": "fp32"})
            int8 = inference_encoder(model)
            if int8 is model.encoder:
                continue
            scenes = _held_out_faces(faces) if scenes is None else scenes
            rows.append(
                {**_latency_row(name, m, int8, frames), "kernels": "int8", **_int8_error(model, int8, scenes)}
            )
    finally:
        torch.set_num_threads(threads)
    return rows


def _held_out_faces(count: int) -> np.ndarray:
    from itertools import islice

    from lsi_ros.scenes import face_scenes

    return np.stack([face for _, face in islice(face_scenes(), count)]).astype(np.float32) / 255.0


def _int8_error(model, int8, faces: np.ndarray) -> dict:
    """The int8 kernels' latents against fp32 on the same frames: RMS difference in the encoder's
    normalised units, and gray PSNR between the faces the two decode to (the worst face)."""
    from lsi_ros.evaluation.images import grayscale
    from lsi_ros.evaluation.quality import quality_metrics
    from lsi_ros.models.generators import get_generator
    from lsi_ros.optics import ForwardModel, PhotodiodeModel

    counts = PhotodiodeModel().sample(
        ForwardModel(model.pattern_set).measure(faces), np.random.default_rng(0)
    )
    y = torch.from_numpy(counts.counts.astype(np.float32))
    with torch.inference_mode():
        exact, fast = model.encoder(y), int8(y)
    difference = ((fast - exact) / model.encoder.latent_std).pow(2).mean().sqrt()
    generator = get_generator("mobilestylegan")
    decoded = [generator.synthesize(latents.numpy()) for latents in (exact, fast)]
    psnr = [quality_metrics(grayscale(a), grayscale(b))[0] for a, b in zip(*decoded, strict=True)]
    return {
        "faces": len(faces),
        "latent_rms_difference_vs_fp32": round(float(difference), 5),
        "decoded_gray_psnr_vs_fp32_db_min": round(float(np.min(psnr)), 1),
    }


def decoder_rows(images: int = 40) -> list:
    from lsi_ros.models.generators import get_generator

    rows = []
    for exit_kind in ("exact", "fast"):
        generator = get_generator("mobilestylegan", early_exit=exit_kind)
        w = generator.sample_latents(list(range(2_000_000, 2_000_000 + images)), truncation_psi=0.7)
        generator.synthesize(w[:2])
        start = time.perf_counter()
        for k in range(images):
            generator.synthesize(w[k : k + 1])
        rate = images / (time.perf_counter() - start)
        rows.append(
            {
                "what": "decoder",
                "resolution": 256,
                "images_per_s": round(rate, 2),
                "device": "cpu",
                "batch": 1,
                "early_exit": exit_kind,
            }
        )
    return rows


def reconstruction_rows(budgets=(32, 64, 128, 256), repeats: int = 3) -> list:
    """Per-frame time of the classical reconstructions (pinv, TV at the evaluation's iteration budget)
    on a held-out face, beside LSI's encoder + decoder from the rows above."""
    from lsi_ros.evaluation import baselines, images
    from lsi_ros.optics import ForwardModel, PhotodiodeModel, hadamard_split_patterns
    from lsi_ros.scenes import face_scenes

    _, face = next(face_scenes())
    scene = images.to_sampling_image(face.astype(np.float32) / 255.0)
    photodiode = PhotodiodeModel()
    rng = np.random.default_rng(0)
    rows = []
    for num_patterns in budgets:
        pattern_set = hadamard_split_patterns(num_patterns)
        counts = photodiode.sample(ForwardModel(pattern_set).measure(scene), rng).counts
        indices, coefficients = baselines.walsh_coefficients(pattern_set, photodiode.to_ideal(counts))
        methods = {
            "hadamard-pinv": (baselines.reconstruct_pinv, {}),
            "hadamard-tv": (baselines.reconstruct_tv, {"weight": 0.3}),
        }
        for method, (reconstruct, options) in methods.items():
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                reconstruct(indices, coefficients, 256, **options)
                samples.append(1e3 * (time.perf_counter() - start))
            rows.append(
                {
                    "what": "reconstruction",
                    "method": method,
                    "patterns": num_patterns,
                    "resolution": 256,
                    "ms_per_frame": round(float(np.median(samples)), 2),
                    "frame_time_ms_9.5kHz": round(1e3 * DLPC900_1080P.frame_time(num_patterns), 3),
                }
            )
    return rows


def bytes_rows(budgets=(32, 64, 128, 256)) -> list:
    from lsi_ros.msg import Measurements

    image_bytes = len(serialize_message(image.array_to_image(np.zeros((256, 256, 3), np.uint8), "rgb8")))
    latent_bytes = len(
        serialize_message(
            latent.to_msg(
                np.zeros((1, 512)),
                model_id="lsi-mobilestylegan-m128",
                pattern_set_id="sha256:0123456789abcdef",
            )
        )
    )
    rows = []
    for m in budgets:
        frame = Measurements(pattern_set_id="sha256:0123456789abcdef", values=np.zeros(m, np.float32))
        measurement_bytes = len(serialize_message(frame))
        rows.append(
            {
                "what": "bytes_per_frame",
                "M": m,
                "image_rgb8": image_bytes,
                "measurements": measurement_bytes,
                "latent": latent_bytes,
                "image_over_measurements": round(image_bytes / measurement_bytes, 1),
                "image_over_latent": round(image_bytes / latent_bytes, 1),
            }
        )
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, CPU only, {platform.platform()}"
