"""Find and frame: registered patterns at mirror level, the framing geometry, the re-localisation policy,
and the locator on a synthetic scene (a face found where it is, an empty field left empty)."""

import itertools

import numpy as np
import pytest
import torch

from lsi_ros.evaluation.face_analysis import NETWORKS, FaceAnalyzer, default_face_api_dir
from lsi_ros.framing.field import (
    carry_points,
    field_placement,
    framed_view,
    measure_field,
    registered_patterns,
    registration_from_quad,
    registration_quad,
)
from lsi_ros.framing.tracking import LocalisationCost, RelocalisationPolicy, relative_change
from lsi_ros.framing.unframed import (
    background,
    face_box,
    face_registration,
    unframed_scene,
    walking_sequence,
)
from lsi_ros.optics import DLP6500, GridRegistration, bernoulli_patterns, placement

FIELD = (512, 512)


def test_a_shift_of_k_mirrors_moves_every_pattern_by_exactly_k():
    patterns = bernoulli_patterns(6, 64, seed=3)  # 8 mirrors a sampling pixel on the 512² field
    still = registered_patterns(patterns, None, FIELD)
    for rows, cols in ((0, 1), (3, 0), (-5, 7)):
        moved = registered_patterns(patterns, GridRegistration((rows / 8, cols / 8)), FIELD)
        assert np.array_equal(
            np.roll(still, (rows, cols), axis=(1, 2))[:, 16:-16, 16:-16], moved[:, 16:-16, 16:-16]
        )


def test_a_quarter_turn_turns_every_pattern_counter_clockwise_mirror_for_mirror():
    patterns = bernoulli_patterns(3, 64, seed=4)
    still = registered_patterns(patterns, None, FIELD)
    turned = registered_patterns(patterns, GridRegistration(roll=90.0), FIELD)
    assert np.array_equal(turned, np.rot90(still, 1, axes=(1, 2)))


def test_measure_field_is_the_mirror_level_sum_over_the_registered_patterns():
    rng = np.random.default_rng(0)
    image = rng.random((*FIELD, 3))
    patterns = bernoulli_patterns(5, 64, seed=5)
    registration = GridRegistration((3.3, -7.1), 0.61, 12.0)
    shown = registered_patterns(patterns, registration, FIELD).astype(np.float64)
    mirrors_per_pixel = (field_placement(64, registration, FIELD).block * 0.61) ** 2
    expected = shown.reshape(5, -1) @ image.sum(-1).ravel() / mirrors_per_pixel
    np.testing.assert_allclose(measure_field(image, patterns, registration), expected, rtol=1e-5)


def test_a_quad_and_its_registration_are_one_and_the_same():
    registration = face_registration((300.0, 200.0), 0.3, -11.0, FIELD)
    quad = registration_quad(registration, FIELD)
    back = registration_from_quad(quad, FIELD)
    np.testing.assert_allclose(back.shift, registration.shift, atol=1e-9)
    assert back.scale == pytest.approx(registration.scale) and back.roll == pytest.approx(-11.0)
    box = face_box(registration, FIELD)
    assert box[2] - box[0] > 0.3 * FIELD[1]  # a rolled face's axis-aligned box is wider than the face
    # The top edge runs from top-left to top-right: turned 11° clockwise, its right end lies lower.
    assert quad[3, 1] > quad[0, 1]


def test_carried_landmarks_keep_their_place_in_the_moved_grid():
    """A face's landmarks carried from one registration to another are the same sampling pixels of
    the grid: the grid's corners and centre go to the moved grid's, a point off the corners too."""
    before = face_registration((300.0, 200.0), 0.3, -11.0, FIELD)
    after = face_registration((320.0, 190.0), 0.36, 4.0, FIELD)
    quad_before, quad_after = registration_quad(before, FIELD), registration_quad(after, FIELD)
    np.testing.assert_allclose(carry_points(quad_before, before, after, FIELD), quad_after, atol=1e-9)
    inside = 0.3 * quad_before[0] + 0.5 * quad_before[1] + 0.2 * quad_before[2]
    expected = 0.3 * quad_after[0] + 0.5 * quad_after[1] + 0.2 * quad_after[2]
    np.testing.assert_allclose(carry_points(inside[None], before, after, FIELD)[0], expected, atol=1e-9)
    np.testing.assert_allclose(carry_points(quad_before, before, before, FIELD), quad_before, atol=1e-9)


