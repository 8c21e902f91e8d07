"""W+ encoders (per-layer offsets grown from a W encoder) in model files, the paper's loss terms
(latent, image, identity and perceptual through face-api's descriptor network) and fine-tuning on real
photos through the frozen generator."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import dcgan_config
from test_models import make_model

from lsi_ros.models.checkpoint import ModelFileError, as_stored, load_model, save_model
from lsi_ros.models.encoder import EncoderEnsemble, MeasurementEncoder, normalised_error, with_layer_offsets
from lsi_ros.training import losses

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def perturbed(encoder, scale=0.5, seed=0):
    """The encoder with random per-layer offsets, so W+ rows differ."""
    generator = torch.Generator().manual_seed(seed)
    members = encoder.members if isinstance(encoder, EncoderEnsemble) else [encoder]
    with torch.no_grad():
        for member in members:
            offsets = member.layer_offsets
            offsets.weight.copy_(scale * torch.randn(offsets.weight.shape, generator=generator))
            offsets.bias.copy_(scale * torch.randn(offsets.bias.shape, generator=generator))
    return encoder


# -- the W+ encoder and its file ------------------------------------------------------------------
def test_w_plus_encoder_grown_from_w_starts_as_it_and_outputs_one_latent_per_layer():
    model = make_model()
    y = torch.rand(5, 16) * 1000
    widened = with_layer_offsets(model.encoder, 3).eval()
    assert widened.latent_space == "w+" and model.encoder.latent_space == "w"
    w, w_plus = model.encoder(y).detach(), widened(y).detach()
    assert w_plus.shape == (5, 3, 8)
    torch.testing.assert_close(w_plus, w[:, None].expand(-1, 3, -1))
    perturbed(widened)
    moved = widened(y).detach()
    assert (moved[:, 0] - moved[:, 1]).abs().max() > 0.1  # layers now differ
    assert widened(y[0]).shape == (3, 8)  # one frame without a batch axis, as the node passes it


def test_w_plus_model_file_round_trips_with_its_latent_space(tmp_path):
    model = make_model()
    model.encoder = perturbed(with_layer_offsets(model.encoder, 3))
    path = save_model(model, tmp_path / "wplus.safetensors")
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["latent_space"] == "w+" and info["architecture"]["num_ws"] == 3
    loaded = load_model(path)
    y = torch.rand(4, 16) * 1000
    assert loaded.encoder.latent_space == "w+"
    with torch.no_grad():  # the weights the file keeps (fp16), exactly
        torch.testing.assert_close(loaded.encoder(y), as_stored(model.encoder, "fp16")(y))


def test_w_plus_ensemble_in_int8_round_trips(tmp_path):
    members = [make_model(seed=k).encoder for k in range(2)]
    for member in members[1:]:
        member.load_state_dict(members[0].state_dict() | {"net.1.weight": member.net[1].weight})
    model = make_model()
    model.encoder = perturbed(with_layer_offsets(EncoderEnsemble(members), 4), scale=0.05)
    path = save_model(model, tmp_path / "ens.safetensors", weight_format="int8")
    loaded = load_model(path)
    y = torch.rand(3, 16) * 1000
    expected = model.encoder(y).detach()
    with torch.no_grad():
        got = loaded.encoder(y)
    assert got.shape == (3, 4, 8)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_a_low_rank_offset_head_starts_at_the_w_faces_and_keeps_its_rank_in_the_file(tmp_path):
    model = make_model()
    y = torch.rand(4, 16) * 1000
    widened = with_layer_offsets(model.encoder, 3, offset_rank=2).eval()
    assert widened.offset_rank == 2 and widened.layer_offsets[0].weight.shape == (2, widened.width)
    with torch.no_grad():
        torch.testing.assert_close(widened(y), model.encoder(y)[:, None].expand(-1, 3, -1))
        widened.layer_offsets[1].weight.normal_(0, 0.5)
    model.encoder = widened
    path = save_model(model, tmp_path / "low-rank.safetensors", weight_format="int8")
    assert json.loads(path.with_suffix(".json").read_text())["architecture"]["offset_rank"] == 2
    loaded = load_model(path)
    assert loaded.encoder.offset_rank == 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.encoder(y), as_stored(widened, "int8")(y))
        assert (loaded.encoder(y)[:, 0] - loaded.encoder(y)[:, 1]).abs().max() > 0.1
    with pytest.raises(ValueError, match="offset rank"):
        MeasurementEncoder(16, 8, 32, 1, num_ws=1, offset_rank=2)


def test_low_rank_offsets_factorise_a_trained_full_head():
    """A head of rank r is kept exactly at rank r; a full-rank head loses less the more features it keeps."""
    from lsi_ros.models.encoder import low_rank_offsets

    members = [make_model(seed=k).encoder for k in range(2)]
    for member in members[1:]:
        member.load_state_dict(members[0].state_dict() | {"net.1.weight": member.net[1].weight})
    full = perturbed(with_layer_offsets(EncoderEnsemble(members), 4)).eval()
    y = torch.rand(6, 16) * 1000
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for member in full.members:  # a rank-2 head: 4 x 8 outputs from width features through 2
            left = torch.randn(member.layer_offsets.weight.shape[0], 2, generator=generator)
            member.layer_offsets.weight.copy_(left @ torch.randn(2, member.width, generator=generator))
        exact = low_rank_offsets(full, 2)
        torch.testing.assert_close(exact(y), full(y), rtol=1e-4, atol=1e-4)
        assert exact.offset_rank == 2 and isinstance(exact, EncoderEnsemble)
        perturbed(full)
        errors = [(low_rank_offsets(full, r)(y) - full(y)).abs().mean().item() for r in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]
    with pytest.raises(ValueError, match="full W\\+ offset head"):
        low_rank_offsets(exact, 1)
    with pytest.raises(ValueError, match="does not shrink"):
        low_rank_offsets(full, full.width)
    with pytest.raises(ValueError, match="differ in shape"):
        EncoderEnsemble([exact.members[0], low_rank_offsets(full, 3).members[0]])


def test_a_file_whose_latent_space_disagrees_with_its_encoder_is_refused(tmp_path):
    model = make_model()
    model.encoder = with_layer_offsets(model.encoder, 3)
    path = save_model(model, tmp_path / "wplus.safetensors")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(metadata["info"])
    info["latent_space"] = "w"
    save_file(tensors, str(path), metadata | {"info": json.dumps(info)})
    with pytest.raises(ModelFileError, match="latent space"):
        load_model(path)


def test_latent_error_of_w_plus_against_a_w_target_counts_every_layer():
    target = np.zeros((2, 4), np.float32)
    predicted = np.zeros((2, 3, 4), np.float32)
    predicted[:, 1] = 2.0
    assert np.mean(normalised_error(predicted, target, 2.0) ** 2) == pytest.approx(1 / 3)
    assert normalised_error(target, target, 1.0).shape == (2, 4)


# -- the loss terms ---------------------------------------------------------------------------------
def test_loss_weights_default_to_the_paper_and_parse_a_recipe():
    paper = losses.LossWeights()
    assert (paper.latent, paper.latent_kind, paper.l2, paper.identity, paper.perceptual) == (
        1.0,
        "l1",
        1.0,
        0.5,
        0.1,
    )
    parsed = losses.LossWeights.parse("latent=0, l2=2,identity=1,perceptual=0,latent_kind=l2")
    assert (parsed.latent, parsed.l2, parsed.identity, parsed.perceptual, parsed.latent_kind) == (
        0,
        2,
        1,
        0,
        "l2",
    )
    assert parsed.needs_faces and losses.LossWeights.parse("paper") == paper
    for bad in ("identity", "arcface=1", "l2=-1", "latent_kind=l3"):
        with pytest.raises(ValueError):
            losses.LossWeights.parse(bad)


@pytest.fixture(scope="module")
def face_loss():
    return losses.FaceLoss()


@pytest.fixture(scope="module")
def two_faces():
    """Two different MobileStyleGAN faces (FFHQ-framed, as the fixed box expects), (2, 3, 256, 256)."""
    from lsi_ros.models.generators import get_generator

    faces = get_generator("mobilestylegan").synthesize(
        get_generator("mobilestylegan").sample_latents([3, 11], 0.7)
    )
    return torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()


def test_identity_and_perceptual_are_zero_for_the_same_face_and_larger_for_another(face_loss, two_faces):
    identity, perceptual = face_loss(two_faces, two_faces)
    assert identity.abs().max() < 1e-5 and perceptual.abs().max() < 1e-6
    other = two_faces.flip(0)
    identity, perceptual = face_loss(other, two_faces)
    assert (identity > 0.01).all() and (perceptual > 0.01).all()


def test_identity_gradient_reaches_the_decoded_image_and_lowers_the_term(face_loss, two_faces):
    target, start = two_faces[:1], two_faces[1:].clone().requires_grad_(True)
    identity, perceptual = face_loss(start, target)
    (identity + perceptual).sum().backward()
    assert torch.isfinite(start.grad).all() and start.grad.abs().max() > 0
    stepped = (start - 0.5 * start.grad / start.grad.abs().max()).detach().clamp(0, 1)
    assert face_loss(stepped, target)[0].item() < identity.item()


def test_loss_terms_weigh_and_sum_and_real_photos_have_no_latent_term(face_loss, two_faces):
    predicted = torch.zeros(2, 3, 8, requires_grad=True)
    true = torch.ones(2, 8)
    decoded = (two_faces.flip(0) * 1.0).requires_grad_(True)
    terms = losses.loss_terms(losses.LossWeights(), predicted, true, two_faces, decoded, face_loss)
    assert set(terms) == {"latent", "l2", "identity", "perceptual", "total"}
    assert terms["latent"].item() == pytest.approx(1.0)  # L1 of 0 against 1
    assert terms["total"].item() == pytest.approx(sum(v.item() for k, v in terms.items() if k != "total"))
    terms["total"].backward()
    assert predicted.grad.abs().sum() > 0 and decoded.grad.abs().sum() > 0
    photos = losses.loss_terms(losses.LossWeights(), predicted, None, two_faces, decoded, face_loss)
    assert "latent" not in photos
    with pytest.raises(ValueError, match="FaceLoss"):
        losses.loss_terms(losses.LossWeights(), predicted, None, two_faces, decoded)


def test_contrast_tells_the_face_apart_from_the_bank_but_not_from_its_own_person(face_loss, two_faces):
    """The contrast term is near 0 when the decoded face is its target and no one in the bank is near,
    large when the decoded face is someone else's in the bank; the target's own bank entry is left out
    (kept in, it would be a second right answer: log 2)."""
    as_uint8 = (two_faces.permute(0, 2, 3, 1) * 255 + 0.5).byte().numpy()
    bank = face_loss.descriptors(as_uint8, progress=False)
    target = two_faces[:1]
    own = torch.tensor([[True, False]])
    right = face_loss.terms(target, target, bank, own)["contrast"].item()
    wrong = face_loss.terms(two_faces[1:], target, bank, own)["contrast"].item()
    kept_in = face_loss.terms(target, target, bank)["contrast"].item()
    assert right < 0.05 and wrong > 1.0
    assert kept_in == pytest.approx(np.log(2), abs=0.05)
    weights = losses.LossWeights.parse("contrast=0.1")
    assert weights.needs_faces and weights.identity == 0.5  # the paper's terms, and contrast beside them
    with pytest.raises(ValueError, match="bank"):
        losses.loss_terms(weights, None, None, target, target, face_loss)
    terms = losses.loss_terms(weights, None, None, target, two_faces[1:], face_loss, bank, own)
    assert terms["contrast"].item() == pytest.approx(0.1 * wrong, rel=1e-4)


def test_attributes_term_is_zero_for_the_same_face_and_pulls_gender_and_age_towards_the_target(two_faces):
    """face-api's gender and age of the decoded face against the target's: zero for the face itself,
    positive for another face, and its gradient moves the decoded face's attributes towards the
    target's; without the age/gender network it says which FaceLoss it needs."""
    face_loss = losses.FaceLoss(attributes=True)
    target, start = two_faces[:1], two_faces[1:].clone().requires_grad_(True)
    assert face_loss.terms(target, target, attributes=True)["attributes"].abs().item() < 1e-5
    term = face_loss.terms(start, target, attributes=True)["attributes"]
    age, p_male = face_loss.age_gender(target)
    start_age, start_p_male = face_loss.age_gender(start.detach())
    assert term.item() > 0.05 and term.item() == pytest.approx(
        losses.attribute_loss(start_age, start_p_male, age, p_male).item(), rel=1e-4
    )
    term.sum().backward()
    assert torch.isfinite(start.grad).all() and start.grad.abs().max() > 0
    # a small step: the age/gender network is far less smooth than the descriptor network
    stepped = (start - 0.002 * start.grad / start.grad.abs().max()).detach().clamp(0, 1)
    assert face_loss.terms(stepped, target, attributes=True)["attributes"].item() < term.item()
    weights = losses.LossWeights.parse("attributes=0.5")
    assert weights.needs_faces and weights.identity == 0.5
    terms = losses.loss_terms(weights, None, None, target, two_faces[1:], face_loss)
    assert terms["attributes"].item() == pytest.approx(0.5 * term.item(), rel=1e-4)
    with pytest.raises(ValueError, match="age/gender"):
        losses.loss_terms(weights, None, None, target, two_faces[1:], losses.FaceLoss())


