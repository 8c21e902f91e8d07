"""Quality of latent space imaging on real images (``lsi eval --images DIR``), where no true latent exists.

Each image is framed on the DMD as the simulated camera does, measured through each model's patterns
and the photodiode model, encoded and decoded. Scores: grayscale PSNR/SSIM (and RGB PSNR) of the
decoded image against the image, and against the latent teacher's reconstruction (the closest face
the generator can show: what a perfect encoder would decode), plus the latent error against the
teacher's latent. The ``teacher-inversion`` row scores the teacher itself (the ceiling), the
``mean-latent`` row a camera that measured nothing.
"""

import numpy as np
import torch
from tqdm import tqdm

from lsi_ros.evaluation.latent_imaging import score_image
from lsi_ros.models.encoder import normalised_error
from lsi_ros.training.finetune import references_for, simulate_measurements


def _mean(scores: list[dict]) -> dict:
    return {k: round(float(np.mean([s[k] for s in scores])), 3) for k in scores[0]}


def evaluate_real_images(
    models,
    generator,
    images: dict,
    photodiodes,
    teacher,
    source: str,
    progress: bool = True,
    examples: dict | None = None,
) -> list[dict]:
    """Rows like lsi_ros.evaluation.latent_imaging.evaluate, for real images (name -> RGB in [0, 1]).

    ``examples``, if given, is filled with tiles per image (image, teacher, each model at the second
    photodiode model: the realistic default) for latent_imaging.plot_examples."""
    names = list(images)
    references = references_for(generator, [images[n] for n in names])
    taught = teacher.invert(references, progress=progress)
    ceiling = generator.synthesize(taught.latents)
    common = {"n_images": len(names), "resolution": generator.resolution, "images": source}
    mean_image = generator.synthesize(generator.mean_latent()[None])[0]
    rows = [
        {
            "method": "teacher-inversion",
            "M": 0,
            "patterns": 0,
            "noise": "none",
            **_mean(taught.quality),
            **common,
        },
        {
            "method": "mean-latent",
            "M": 0,
            "patterns": 0,
            "noise": "none",
            **_mean([score_image(r, mean_image) for r in references]),
            **common,
        },
    ]
    rows[0]["per_image"] = dict(zip(names, taught.quality, strict=True))
    tiles = {n: {"image": r, "teacher": c} for n, r, c in zip(names, references, ceiling, strict=True)}
    bar = tqdm(total=len(models) * len(photodiodes), desc="lsi eval (real images)", disable=not progress)
    for model in models:
        std = model.encoder.latent_std.numpy()
        for k, photodiode in enumerate(photodiodes):
            values, _ = simulate_measurements(model, [images[n] for n in names], photodiode, 1, seed=k)
            with torch.inference_mode():
                latents = model.encoder(torch.from_numpy(values)).numpy()
            decoded = generator.synthesize(latents)
            scores = [score_image(r, d) for r, d in zip(references, decoded, strict=True)]
            versus = [score_image(c, d) for c, d in zip(ceiling, decoded, strict=True)]
            m = model.num_measurements
            if k == min(1, len(photodiodes) - 1):
                for name, image in zip(names, decoded, strict=True):
                    tiles[name][model.model_id.split("-", 2)[-1]] = image
            rows.append(
                {
                    "method": "lsi",
                    "model_id": model.model_id,
                    "M": m,
                    "patterns": m,
                    "noise": photodiode.label,
                    **_mean(scores),
                    **{f"vs_teacher_{k}": v for k, v in _mean(versus).items()},
                    "latent_mse_vs_teacher": round(
                        float(np.mean(normalised_error(latents, taught.latents, std) ** 2)), 4
                    ),
                    **common,
                    "psnr_per_image": {n: round(s["psnr"], 2) for n, s in zip(names, scores, strict=True)},
                }
            )
            bar.update()
    bar.close()
    if examples is not None:
        examples.update(tiles)
    return rows
