"""Training losses: the terms of a training step (``training_terms``, the one place a step's loss is
made) and the image losses through the frozen generator, shared by training and the latent teacher.

``1 − MS-SSIM`` uses the largest Gaussian window whose four downsamplings still fit the image, so
the same loss works on 256² MobileStyleGAN faces (window 11) and the 64² DCGAN double (window 3).

``loss_terms`` is the paper's recipe as one call: latent L1, image L2 (plus the L1 / MS-SSIM terms),
identity and perceptual terms through face-api's face descriptor network (``FaceLoss``), each weighted
(``LossWeights``). Real photos have no true latent: their terms are the image and face ones alone.
Beside the paper's terms, ``contrast`` asks the decoded face to be told apart from other people: an
InfoNCE over a bank of descriptors of the training photos, where ``1 − cosine`` only asks it to be near
its own, which an average face of the right kind already is.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pytorch_msssim import ms_ssim

IMAGE_LOSSES = ("l1", "l2", "ms-ssim")


def training_terms(
    predicted: torch.Tensor,
    target: torch.Tensor,
    rendered: torch.Tensor | None = None,
    decoded: torch.Tensor | None = None,
    image_terms: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """A training step's loss terms, each a scalar; the trainer sums them with its weights.

    ``predicted``, ``target``: latents (N, D) in the encoder's normalised units. ``rendered``: the true
    faces, ``decoded``: the generator's faces of ``predicted`` (N, C, H, W) in [0, 1], or None when
    no image term is weighted (decoding is costly). ``latent`` is their MSE; ``image`` the
    ``image_terms`` loss of the grayscale faces (the photodiode sees only the channel sum)."""
    terms = {"latent": torch.nn.functional.mse_loss(predicted, target)}
    if decoded is not None:
        gray = decoded.mean(1, keepdim=True), rendered.mean(1, keepdim=True)
        terms["image"] = image_loss(*gray, image_terms or {"l2": 1.0}).mean()
    return terms


def ms_ssim_window(side: int) -> int:
    """The largest odd Gaussian window (at most 11) whose 4 downsamplings fit a side (64² faces: 3)."""
    return min(11, (side - 1) // 16 // 2 * 2 + 1)


def image_loss(decoded: torch.Tensor, target: torch.Tensor, weights: Mapping[str, float]) -> torch.Tensor:
    """Per image ``(N,)``: the weighted sum of the named terms between (N, C, H, W) images in [0, 1]."""
    unknown = set(weights) - set(IMAGE_LOSSES)
    if unknown:
        raise ValueError(f"unknown image loss {sorted(unknown)}; choose from {IMAGE_LOSSES}")
    loss = decoded.new_zeros(len(decoded))
    for term, weight in weights.items():
        if not weight:
            continue
        if term == "l1":
            value = (decoded - target).abs().mean((1, 2, 3))
        elif term == "l2":
            value = (decoded - target).pow(2).mean((1, 2, 3))
        else:
            window = ms_ssim_window(target.shape[-1])
            value = 1.0 - ms_ssim(decoded, target, data_range=1.0, win_size=window, size_average=False)
        loss = loss + weight * value
    return loss


# -- the paper's recipe: latent + image + identity + perceptual ----------------------------------
LATENT_LOSSES = ("l1", "l2")
# Where face-api's aligned box (68 landmarks' bounding box padded by 20 %) falls on FFHQ-framed faces,
# as fractions of the side (x0, y0, x1, y1): the median over 64 MobileStyleGAN faces (seeds 0-63,
# psi 0.7); FFHQ framing puts every face there, so the identity loss skips detection and landmarks.
FFHQ_FACE_BOX = (0.144, 0.321, 0.842, 0.974)


def latent_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 or squared error of normalised latents; a W target (N, D) stands for every layer of a
    W+ prediction (N, L, D)."""
    from lsi_ros.models.encoder import normalised_error

    if kind not in LATENT_LOSSES:
        raise ValueError(f"unknown latent loss {kind!r}; choose from {LATENT_LOSSES}")
    error = normalised_error(predicted, target, 1.0)
    return error.abs().mean() if kind == "l1" else error.pow(2).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the training terms; the defaults are the paper's recipe (latent L1 1.0, image L2
    1.0, identity 0.5, perceptual 0.1) with face-api's descriptor network in place of ArcFace (identity)
    and DINO (perceptual), the face networks that ship offline."""

    latent: float = 1.0
    latent_kind: str = "l1"
    l2: float = 1.0
    l1: float = 0.0
    ms_ssim: float = 0.0
    identity: float = 0.5
    perceptual: float = 0.1
    contrast: float = 0.0  # InfoNCE against other people's descriptors (``FaceLoss.terms``'s bank)
    attributes: float = 0.0  # face-api's gender and age of the decoded face against the target's

    def __post_init__(self):
        if self.latent_kind not in LATENT_LOSSES:
            raise ValueError(f"unknown latent loss {self.latent_kind!r}; choose from {LATENT_LOSSES}")
        for name, value in asdict(self).items():
            if name != "latent_kind" and not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"loss weight {name} must be a number >= 0, not {value!r}")

    @classmethod
    def parse(cls, text: str) -> "LossWeights":
        """``"paper"`` (the defaults) or ``"latent=1,l2=1,identity=0.5"`` (terms not named keep their
        default; ``latent_kind=l2``)."""
        if text.strip() == "paper":
            return cls()
        fields = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if name not in cls.__dataclass_fields__ or not value:
                raise ValueError(
                    f"bad loss term {item!r}: write name=weight with name one of "
                    f"{', '.join(cls.__dataclass_fields__)}"
                )
            fields[name] = value.strip() if name == "latent_kind" else float(value)
        return cls(**fields)

    @property
    def image_terms(self) -> dict[str, float]:
        return {"l2": self.l2, "l1": self.l1, "ms-ssim": self.ms_ssim}

    @property
    def needs_faces(self) -> bool:
        """Whether the face networks (identity, perceptual, contrast, attributes) must be loaded."""
        return bool(self.identity or self.perceptual or self.contrast or self.attributes)


AGE_SCALE_YEARS = 10.0  # an age error of this many years weighs as much as a gender KL of 1 nat


def attribute_loss(age, p_male, target_age, target_p_male, eps: float = 1e-6) -> torch.Tensor:
    """Per face (N,): the KL divergence of the decoded face's gender from the target's (face-api's
    p_male, 0 when they agree) plus their age difference in units of ``AGE_SCALE_YEARS``."""
    p, q = target_p_male.clamp(eps, 1 - eps), p_male.clamp(eps, 1 - eps)
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    return kl + (age - target_age).abs() / AGE_SCALE_YEARS


CONTRAST_TEMPERATURE = 0.1  # on squared descriptor distances: same-person pairs lie below 0.36


def info_nce(squared: torch.Tensor, positive: torch.Tensor, temperature: float = CONTRAST_TEMPERATURE):
    """Mean cross-entropy of picking each row's ``positive`` column (B,) among candidates at
    ``squared`` descriptor distances (B, K): low when a face is nearer its own than anyone else's."""
    return torch.nn.functional.cross_entropy(-squared / temperature, positive)