def test_attribute_loss_is_a_gender_kl_plus_scaled_age_difference():
    p = torch.tensor([0.9, 0.5])
    same = losses.attribute_loss(torch.tensor([30.0, 30.0]), p, torch.tensor([30.0, 30.0]), p)
    assert same.abs().max() < 1e-6
    older = losses.attribute_loss(
        torch.tensor([40.0]), torch.tensor([0.5]), torch.tensor([30.0]), torch.tensor([0.5])
    )
    assert older.item() == pytest.approx(10.0 / losses.AGE_SCALE_YEARS)
    flipped = losses.attribute_loss(
        torch.tensor([30.0]), torch.tensor([0.1]), torch.tensor([30.0]), torch.tensor([0.9])
    )
    assert flipped.item() == pytest.approx(0.8 * np.log(9.0), rel=1e-4)  # KL(0.9 || 0.1)


def test_the_photo_itself_and_its_mirror_image_are_its_own_person_in_the_bank():
    from lsi_ros.training.finetune import same_person

    mask = same_person(torch.tensor([0, 3, 5]), num_photos=4, bank_size=8)
    assert mask.nonzero().tolist() == [[0, 0], [0, 4], [1, 3], [1, 7]]  # the generated face 5: no one
    assert same_person(torch.tensor([2]), 4, 4).nonzero().tolist() == [[0, 2]]


