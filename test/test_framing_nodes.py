"""Framing on the ROS side, real processes and DDS: dmd_driver takes registrations live and announces
them, the sampler never mixes two registrations in one frame, and the frames it publishes are what
the registered patterns measure of the scene field."""

import subprocess

import numpy as np
import pytest
from conftest import node_command, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image

from lsi_ros.evaluation.face_analysis import default_face_api_dir
from lsi_ros.framing import measure_field
from lsi_ros.hardware.frames import FrameAssembler, Sample
from lsi_ros.msg import Measurements, PatternSetInfo, Registration
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.patterns import load_pattern_set
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.ros import image, qos
from lsi_ros.ros import registration as framing


def start(executable, tmp_path, **params):
    arguments = [x for name, value in params.items() for x in ("-p", f"{name}:={value}")]
    return subprocess.Popen(node_command(executable, *arguments))


def stop(*processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=20)


@pytest.fixture
def probe(ros_context, spin):
    node = Node("framing_probe", context=ros_context)
    received = {"applied": [], "info": [], "frames": [], "diagnostics": []}
    node.create_subscription(Registration, framing.APPLIED, received["applied"].append, qos.LATCHED)
    node.create_subscription(PatternSetInfo, "pattern_set", received["info"].append, qos.LATCHED)
    node.create_subscription(Measurements, "measurements", received["frames"].append, qos.SENSOR_DATA)
    node.create_subscription(DiagnosticArray, "/diagnostics", received["diagnostics"].append, 50)
    publishers = {
        "request": node.create_publisher(Registration, framing.REQUEST, qos.RELIABLE),
        "scene": node.create_publisher(Image, "scene", qos.SENSOR_DATA),
    }
    spin(node)
    return node, publishers, received


def status(received, name):
    found = [s for array in received["diagnostics"] for s in array.status if s.name == name]
    return {kv.key: kv.value for kv in found[-1].values} if found else {}


def applied_id(received) -> int:
    """The newest registration id dmd_driver has announced applied (-1 before its first announcement)."""
    return received["applied"][-1].registration_id if received["applied"] else -1


def request(shift, scale, roll=0.0):
    msg = Registration(shift_row=float(shift[0]), shift_col=float(shift[1]), scale=float(scale))
    msg.roll_deg, msg.field_rows, msg.field_cols = float(roll), 128, 128
    return msg


def test_dmd_driver_applies_a_registration_live_and_announces_it(tmp_path, probe):
    node, publishers, received = probe
    driver = start(
        "dmd_driver",
        tmp_path,
        pattern_set="hadamard-split:8",
        resolution=64,
        cache_dir=tmp_path / "patterns",
        framing="true",
    )
    try:
        assert wait_for(lambda: received["applied"] and received["info"], timeout=30), "no announcement"
        assert received["applied"][-1].registration_id == 0 and received["applied"][-1].scale == 1.0
        wait_for(lambda: node.count_subscribers(framing.REQUEST) > 0, timeout=10)
        publishers["request"].publish(request((3.0, -5.0), 0.5, 12.0))
        assert wait_for(lambda: received["applied"][-1].registration_id == 1, timeout=10)
        applied = received["applied"][-1]
        assert (applied.shift_row, applied.shift_col, applied.scale, applied.roll_deg) == (
            3.0,
            -5.0,
            0.5,
            12.0,
        )
        assert applied.pattern_set_id == received["info"][0].pattern_set_id
        assert (applied.field_rows, applied.field_cols) == (128, 128)
        # a grid partly off the mirror array (a face at the field's edge) is shown where it has mirrors
        publishers["request"].publish(request((3.0, -5.0), 1.6, 12.0))
        assert wait_for(lambda: received["applied"][-1].registration_id == 2, timeout=10)
        publishers["request"].publish(request((3.0, -5.0), 0.5, 12.0))
        assert wait_for(lambda: received["applied"][-1].registration_id == 3, timeout=10)
        # bad numbers: refused, counted, the registration stays
        publishers["request"].publish(request((0.0, 0.0), 0.0))
        publishers["request"].publish(request((0.0, 0.0), 0.5, float("nan")))
        assert wait_for(
            lambda: status(received, "dmd_driver").get("registrations_refused") == "2", timeout=10
        )
        values = status(received, "dmd_driver")
        assert values["framing_registration_id"] == "3" and values["framing_roll_deg"] == "12.00"
        assert values["registrations_applied"] == "3"
        assert received["applied"][-1].registration_id == 3
        # the pattern set is announced once and stays what it was
        assert len({info.pattern_set_id for info in received["info"]}) == 1
        assert driver.poll() is None, "dmd_driver died"
    finally:
        stop(driver)