def test_framed_view_of_the_hand_registration_is_the_face_that_was_placed():
    face = np.zeros((256, 256, 3), np.uint8)
    face[64:192, 96:160] = 255  # a bright bar in the crop's centre
    scene = unframed_scene("bar", face, np.random.default_rng(1), FIELD, widths=(0.5, 0.5), max_roll=0.0)
    view = framed_view(scene.image, scene.registration, 256)
    assert view.shape == (256, 256, 3)
    assert view[100:160, 110:146].mean() > 0.95  # the bar where it was in the crop


def test_a_rolled_registration_that_leaves_the_mirror_array_is_refused():
    assert placement(DLP6500, 256, GridRegistration(roll=2.0)).registration.roll == 2.0
    with pytest.raises(ValueError, match="off the DLP6500"):
        placement(DLP6500, 256, GridRegistration(roll=10.0))  # the corners of 1024² turn past its 1080 rows


def test_the_policy_relocalises_on_change_and_every_n_frames():
    policy = RelocalisationPolicy(every=5, change=0.1)
    y = np.random.default_rng(0).random(128)
    assert not policy.should_localise(y)
    assert not policy.should_localise(y * 1.01 + 0.5)  # exposure and offset are not motion
    assert relative_change(np.roll(y, 3), y) > 0.5
    assert policy.should_localise(np.roll(y, 3))
    policy.localised()
    assert [policy.should_localise(y) for _ in range(5)] == [False] * 4 + [True]
    cost = LocalisationCost(128)
    cost.add_localisation(3000, 316.0)
    for _ in range(100):
        cost.add_frame()
    assert cost.fraction == pytest.approx(3000 / (3000 + 12800))


def test_a_walking_person_crosses_the_field_and_comes_closer():
    face = np.full((256, 256, 3), 128, np.uint8)
    frames = list(walking_sequence(face, 5, FIELD))
    centres = [(f.box[0] + f.box[2]) / 2 for f in frames]
    assert np.all(np.diff(centres) > 0) and frames[-1].face_width > frames[0].face_width


MODEL_DIR = default_face_api_dir()
needs_face_api = pytest.mark.skipif(
    not all((MODEL_DIR / f"{n}-weights_manifest.json").is_file() for n in NETWORKS),
    reason=f"face-api weights not cached in {MODEL_DIR}: run `lsi label --fetch` once (needs npm)",
)


def test_the_tracker_moves_its_window_with_a_walking_face_and_pays_for_each_new_window():
    """The face walks further than the first window reaches: the tracker re-centres its window (a
    16² image, 257 patterns, matched against the face as first found) and stays on the face."""
    from lsi_ros.framing.localize import FaceLocator, Localization, window_registration
    from lsi_ros.framing.tracking import FaceTracker
    from lsi_ros.models.generators import get_generator
    from lsi_ros.optics import PhotodiodeModel

    torch.set_num_threads(1)
    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_000], 0.7))[0] * 255).astype(np.uint8)
    frames = list(walking_sequence(face, 120, FIELD))[::2]  # a tracker update every other frame
    locator = FaceLocator(None, None, FIELD, photodiode=PhotodiodeModel(), seed=1)
    first = frames[0]
    side = locator.config.track_window * (first.box[2] - first.box[0])
    window = window_registration((first.box[:2] + first.box[2:]) / 2, side, 128, FIELD)
    image = locator.acquire(first.image, locator.zoom, window)
    x0, y0, x1, y1 = first.box
    landmarks = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])  # the tracker's mask spans them
    tracker = FaceTracker(locator)
    tracker.start(
        Localization(first.box, landmarks, 1.0, first.registration, 0, 0, 0, window=window, image=image)
    )
    shown = []
    for frame in frames[1:31]:
        _, _, ok = tracker.update(frame.image)
        assert ok
        shown.append(tracker.last_patterns)
        centre, truth = (tracker.box()[:2] + tracker.box()[2:]) / 2, (frame.box[:2] + frame.box[2:]) / 2
        assert np.hypot(*(centre - truth)) < 0.3 * (frame.box[2] - frame.box[0])
    assert (tracker.cost, tracker.anchor_cost) == (16, 257)
    assert tracker.anchors >= 1 and set(shown) == {16, 16 + 257}