# -- training with the terms ------------------------------------------------------------------------
def test_trainer_with_the_papers_terms_reaches_encoder_and_patterns(dcgan_data, tmp_path):
    from lsi_ros.training.train import Trainer

    trainer = Trainer(dcgan_config(dcgan_data, losses="latent=1,l2=1,identity=0.5,perceptual=0.1"), tmp_path)
    trainer.train_step()
    for name, parameter in trainer.imager.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() > 0, name
    terms = trainer.weighted_loss(torch.zeros(2, 100), torch.ones(2, 100))
    assert {"latent", "l2", "identity", "perceptual"} <= set(terms)


def test_trainer_refuses_w_plus_of_a_one_layer_generator_and_unknown_spaces(dcgan_data, tmp_path):
    from lsi_ros.training.train import Trainer

    with pytest.raises(ValueError, match="W\\+ is its W"):
        Trainer(dcgan_config(dcgan_data, latent_space="w+"), tmp_path / "a")
    with pytest.raises(ValueError, match="latent space"):
        Trainer(dcgan_config(dcgan_data, latent_space="z"), tmp_path / "b")
    with pytest.raises(ValueError, match="finetune --utkface"):  # generated faces have no bank of people
        Trainer(dcgan_config(dcgan_data, losses="contrast=0.1"), tmp_path / "c")