def test_frames_carry_their_registration_and_measure_the_field_through_it(tmp_path, probe):
    """Scenes stream while the registration changes: every frame equals what the patterns of its own
    registration measure of that scene, never a mixture."""
    node, publishers, received = probe
    common = {"framing": "true"}
    driver = start(
        "dmd_driver",
        tmp_path,
        pattern_set="hadamard-split:64",
        resolution=32,
        cache_dir=tmp_path / "patterns",
        **common,
    )
    sampler = start("photodiode_sampler", tmp_path, noise="false", field_size=256, **common)
    try:
        assert wait_for(lambda: received["info"] and received["applied"], timeout=30)
        assert wait_for(
            lambda: status(received, "photodiode_sampler").get("registration_id") == "0", timeout=30
        )
        pattern_set = load_pattern_set(received["info"][0].uri)
        forward = ForwardModel(pattern_set, np.float32)
        rng = np.random.default_rng(0)
        field = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        scenes = {}
        registrations = {0: None}
        changes = [((4.0, -6.0), 0.5, 0.0), ((-3.0, 2.0), 0.6, 20.0), ((0.0, 0.0), 0.75, -9.0)]
        for step in range(120):
            if step % 30 == 29 and changes:
                publishers["request"].publish(request(*changes.pop(0)))
            msg = image.array_to_image(field, "rgb8")
            msg.header.stamp = node.get_clock().now().to_msg()
            scenes[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = field
            publishers["scene"].publish(msg)
            wait_for(lambda: False, timeout=0.03)
        assert wait_for(lambda: received["applied"][-1].registration_id == 3, timeout=10)
        for applied in received["applied"]:
            registrations[applied.registration_id] = (
                framing.from_msg(applied) if applied.registration_id else None
            )
        frames = list(received["frames"])
        ids = {frame.registration_id for frame in frames}
        assert {0, 1, 2, 3} <= ids, ids
        noiseless = PhotodiodeModel.noiseless()
        for frame in frames:
            scene = scenes[(frame.header.stamp.sec, frame.header.stamp.nanosec)]
            expected = measure_field(scene, forward, registrations[frame.registration_id], noiseless)
            np.testing.assert_allclose(frame.values, expected, rtol=1e-4, atol=1e-3)
            others = [r for i, r in registrations.items() if i != frame.registration_id]
            assert all(
                not np.allclose(
                    frame.values, measure_field(scene, forward, r, noiseless), rtol=1e-4, atol=1e-3
                )
                for r in others
            )
        assert sampler.poll() is None and driver.poll() is None
    finally:
        stop(sampler, driver)


def test_a_frame_straddling_a_registration_change_is_dropped_and_counted():
    assembler = FrameAssembler("set", 4)

    def feed(indices, stamp_ns=0):
        return [assembler.add(Sample("set", i, float(i)), stamp_ns) for i in indices]

    assert feed(range(4))[-1].registration_id == 0
    feed(range(2), stamp_ns=100)  # half a frame, then the DMD switches
    assembler.change_registration(7, since_ns=200)
    assert feed(range(2, 4), stamp_ns=150) == [None, None]  # the rest of it: not published
    assert feed(range(4), stamp_ns=150)[-1] is None  # begun before the change took effect
    frame = feed(range(4), stamp_ns=250)[-1]
    assert frame.registration_id == 7 and frame.sequence == 1
    assert assembler.counters.dropped_registration_change == 2
    assert assembler.counters.published == 2


def box_iou(a, b) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


needs_face_api = pytest.mark.skipif(
    not (default_face_api_dir() / "face_landmark_68_model-weights_manifest.json").is_file(),
    reason="face-api landmark weights not cached: make .venv/.stamps/face-api (needs npm)",
)


def face_field(face, registration, field_shape):
    from lsi_ros.framing.unframed import background, render

    field = render(face, registration, background(field_shape, np.random.default_rng(1)))
    return np.rint(field * 255).astype(np.uint8)


def framing_nodes(tmp_path, pattern_set, field_size, **locator):
    """dmd_driver, the noiseless sim sampler and face_locator, with framing, on one field."""
    common = {"framing": "true"}
    return [
        start("dmd_driver", tmp_path, pattern_set=pattern_set, cache_dir=tmp_path / "patterns", **common),
        start("photodiode_sampler", tmp_path, noise="false", field_size=field_size, **common),
        start("face_locator", tmp_path, field_size=field_size, cache_dir=tmp_path / "patterns", **locator),
    ]


def send_scene(node, publishers, field):
    msg = image.array_to_image(field, "rgb8")
    msg.header.stamp = node.get_clock().now().to_msg()
    publishers["scene"].publish(msg)


@needs_face_api
def test_face_locator_finds_the_face_through_the_camera_and_frames_it(tmp_path, probe):
    """A held-out face off-centre in a 512² field: the locator's probes go through dmd_driver and the
    sampler, it finds what the ROS-free FaceLocator finds on the same field (how well the shipped
    finder finds faces is `lsi eval --scenes unframed`'s to say), a subscriber that joins later still
    gets the location, and dmd_driver shows the model's grid where the box says."""
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.framing.finder import load_face_finder
    from lsi_ros.framing.localize import FaceLocator, LocatorConfig
    from lsi_ros.framing.unframed import face_box, face_registration
    from lsi_ros.models.registry import find_model
    from lsi_ros.msg import FaceLocation
    from lsi_ros.scenes import face_scenes

    node, publishers, received = probe
    faces = []
    node.create_subscription(FaceLocation, framing.FACE, faces.append, qos.FACES)
    field_shape = (512, 512)
    _, face = next(face_scenes())
    truth = face_registration((330.0, 220.0), 0.4, 8.0, field_shape, face.shape[0])
    field = face_field(face, truth, field_shape)
    processes = framing_nodes(tmp_path, "hadamard-split:64", 512, tracking="false", frame_id="cam")
    try:

        def found_yet():
            send_scene(node, publishers, field)
            return any(f.found for f in faces)

        assert wait_for(found_yet, timeout=120, period=0.5), (
            f"no face found in {len(faces)} localisations received; "
            f"face_locator reports {status(received, 'face_locator')}"
        )
        found = next(f for f in faces if f.found)
        # a subscriber that joins after the localisation still gets it (transient-local)
        late = []
        node.create_subscription(FaceLocation, framing.FACE, late.append, qos.FACES)
        assert wait_for(lambda: any(f.found for f in late), timeout=20), "a late subscriber got no location"
        assert list(next(f for f in late if f.found).box) == list(found.box)
        assert found.header.frame_id == "cam" and found.score >= LocatorConfig().min_score
        assert len(found.landmarks) == 136
        assert found.stages[0] == "coarse" and found.patterns >= 1024
        core = FaceLocator(load_face_finder(find_model("face-finder")), FaceAnalyzer(), field_shape).locate(
            field
        )
        assert core.found and np.abs(np.asarray(found.box) - np.asarray(core.box)).max() <= 2.0
        assert box_iou(np.asarray(found.box), face_box(truth, field_shape, face.shape[0])) > 0.2
        assert wait_for(lambda: applied_id(received) >= 1, timeout=20)
        applied = received["applied"][-1]
        assert (applied.shift_row, applied.scale, applied.roll_deg) == pytest.approx(
            (found.registration.shift_row, found.registration.scale, found.registration.roll_deg)
        )
        assert all(process.poll() is None for process in processes)
    finally:
        stop(*processes)


@needs_face_api
def test_face_locator_follows_a_moving_face_with_the_models_own_frames(tmp_path, probe):
    """Once the face is framed, the model's own measurement frames (m128's patterns on the DMD) move
    the registration with the face (MeasurementTracker): the face walks 10 field pixels right, 6 down
    and grows 4 % over 10 scenes, and the grid follows it by as much without a second localisation."""
    from lsi_ros.framing.unframed import face_registration
    from lsi_ros.msg import FaceLocation
    from lsi_ros.scenes import face_scenes

    node, publishers, received = probe
    faces = []
    node.create_subscription(FaceLocation, framing.FACE, faces.append, qos.FACES)
    field_shape = (512, 512)
    _, face = next(face_scenes())

    def at(t):
        return face_registration((250.0 + 10 * t, 240.0 + 6 * t), 0.35 * (1 + 0.04 * t), 0.0, field_shape)

    walk = [face_field(face, at(t), field_shape) for t in np.linspace(0, 1, 11)] + [None] * 20
    processes = framing_nodes(tmp_path, "model:m128", 512, every=100000, change=10.0)
    try:

        def framed():
            send_scene(node, publishers, walk[0])
            return any(f.found for f in faces) and applied_id(received) >= 1

        assert wait_for(framed, timeout=120, period=0.5)
        located = framing.from_msg(next(f for f in faces if f.found).registration)
        for field in walk[1:]:  # one frame a scene; each frame moves the grid for the next
            last = applied_id(received)
            send_scene(node, publishers, walk[10] if field is None else field)
            wait_for(lambda last=last: applied_id(received) > last, timeout=2.0)
        followed = framing.from_msg(received["applied"][-1])
        moved_by = np.subtract(followed.shift, located.shift)
        np.testing.assert_allclose(moved_by, np.subtract(at(1).shift, at(0).shift), atol=0.75)
        assert followed.scale / located.scale == pytest.approx(at(1).scale / at(0).scale, abs=0.01)

        def counters():
            return status(received, "face_locator")

        assert wait_for(lambda: int(counters().get("tracking_updates", 0)) >= 10, timeout=5)
        assert counters()["localisations"] == "1"
        # framing/face follows too: the localisation's landmarks carried along with the grid
        tracked = [f for f in faces if "track" in f.stages]
        assert tracked and all(f.found and not f.patterns or "look" in f.stages for f in tracked)
        first = next(f for f in faces if f.found)

        def centre(location):
            return np.reshape(location.landmarks, (-1, 2)).mean(0)

        np.testing.assert_allclose(centre(tracked[-1]) - centre(first), [10.0, 6.0], atol=2.0)
        assert all(process.poll() is None for process in processes)
    finally:
        stop(*processes)


def test_a_framing_registration_on_a_calibrated_dmd_composes_with_the_calibration():
    from lsi_ros.optics.dmd import GridRegistration

    calibration = GridRegistration((1.5, -2.0), 1.03, 0.7)
    face = GridRegistration((-30.0, 45.0), 0.4, -12.0)
    points = np.random.default_rng(0).uniform(-128, 128, (20, 2))
    composed = framing.compose(calibration, face)
    np.testing.assert_allclose(
        composed.to_scene(points), calibration.to_scene(face.to_scene(points)), atol=1e-9
    )
    assert framing.compose(GridRegistration(), face) == face
    assert framing.from_msg(framing.to_msg(face, (384, 384))) == face
