"""Does asking for the photo's gender and age bring real people's gender and age through?

On the 1,064 held-out UTKFace people the shipped ``m128-real`` gives a face of the photo's gender (by
face-api's gender network on both) for 77.7 % of them, against a target of 95 %: women come back as
boys, adults as children. The ``attributes`` term of `lsi finetune --losses` adds face-api's gender
(the KL divergence of the decoded face's p_male from the photo's) and age (the difference in units of
10 years) of the decoded face against the photo's, on the same fixed face box as the identity term.

Two arms go on from ``--start`` (by default the shipped ``m128-real``) for 400 steps of 8 faces, on
3,000 UTKFace training-split photos (mirrored) and 1,000 generated training faces: one with the
paper's terms plus ``attributes=0.5``, and a control with the paper's terms alone, which tells what
the term does from what restarting the learning-rate schedule does. The start and the arms are scored
side by side by `lsi eval --real` on the first 300 held-out UTKFace people (photon flux 200, the same
frames for all, Dlib's protocol too; rank-1 among the 300): gender agreement with face-api on the
photo and with UTKFace's own labels (which no training term sees), identity and SSIM; and by
`lsi eval` on 200 held-out generated faces.

    .venv/bin/python experiments/attribute_finetune.py   # about 75 min on the 2-core CPU
"""

from contrast_finetune import run_arms

FACES = ["--utkface", "3000", "--generated", "1000", "--mirror"]
STEPS = 400
# beside the paper's terms (latent L1 1, image L2 1, identity 0.5, perceptual 0.1)
ATTRIBUTES = "attributes=0.5"
# name: (file stem, losses); the paper's terms alone tell the term's effect from the restarted schedule's
ARMS = {
    "paper terms": ("paper", "paper"),
    f"paper terms + {ATTRIBUTES.replace('=', ' ')}": ("attributes", ATTRIBUTES),
}
START = "models/m128-real.safetensors"


def main() -> None:
    run_arms(__doc__, "attribute_finetune", START, ARMS, FACES, STEPS)


if __name__ == "__main__":
    main()