# -- real photos ------------------------------------------------------------------------------------
def test_photo_finetune_in_w_plus_moves_the_offsets_and_lowers_the_image_loss(face_loss):
    """Two steps through MobileStyleGAN's torch path on two of the generator's own faces (as photos)."""
    from lsi_ros.models.generators import get_generator
    from lsi_ros.optics.patterns import bernoulli_patterns, learned_patterns
    from lsi_ros.training.finetune import PhotoFinetuneConfig, finetune_on_photos

    generator = get_generator("mobilestylegan")
    w = generator.sample_latents([5, 6], 0.7)
    photos = (generator.synthesize(w) * 255 + 0.5).astype(np.uint8)
    torch.manual_seed(0)
    encoder = MeasurementEncoder(64, 512, width=32, depth=1)
    encoder.latent_mean.copy_(torch.from_numpy(generator.mean_latent()))
    encoder.latent_std.fill_(0.5)
    dense = bernoulli_patterns(64, 256, seed=0).dense().astype(bool)
    from lsi_ros.models.checkpoint import LsiModel

    model = LsiModel("t-m64", learned_patterns(dense, model_id="t-m64"), encoder.eval(), {})
    config = PhotoFinetuneConfig(steps=3, batch_size=2, lr=1e-3, losses="l2=1,identity=0.5,perceptual=0.1")
    tuned, history = finetune_on_photos(model, photos, generator, config, face_loss, progress=False)
    assert tuned.encoder.latent_space == "w+" and tuned.encoder.num_ws == generator.num_ws
    assert tuned.encoder.layer_offsets.weight.abs().max() > 0  # the per-layer offsets learnt
    assert set(history[0]) == {"step", "l2", "identity", "perceptual", "total"}
    assert tuned.info["photo_finetune"]["photos"] == 2
    compact = replace(config, steps=1, offset_rank=4)
    again, _ = finetune_on_photos(model, photos, generator, compact, face_loss, progress=False)
    assert again.encoder.offset_rank == 4
    # tuned once more without a rank: the W+ model keeps its compact head and what it learnt
    kept, _ = finetune_on_photos(
        again, photos, generator, replace(compact, offset_rank=0), face_loss, progress=False
    )
    assert kept.encoder.offset_rank == 4
    moved = kept.encoder.layer_offsets[0].weight - again.encoder.layer_offsets[0].weight
    assert moved.abs().max() < 0.01  # one small step from its own head, not a freshly drawn one
    with pytest.raises(ValueError, match="uint8"):
        finetune_on_photos(model, photos.astype(np.float32), generator, config, face_loss, progress=False)