def test_the_measurement_tracker_follows_shift_scale_and_roll_from_the_models_own_measurements():
    """A third of a walk (the face crosses a fifth of the field, grows by two thirds, rolls ±6°)
    measured only through the model's 128 patterns on the tracked registration, on the full field (a
    grid on fewer mirrors than sampling pixels is not the image the patterns expect): the tracker keeps
    the face framed as it was localised within a few of the face's own sampling pixels, a few percent
    of scale and a degree or two of roll, with no pattern of its own but a rare coarse look at new
    background; once the person has left, the fit fails and asks for a localisation."""
    from lsi_ros.framing.field import DEFAULT_FIELD
    from lsi_ros.framing.localize import FaceLocator, Localization, window_registration
    from lsi_ros.framing.tracking import MeasurementTracker
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel
    from lsi_ros.optics.forward import ForwardModel

    torch.set_num_threads(1)
    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_001], 0.7))[0] * 255).astype(np.uint8)
    scenes = list(itertools.islice(walking_sequence(face, 240, DEFAULT_FIELD), 80))  # a third of a walk
    photodiode, rng = PhotodiodeModel(), np.random.default_rng(2)
    pattern_set = load_model(find_model("m128")).pattern_set
    model = ForwardModel(pattern_set, np.float32)
    locator = FaceLocator(None, None, DEFAULT_FIELD, photodiode=photodiode, seed=1)
    first = scenes[0]
    side = locator.config.zoom_window * (first.box[2] - first.box[0])
    window = window_registration((first.box[:2] + first.box[2:]) / 2, side, 128, DEFAULT_FIELD)
    image = locator.acquire(first.image, locator.zoom, window)
    tracker = MeasurementTracker(locator, pattern_set, photodiode)
    tracker.start(Localization(first.box, None, 1.0, first.registration, 0, 0, 0, window=window, image=image))
    errors, looks = [], 0
    for scene in scenes:
        registration = tracker.registration
        truth = scene.registration
        errors.append(
            (
                np.hypot(*np.subtract(registration.shift, truth.shift)) / truth.scale,
                abs(registration.scale / truth.scale - 1),
                abs(registration.roll - truth.roll),
            )
        )
        _, _, ok = tracker.follow(measure_field(scene.image, model, registration, photodiode, rng))
        assert ok and tracker.last_patterns == 0
        if tracker.wants_look:
            assert tracker.look_again(scene.image) == tracker.anchor_cost == 65  # 8² and the ambient
            looks += 1
    centre, scale, roll = np.array(errors).T
    moved = (
        np.hypot(*np.subtract(scenes[-1].registration.shift, first.registration.shift))
        / first.registration.scale
    )
    assert moved > 150  # face pixels: far beyond what a fixed registration could frame
    assert scenes[-1].face_width / first.face_width > 1.5
    assert np.median(centre) < 2 and np.percentile(centre, 95) < 4
    assert np.median(scale) < 0.025 and np.median(roll) < 2
    assert 1 <= looks and looks * tracker.anchor_cost < 0.1 * 128 * len(scenes)
    # The person leaves: the walk's background alone no longer fits, and a localisation is asked for.
    empty = background(DEFAULT_FIELD, np.random.default_rng(0))
    _, _, ok = tracker.follow(measure_field(empty, model, tracker.registration, photodiode, rng))
    assert not ok and not tracker.still_holds
    # A tracker that asks again once the face has grown by a fifth still holds it when it asks.
    tracker = MeasurementTracker(locator, pattern_set, photodiode, regrow=1.2)
    tracker.start(Localization(first.box, None, 1.0, first.registration, 0, 0, 0, window=window, image=image))
    for scene in scenes:
        _, _, ok = tracker.follow(measure_field(scene.image, model, tracker.registration, photodiode, rng))
        if tracker.wants_look:
            tracker.look_again(scene.image)
        if not ok:
            break
    assert not ok and tracker.still_holds and scene.face_width / first.face_width > 1.15