class FaceLoss(torch.nn.Module):
    """Identity (``1 − cosine`` of face-api's 128-d descriptors) and perceptual (squared distance of
    channel-normalised feature maps after each stage of the same network, LPIPS-style) per image (N,),
    on the face crop at a fixed box of FFHQ-framed images. Differentiable in the decoded image; the
    network is frozen (its weights are plain tensors)."""

    def __init__(
        self, analyzer=None, box=FFHQ_FACE_BOX, device: str | torch.device = "cpu", attributes: bool = False
    ):
        """``attributes``: also load face-api's age/gender network (the ``attributes`` term) when no
        ``analyzer`` is given."""
        super().__init__()
        from lsi_ros.evaluation.face_analysis import FaceAnalyzer

        networks = ("face_recognition_model",) + (("age_gender_model",) if attributes else ())
        self.analyzer = analyzer or FaceAnalyzer(device=device, networks=networks)
        self.box = tuple(float(v) for v in box)

    def _crops(self, images: torch.Tensor, size: int) -> torch.Tensor:
        side = images.shape[-1]
        boxes = np.repeat(np.asarray(self.box, np.float32)[None] * side, len(images), 0)
        return self.analyzer.crop(images.permute(0, 2, 3, 1) * 255.0, boxes, size)[0]

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(N, 3, H, W) in [0, 1] -> descriptors (N, 128) and stage feature maps."""
        from lsi_ros.evaluation.face_analysis import DESCRIPTOR_INPUT

        return self.analyzer.descriptor_features(self._crops(images, DESCRIPTOR_INPUT))

    def age_gender(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) in [0, 1] -> face-api's age (N,) and p_male (N,) on the same face box."""
        from lsi_ros.evaluation.face_analysis import FACE_INPUT

        if "age_gender_model" not in self.analyzer.params:
            raise ValueError(
                "the attributes term needs face-api's age/gender network: FaceLoss(attributes=True)"
            )
        return self.analyzer.age_gender(self._crops(images, FACE_INPUT))

    def forward(self, decoded: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        terms = self.terms(decoded, target)
        return terms["identity"], terms["perceptual"]

    def terms(
        self, decoded, target, bank=None, same_person=None, attributes=False
    ) -> dict[str, torch.Tensor]:
        """Identity and perceptual per image (N,); with a ``bank`` of other faces' descriptors (K, 128),
        ``contrast`` too: the InfoNCE of the decoded descriptor between its target's and the bank's,
        leaving out the bank entries ``same_person`` (N, K) marks as the target's own person; with
        ``attributes``, ``attribute_loss`` of face-api's gender and age."""
        with torch.no_grad():
            target_descriptor, target_maps = self.features(target)
        descriptor, maps = self.features(decoded)
        terms = {
            "identity": 1.0 - torch.nn.functional.cosine_similarity(descriptor, target_descriptor, dim=1),
            "perceptual": sum(
                (_unit_channels(a) - _unit_channels(b)).pow(2).sum(1).mean((1, 2))
                for a, b in zip(maps, target_maps, strict=True)
            )
            / len(maps),
        }
        if bank is not None:
            others = torch.cdist(descriptor, bank).pow(2)
            if same_person is not None:
                others = others.masked_fill(same_person, float("inf"))
            own = (descriptor - target_descriptor).pow(2).sum(1, keepdim=True)
            first = torch.zeros(len(descriptor), dtype=torch.long, device=descriptor.device)
            terms["contrast"] = info_nce(torch.cat([own, others], 1), first)
        if attributes:
            with torch.no_grad():
                target_age, target_p_male = self.age_gender(target)
            terms["attributes"] = attribute_loss(*self.age_gender(decoded), target_age, target_p_male)
        return terms

    def descriptors(self, images: np.ndarray, batch: int = 64, progress: bool = True) -> torch.Tensor:
        """Descriptors (N, 128) of uint8 images (N, R, R, 3), a batch at a time: a contrast bank."""
        from tqdm import tqdm

        parts = []
        with torch.no_grad():
            for s in tqdm(range(0, len(images), batch), desc="descriptor bank", disable=not progress):
                chunk = torch.from_numpy(np.ascontiguousarray(images[s : s + batch]))
                chunk = chunk.permute(0, 3, 1, 2).float() / 255.0
                parts.append(self.features(chunk)[0])
        return torch.cat(parts)


def _unit_channels(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def loss_terms(
    weights: LossWeights,
    predicted: torch.Tensor | None,
    true: torch.Tensor | None,
    rendered: torch.Tensor,
    decoded: torch.Tensor,
    face_loss: FaceLoss | None = None,
    bank: torch.Tensor | None = None,
    same_person: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted terms (batch means) and their sum under ``"total"``.

    ``predicted``/``true``: latents in the encoder's normalised units (``true`` None, as for real
    photos, drops the latent term); ``rendered``: the image the camera saw, ``decoded``: the generator's
    image of the prediction, both (N, 3, H, W) in [0, 1]. ``bank``/``same_person``: the contrast
    term's other faces (``FaceLoss.terms``). Zero-weight terms are not computed."""
    terms = {}
    if weights.latent and true is not None:
        terms["latent"] = weights.latent * latent_loss(predicted, true, weights.latent_kind)
    if any(weights.image_terms.values()):
        for name, weight in weights.image_terms.items():
            if weight:
                terms[name] = image_loss(decoded, rendered, {name: weight}).mean()
    if weights.needs_faces:
        if face_loss is None:
            raise ValueError("identity and perceptual terms need a FaceLoss (face-api's weights)")
        if weights.contrast and bank is None:
            raise ValueError("the contrast term needs a bank of other people's descriptors")
        contrast_bank = bank if weights.contrast else None
        faces = face_loss.terms(decoded, rendered, contrast_bank, same_person, bool(weights.attributes))
        for name in ("identity", "perceptual", "contrast", "attributes"):
            if getattr(weights, name):
                terms[name] = getattr(weights, name) * faces[name].mean()
    if not terms:
        raise ValueError("every loss term has weight 0")
    terms["total"] = sum(terms.values())
    return terms