def test_photo_finetune_of_a_w_model_on_the_dcgan_double_lowers_its_loss(dcgan_model):
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training.finetune import PhotoFinetuneConfig, finetune_on_photos

    dcgan_model = load_model(dcgan_model)
    generator = get_generator("dcgan")
    photos = (generator.synthesize(generator.sample_latents(list(range(900, 916)))) * 255).astype(np.uint8)
    config = PhotoFinetuneConfig(steps=40, batch_size=16, lr=1e-3, latent_space="w", losses="l2=1,identity=0")
    tuned, history = finetune_on_photos(dcgan_model, photos, generator, config, progress=False)
    assert tuned.encoder.latent_space == "w"
    assert np.mean([h["total"] for h in history[-2:]]) < history[0]["total"]
    with pytest.raises(ValueError, match="W\\+ is its W"):
        finetune_on_photos(dcgan_model, photos, generator, replace(config, latent_space="w+"), progress=False)


def test_generated_training_faces_join_the_photos_under_the_same_losses(dcgan_model, dcgan_data):
    """``--generated N``: the model's own first N training faces, read from the data cache, train beside
    the photos; the report counts both, and faces of another size are refused."""
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training import data
    from lsi_ros.training.finetune import PhotoFinetuneConfig, finetune_on_photos, generated_training_faces

    model = load_model(dcgan_model)
    generator = get_generator("dcgan")
    side = generator.resolution
    assert generated_training_faces(model, 0, side, root=dcgan_data) is None
    generated = generated_training_faces(model, 6, side, root=dcgan_data)
    assert generated.shape == (6, side, side, 3) and generated.dtype == np.uint8
    assert np.array_equal(generated, data.load("dcgan", 0, 6, dcgan_data).images)
    half = generated_training_faces(model, 6, side // 2, root=dcgan_data)
    assert half.shape == (6, side // 2, side // 2, 3)
    photos = (generator.synthesize(generator.sample_latents([950, 951])) * 255).astype(np.uint8)
    config = PhotoFinetuneConfig(steps=2, batch_size=4, lr=1e-3, latent_space="w", losses="l2=1,identity=0")
    tuned, _ = finetune_on_photos(model, photos, generator, config, progress=False, generated=generated)
    assert tuned.info["photo_finetune"]["photos"] == 2
    assert tuned.info["photo_finetune"]["generated_faces"] == 6
    assert "previous" not in tuned.info["photo_finetune"]
    again, _ = finetune_on_photos(tuned, photos, generator, replace(config, steps=1), progress=False)
    record = again.info["photo_finetune"]
    assert record["generated_faces"] == 0 and record["config"]["steps"] == 1
    assert record["previous"]["generated_faces"] == 6 and record["previous"]["config"]["steps"] == 2
    with pytest.raises(ValueError, match="generated faces must be"):
        finetune_on_photos(model, photos, generator, config, progress=False, generated=generated[:, ::2, ::2])
    with pytest.raises(ValueError, match="zero or more"):
        generated_training_faces(model, -1, side, root=dcgan_data)


def test_a_mirrored_photo_is_measured_and_scored_as_the_mirrored_face():
    """``--mirror``: about half the faces drawn come mirrored, and for each of those both the scene on
    the DMD and the target are the mirrored face's; without it a batch is the faces as they are. The
    scenes measure as the forward model measures the photos."""
    from lsi_ros.optics import ForwardModel
    from lsi_ros.optics.patterns import bernoulli_patterns
    from lsi_ros.training.finetune import photo_batch, photo_scenes

    pattern_set = bernoulli_patterns(16, 32, seed=3)
    photos = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    scenes = photo_scenes(photos, 32)
    mirrored = photo_scenes(np.ascontiguousarray(photos[:, :, ::-1]), 32)
    assert not torch.equal(scenes, mirrored)  # random faces are not symmetric
    matrix = torch.from_numpy(pattern_set.matrix())
    expected = ForwardModel(pattern_set).measure(photos.astype(np.float32) / 255.0)
    np.testing.assert_allclose((scenes.float() / 255.0 @ matrix.T).numpy(), expected, rtol=1e-5)
    targets, index = torch.from_numpy(photos), torch.tensor([0, 1, 2, 3, 4, 5] * 20)
    on_dmd, images = photo_batch(scenes, targets, index)
    upright = targets[index].permute(0, 3, 1, 2) / 255.0
    assert torch.equal(on_dmd, scenes[index] / 255.0) and torch.equal(images, upright)
    on_dmd, images = photo_batch(scenes, targets, index, True, torch.Generator().manual_seed(1))
    as_is = (on_dmd == scenes[index] / 255.0).all(1)
    flipped = (on_dmd == mirrored[index] / 255.0).all(1)
    assert torch.equal(as_is, ~flipped) and 40 < int(flipped.sum()) < 80
    assert torch.equal(images[flipped], upright[flipped].flip(-1))
    assert torch.equal(images[as_is], upright[as_is])
    assert photo_scenes(photos, 16).shape == (6, 256)  # at the patterns' resolution


def test_patterns_learnt_on_photos_make_a_new_pattern_set_that_starts_from_the_models(dcgan_model, tmp_path):
    """``--pattern-lr``: the patterns start as the model's, move where the loss pushes them, and the
    tuned model is a new pattern set that records which one it came from and how much changed."""
    from lsi_ros.models.encoder import BinaryPatterns
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training.finetune import PhotoFinetuneConfig, finetune_on_photos

    base = load_model(dcgan_model)
    matrix = torch.from_numpy(base.pattern_set.matrix())
    start = BinaryPatterns.from_binary(matrix, 0.05)
    assert torch.equal(start().detach(), matrix) and torch.equal(start.binary().float(), matrix)
    with pytest.raises(ValueError, match="margin"):
        BinaryPatterns.from_binary(matrix, 0.0)
    generator = get_generator("dcgan")
    photos = (generator.synthesize(generator.sample_latents(list(range(900, 916)))) * 255).astype(np.uint8)
    config = PhotoFinetuneConfig(
        steps=30, batch_size=16, lr=1e-3, latent_space="w", losses="l2=1,identity=0", pattern_lr=0.05
    )
    tuned, history = finetune_on_photos(base, photos, generator, config, progress=False)
    changed = history[-1]["pixels_changed"]
    assert 0 < changed < 0.5
    tuned_matrix = tuned.pattern_set.matrix()
    assert np.mean(tuned_matrix != base.pattern_set.matrix()) == pytest.approx(changed)
    assert tuned.pattern_set.pattern_set_id != base.pattern_set.pattern_set_id
    assert tuned.model_id == f"{base.model_id}-patterns-ft" and "patterns_from" not in tuned.info
    assert tuned.info["patterns_tuned_from"]["pattern_set_id"] == base.pattern_set.pattern_set_id
    again = load_model(save_model(tuned, tmp_path / "tuned.safetensors"))
    assert again.pattern_set.pattern_set_id == tuned.pattern_set.pattern_set_id
    frozen, frozen_history = finetune_on_photos(
        base, photos, generator, replace(config, steps=2, pattern_lr=0.0), progress=False
    )
    assert frozen.pattern_set.pattern_set_id == base.pattern_set.pattern_set_id
    assert "pixels_changed" not in frozen_history[-1]
    with pytest.raises(ValueError, match="pattern learning rate"):
        finetune_on_photos(base, photos, generator, replace(config, pattern_lr=-1.0), progress=False)


def test_the_utkface_training_source_holds_no_held_out_face():
    from lsi_ros.evaluation import real_faces

    folder = real_faces.default_real_faces_dir() / real_faces.UTKFACE_FOLDER
    if not folder.is_dir():
        pytest.skip("no shared UTKFace photos on this machine")
    train = real_faces.utkface_faces(folder, split="train")[:300]
    held = {f.key for f in real_faces.utkface_faces(folder)}
    assert train and not any(real_faces.is_held_out(f.key) or f.key in held for f in train)


def test_finetune_command_on_utkface_training_photos(dcgan_model, tmp_path, capsys):
    """`lsi finetune --utkface N` end to end on the DCGAN double: a bad recipe is one clear line and
    writes nothing; a good one writes a model file with the same patterns and a report."""
    from lsi_ros.cli import main
    from lsi_ros.evaluation import real_faces

    if not (real_faces.default_real_faces_dir() / real_faces.UTKFACE_FOLDER).is_dir():
        pytest.skip("no shared UTKFace photos on this machine")
    output, report = tmp_path / "ft.safetensors", tmp_path / "ft.report.json"
    common = ["finetune", "--utkface", "4", "--model", str(dcgan_model), "--output", str(output)]
    assert main([*common, "--losses", "arcface=1"]) == 2
    assert "bad loss term" in capsys.readouterr().err and not output.exists()
    assert main([*common, "--report", str(tmp_path / "ft.json")]) == 2  # the model's own metadata copy
    assert "ft.report.json" in capsys.readouterr().err and not output.exists()
    assert main([*common, "--latent-space", "w+"]) == 2
    assert "W+ is its W" in capsys.readouterr().err and not output.exists()
    recipe = ["--latent-space", "w", "--losses", "l2=1,identity=0.5,contrast=0.1", "--steps", "2"]
    assert main([*common, *recipe, "--batch-size", "2", "--mirror", "--report", str(report)]) == 0
    tuned, base = load_model(output), load_model(dcgan_model)
    assert tuned.pattern_set.pattern_set_id == base.pattern_set.pattern_set_id
    written = json.loads(report.read_text())
    assert written["photos"] == 4 and written["loss_weights"]["identity"] == 0.5
    assert json.loads(output.with_suffix(".json").read_text())["model_id"] == tuned.model_id
    assert {"l2", "identity", "contrast", "total"} <= set(written["history"][-1])


@pytest.mark.parametrize("base_name", ["m32", "m128"])
def test_the_shipped_real_people_models_are_their_base_in_w_plus_with_a_compact_head(base_name):
    """models/m32-real and m128-real: the base model's patterns (the DMD shows the same set), a W+ code
    per frame from a rank-64 offset head, in a file under 20 MiB; a frame of the base's measurements
    gives one latent per layer."""
    from lsi_ros.models.registry import find_model

    path = find_model(f"{base_name}-real")
    real, base = load_model(path), load_model(find_model(base_name))
    assert real.model_id == f"lsi-mobilestylegan-{base_name}-real"
    assert real.pattern_set.pattern_set_id == base.pattern_set.pattern_set_id
    assert real.encoder.latent_space == "w+" and real.encoder.offset_rank == 64
    assert path.stat().st_size < 20 * 2**20
    assert real.info["photo_finetune"]["photos"] > 0
    y = torch.rand(2, base.num_measurements) * 1000
    with torch.no_grad():
        w_plus, w = real.encoder(y), base.encoder(y)
    assert w_plus.shape == (2, real.encoder.num_ws, 512) and torch.isfinite(w_plus).all()
    assert (w_plus - w[:, None]).abs().max() > 0  # it decodes other faces than m128 does


def test_photos_larger_than_the_patterns_are_measured_as_the_camera_frames_them():
    """Photos at the generator's resolution, patterns at a coarser one: the scenes are the photos
    shrunk onto the DMD grid as ``scene_on_dmd`` does (within the rounding of 8-bit pixels)."""
    from lsi_ros.optics.forward import ForwardModel
    from lsi_ros.optics.objective import scene_on_dmd
    from lsi_ros.optics.patterns import hadamard_reference_patterns
    from lsi_ros.training.finetune import photo_scenes

    pattern_set = hadamard_reference_patterns(16, 8)
    photos = np.random.default_rng(3).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    expected = ForwardModel(pattern_set).measure(np.stack([scene_on_dmd(p / 255.0, 8) for p in photos]))
    scenes = photo_scenes(photos, 8).float() / 255.0
    measured = (scenes @ torch.from_numpy(pattern_set.matrix()).T).numpy()
    assert measured.shape == (7, 16)
    np.testing.assert_allclose(measured, expected, atol=3 * 64 * 0.5 / 255)
    assert np.ptp(measured[:, 0]) > 0  # different photos, different values