def _locator(**config):
    from lsi_ros.framing.finder import load_face_finder
    from lsi_ros.framing.localize import FaceLocator, LocatorConfig
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel

    torch.set_num_threads(1)
    analyzer = FaceAnalyzer(networks=("face_landmark_68_model",))
    finder = load_face_finder(find_model("face-finder"))
    return FaceLocator(finder, analyzer, config=LocatorConfig(**config), photodiode=PhotodiodeModel())


@needs_face_api
def test_the_locator_frames_a_face_where_it_is():
    from lsi_ros.models.generators import get_generator

    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_003], 0.7))[0] * 255).astype(np.uint8)
    locator = _locator()
    scene = unframed_scene("face", face, np.random.default_rng(7), widths=(0.3, 0.3))
    found = locator.locate(scene.image)
    # A zoom whose landmarks shrank onto part of the face in every crop is followed by a tighter one.
    assert found.found and found.stages in (["coarse", "zoom"], ["coarse", "zoom", "retry"])
    assert found.patterns == locator.coarse_cost + (len(found.stages) - 1) * locator.zoom_cost
    assert found.display_ms == pytest.approx(1000 * found.patterns / locator.timing.pattern_rate_hz)
    hand, located = scene.registration, found.registration
    grid_pixels = np.hypot(*np.subtract(hand.shift, located.shift))  # in the model's 256² sampling pixels
    assert (
        grid_pixels < 12 and abs(located.scale / hand.scale - 1) < 0.1 and abs(located.roll - hand.roll) < 5
    )
    # A face a tracker still holds: a tight zoom round its box, with half the zoom's patterns, frames it
    # as well; round a box where no face is, the wide zoom and then the whole field are tried in turn.
    refreshed = locator.locate(scene.image, near=found.box, held=True)
    assert refreshed.found and refreshed.stages == ["refresh"]
    assert refreshed.patterns == locator.refresh.num_patterns + 1 == locator.zoom_cost // 2 + 1
    again = refreshed.registration
    assert np.hypot(*np.subtract(hand.shift, again.shift)) < 12 and abs(again.scale / hand.scale - 1) < 0.1
    corner = np.array([0.0, 0.0, 40.0, 40.0])
    lost = locator.locate(scene.image, near=corner, held=True)
    assert lost.stages[0] == "refresh" and "zoom" in lost.stages
    assert lost.patterns > refreshed.patterns + locator.zoom_cost


@needs_face_api
def test_landmarks_that_never_agree_with_the_finder_get_one_tighter_zoom():
    """Landmarks that disagree with the finder on the face's size in every crop: one more zoom, tighter
    round the finder's box, and no more (a locator that accepts no size at all finds no face)."""
    from lsi_ros.models.generators import get_generator

    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_003], 0.7))[0] * 255).astype(np.uint8)
    scene = unframed_scene("face", face, np.random.default_rng(7), widths=(0.3, 0.3))
    locator = _locator(max_size_disagreement=1.0)
    found = locator.locate(scene.image)
    assert not found.found and found.stages == ["coarse", "zoom", "retry"]
    assert found.patterns == locator.coarse_cost + 2 * locator.zoom_cost
    no_retry = _locator(max_size_disagreement=1.0, retry_window=locator.config.zoom_window)
    assert no_retry.locate(scene.image).stages == ["coarse", "zoom"]


@needs_face_api
def test_each_walk_draws_its_own_noise_and_the_walks_are_averaged():
    """evaluate_walks: a walk's numbers do not depend on what the camera and the locator measured
    before it (each walk reseeds their noise), and the summary is the mean over the walks (the cost
    also as its largest)."""
    from lsi_ros.evaluation.framing import FramedImaging, evaluate_walks
    from lsi_ros.framing.tracking import MeasurementTracker
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel

    generator = get_generator("mobilestylegan")
    faces = np.rint(generator.synthesize(generator.sample_latents([1_000_000, 1_000_001], 0.7)) * 255)
    faces = faces.astype(np.uint8)
    locator = _locator()
    imaging = FramedImaging(load_model(find_model("m128")), generator, PhotodiodeModel())

    def walks():
        return evaluate_walks(
            locator, imaging, faces, 6, lambda: MeasurementTracker(locator, imaging.model.pattern_set)
        )

    first = walks()
    imaging.rng.normal(size=100)  # noise drawn in between, as the scene sets before the walks draw it
    locator.rng.normal(size=100)
    again = walks()
    assert first["per_walk"] == again["per_walk"] and first["walks"] == 2
    per_walk = first["per_walk"]
    mean = np.mean([w["fraction_of_patterns"] for w in per_walk])
    assert first["fraction_of_patterns"] == pytest.approx(mean, abs=1e-4)
    assert first["localisations_max"] == max(w["localisations"] for w in per_walk) >= 1
    assert [w["face"] for w in per_walk] == [0, 1]


@needs_face_api
def test_the_locator_leaves_an_empty_field_empty_after_one_coarse_look():
    locator = _locator()
    empty = locator.locate(unframed_scene("empty", None, np.random.default_rng(8)).image)
    assert not empty.found and empty.registration is None and empty.box is None
    assert empty.stages in (["coarse"], ["coarse", "zoom"])
    assert empty.patterns == locator.coarse_cost + (locator.zoom_cost if "zoom" in empty.stages else 0)


@needs_face_api
def test_the_fitted_framing_offset_centres_the_located_grid_on_the_generators_framing():
    """The landmark square sits a few sampling pixels off the generator's framing: the fitted offset
    moves the located grid onto it, scene for scene closer than without."""
    from lsi_ros.evaluation.framing import fit_framing_offset, registration_error
    from lsi_ros.framing.unframed import generated_faces, unframed_scenes
    from lsi_ros.models.generators import get_generator

    faces = generated_faces(get_generator("mobilestylegan"), 750_000, 3)
    fitted = fit_framing_offset(_locator(framing_offset=(0.0, 0.0), framing_correction=False), faces, seed=3)
    assert (fitted["faces"], fitted["found"]) == (3, 3) and 1 < np.hypot(*fitted["framing_offset"]) < 10
    errors = {}
    for offset in ((0.0, 0.0), tuple(fitted["framing_offset"])):
        locator = _locator(framing_offset=offset, framing_correction=False)
        errors[offset] = [
            registration_error(locator.locate(scene.image).registration, scene.registration)["centre_face_px"]
            for scene in unframed_scenes(faces, 3, 0, seed=3, field_shape=locator.field_shape)
        ]
    before, after = errors.values()
    assert np.median(after) < np.median(before)


@needs_face_api
def test_the_locator_moves_its_framing_by_the_finders_correction():
    """The same scene and noise, with and without a correction that says "two sampling pixels further
    down, 5 % larger, 1° more roll": the located grid moves by exactly that, in its own pixels."""
    from lsi_ros.framing.correction import FramingCorrection, residual
    from lsi_ros.models.generators import get_generator

    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_003], 0.7))[0] * 255).astype(np.uint8)
    scene = unframed_scene("face", face, np.random.default_rng(7), widths=(0.3, 0.3))
    plain = _locator(framing_correction=False).locate(scene.image).registration
    locator = _locator()
    bias = [2.0, 0.0, np.log(1.05), 1.0]
    locator.finder.framing_correction = FramingCorrection(np.zeros(136), np.zeros((136, 4)), np.array(bias))
    corrected = locator.locate(scene.image).registration
    assert residual(plain, corrected) == pytest.approx(bias)


@needs_face_api
def test_a_refining_zoom_pays_its_own_patterns_and_frames_the_face():
    from lsi_ros.models.generators import get_generator

    generator = get_generator("mobilestylegan")
    face = np.rint(generator.synthesize(generator.sample_latents([1_000_004], 0.7))[0] * 255).astype(np.uint8)
    scene = unframed_scene("face", face, np.random.default_rng(7), widths=(0.3, 0.3))
    locator = _locator(refine_window=1.3, refine_patterns=1024)
    found = locator.locate(scene.image)
    assert found.found and found.patterns == locator.coarse_cost + locator.zoom_cost + 1024 + 1
    assert abs(found.registration.scale / scene.registration.scale - 1) < 0.1


def test_landmarks_must_agree_with_the_finder_on_the_faces_size():
    """The FFHQ square of a face w wide is w / FACE_WIDTH_IN_CROP wide; up to 2x either way agrees."""
    from lsi_ros.framing.localize import FaceLocator
    from lsi_ros.framing.unframed import FACE_WIDTH_IN_CROP

    locator = FaceLocator(None, None, FIELD)
    box = np.array([10.0, 10.0, 40.0, 40.0])
    for factor, agrees in ((1.0, True), (1.9, True), (1 / 1.9, True), (2.1, False), (1 / 2.1, False)):
        side = factor * 30.0 / FACE_WIDTH_IN_CROP
        quad = np.array([[0, 0], [0, side], [side, side], [side, 0]])
        assert locator._agrees_in_size(quad, box) is agrees


def test_a_moved_hand_framing_lies_that_far_in_the_faces_own_grid():
    """The sensitivity row of the unframed evaluation moves the hand framing by k of the face's own
    sampling pixels, whatever the face's scale and roll."""
    from lsi_ros.evaluation.framing import moved_registration, registration_error
    from lsi_ros.optics.dmd import GridRegistration

    hand = GridRegistration((12.0, -30.0), 0.4, 11.0)
    for angle in (0.0, 1.0, 4.0):
        moved = moved_registration(hand, 2.0, angle)
        assert np.allclose(hand.to_grid(np.asarray(moved.shift)), [2 * np.sin(angle), 2 * np.cos(angle)])
        error = registration_error(moved, hand)
        assert error["centre_face_px"] == pytest.approx(2.0)
        assert error["centre_px"] == pytest.approx(0.8)
        assert (moved.scale, moved.roll) == (hand.scale, hand.roll)


def test_unframed_scenes_are_made_one_at_a_time_in_the_order_of_one_random_stream():
    from lsi_ros.framing.unframed import unframed_scenes

    faces = np.zeros((2, 16, 16, 3), np.uint8) + np.array([40, 200], np.uint8)[:, None, None, None]
    scenes = unframed_scenes(faces, 3, 1, seed=5, field_shape=(64, 64))
    assert iter(scenes) is scenes  # a generator: no field is made before it is taken
    rng = np.random.default_rng(5)
    expected = [unframed_scene(f"face {i % 2}", faces[i % 2], rng, (64, 64)) for i in range(3)]
    expected.append(unframed_scene("empty 0", None, rng, (64, 64)))
    for scene, wanted in zip(scenes, expected, strict=True):
        assert scene.name == wanted.name and np.array_equal(scene.image, wanted.image)


@needs_face_api
def test_scored_scenes_keep_their_field_image_only_where_a_figure_needs_it():
    """evaluate_scenes holds hundreds of scenes: only the records it is asked to keep hold their 12 MB
    field image; every record keeps what the summary reads."""
    from lsi_ros.evaluation.framing import FramedImaging, evaluate_scenes
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel

    generator = get_generator("mobilestylegan")
    faces = np.rint(generator.synthesize(generator.sample_latents([1_000_000, 1_000_001], 0.7)) * 255)
    faces = faces.astype(np.uint8)
    locator = _locator()
    imaging = FramedImaging(load_model(find_model("m128")), generator, PhotodiodeModel())
    summary, records = evaluate_scenes(locator, imaging, FaceAnalyzer(), faces, ["a", "b"], 1, 0, "test", {0})
    assert [r["scene"].image is not None for r in records] == [True, False, False]
    assert records[0]["scene"].image.shape == (*locator.field_shape, 3)
    assert [r["scene"].has_face for r in records] == [True, True, False]
    assert all("hand_ssim" in r and r["scene"].box is not None for r in records[:2])
    assert summary["n_face_scenes"] == 2 and summary["n_empty_scenes"] == 1
