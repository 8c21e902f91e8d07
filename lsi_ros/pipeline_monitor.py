"""Watching the whole simulated pipeline from outside: latency, drops, bytes, image quality.

Follows each scene through the graph by its header stamp (the sampler stamps a frame with its
scene's stamp, the encoder and decoder copy it): scene -> Measurements -> LatentCode -> Image (image_raw).
``keep_images=False`` keeps only stamps and arrival times, for long runs at the DMD frame rate.
With ``framing`` the scenes are fields with a face somewhere: each decoded image is compared with what
the registration its frame was measured under frames (lsi_ros.framing.framed_view), and
:meth:`framing_figure` shows the fields, the framed faces and the decoded images side by side.
"""

import struct
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lsi_ros.msg import FaceLocation, LatentCode, Measurements, Registration
from lsi_ros.optics.objective import scene_on_dmd
from lsi_ros.ros import image, qos
from lsi_ros.ros import registration as framing_topics


def _key(header) -> tuple:
    return header.stamp.sec, header.stamp.nanosec


def _stamp_of_serialized(data: bytes) -> tuple:
    """(sec, nanosec) of a serialized message that starts with a std_msgs/Header: the CDR stream is a
    4-byte encapsulation header (its second byte 1 for little endian), then the stamp."""
    return struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)


class PipelineMonitor(Node):
    def __init__(
        self, resolution: int = 256, keep_images: bool = True, framing: bool = False, **node_options
    ):
        super().__init__("pipeline_monitor", **node_options)
        self.resolution = resolution
        self.keep_images = keep_images
        self.framing = framing
        self.registrations = {0: None}  # dmd_driver's registration ids -> GridRegistration
        self.frame_registration = {}  # scene stamp -> registration id of its frame
        self.faces = []  # FaceLocation messages
        self.framed = []  # (field uint8, registration, framed view, decoded), framing only
        self.scenes = {}
        self.events = {"measurements": {}, "latent": {}, "image": {}}
        self.sizes = {}
        self.pairs = []
        self.sequences = []
        self.first_latent_time = None
        self.first_image_time = None
        # As deep as the pipeline's own inputs, so that a monitor the CPU holds back misses no more than
        # the nodes it watches; without images a scene is only its stamp, read off the serialized message.
        if keep_images:
            self.create_subscription(Image, "scene", self._on_scene, qos.SCENES_IN)
        else:
            self.create_subscription(Image, "scene", self._on_scene_stamp, qos.SCENES_IN, raw=True)
        self.create_subscription(Measurements, "measurements", self._on_measurements, qos.FRAMES_IN)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.CODES)
        self.create_subscription(Image, "image_raw", self._on_image, qos.RELIABLE)
        self.counters = {}  # status name -> (monotonic time received, {counter: value})
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._scene_rate = self.create_client(SetParameters, "scene_source/set_parameters")
        if framing:
            self.create_subscription(Registration, framing_topics.APPLIED, self._on_applied, qos.LATCHED)
            self.create_subscription(FaceLocation, framing_topics.FACE, self.faces.append, qos.FACES)

    def _on_diagnostics(self, array):
        for status in array.status:
            counts = {kv.key: int(kv.value) for kv in status.values if kv.value.isdigit()}
            self.counters[status.name] = (time.monotonic(), counts)

    def set_scene_rate(self, rate_hz: float, timeout_s: float = 10.0) -> None:
        """Set scene_source's rate_hz (live); a near-zero rate pauses the source."""
        if not self._scene_rate.wait_for_service(timeout_sec=timeout_s):
            raise RuntimeError("scene_source/set_parameters is not available")
        request = SetParameters.Request(
            parameters=[Parameter("rate_hz", value=float(rate_hz)).to_parameter_msg()]
        )
        future = self._scene_rate.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done() or not future.result().results[0].successful:
            raise RuntimeError(f"scene_source refused rate_hz {rate_hz}")

    def counts_after(self, moment: float, wanted: dict, timeout_s: float = 10.0) -> dict:
        """``{label: value}`` of the counters ``wanted`` (``{label: (status name, key)}``), each read
        from a /diagnostics status received after ``moment`` (time.monotonic())."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fresh = {name: self.counters.get(name, (0.0, {})) for name, _ in wanted.values()}
            if all(received > moment for received, _ in fresh.values()):
                return {label: fresh[name][1].get(key) for label, (name, key) in wanted.items()}
            time.sleep(0.1)
        raise RuntimeError(
            f"no /diagnostics from {sorted(n for n, _ in wanted.values())} within {timeout_s} s"
        )

    def _arrival_ms(self, header) -> float:
        stamp_ns = header.stamp.sec * 10**9 + header.stamp.nanosec
        return (self.get_clock().now().nanoseconds - stamp_ns) / 1e6

    def _on_scene_stamp(self, data: bytes):
        self.scenes[_stamp_of_serialized(data)] = None
        self.sizes.setdefault("scene", len(data))

    def _on_scene(self, msg):
        if self.framing:
            self.scenes[_key(msg.header)] = np.rint(image.to_rgb_float(msg) * 255).astype(np.uint8)
            return
        rgb = scene_on_dmd(image.to_rgb_float(msg), self.resolution)
        self.scenes[_key(msg.header)] = rgb
        on_grid = image.array_to_image(np.rint(rgb * 255).astype(np.uint8), "rgb8")
        self.sizes.setdefault("image_rgb8", len(serialize_message(on_grid)))

    def _on_measurements(self, msg):
        self.events["measurements"][_key(msg.header)] = self._arrival_ms(msg.header)
        self.sequences.append((_key(msg.header), msg.sequence))
        self.frame_registration[_key(msg.header)] = msg.registration_id
        self.sizes.setdefault("measurements", len(serialize_message(msg)))

    def _on_latent(self, msg):
        self.first_latent_time = self.first_latent_time or time.monotonic()
        self.events["latent"][_key(msg.header)] = self._arrival_ms(msg.header)
        self.sizes.setdefault("latent", len(serialize_message(msg)))

    def _on_image(self, msg):
        self.first_image_time = self.first_image_time or time.monotonic()
        self.events["image"][_key(msg.header)] = self._arrival_ms(msg.header)
        scene = self.scenes.get(_key(msg.header))
        if scene is None:
            return
        decoded = image.to_rgb_float(msg)
        if not self.framing:
            self.pairs.append((scene_on_dmd(scene, decoded.shape[0]), decoded))
            return
        from lsi_ros.framing import framed_view

        registration_id = self.frame_registration.get(_key(msg.header))
        if registration_id not in self.registrations:
            return  # its frame was not seen, or its registration's announcement was missed
        registration = self.registrations[registration_id]
        view = np.clip(framed_view(scene, registration, decoded.shape[0]), 0.0, 1.0)
        self.pairs.append((view, decoded))
        self.framed.append((scene, registration, view, decoded))

    def _on_applied(self, msg):
        self.registrations[msg.registration_id] = framing_topics.from_msg(msg) if msg.scale > 0 else None

    def summary(self, since_ns: int | None = None, until_ns: int | None = None) -> dict:
        """Counts, drops and latencies of the scenes stamped in [since_ns, until_ns) (default: all)."""

        def in_window(key) -> bool:
            stamp_ns = key[0] * 10**9 + key[1]
            return (since_ns is None or stamp_ns >= since_ns) and (until_ns is None or stamp_ns < until_ns)

        def percentiles(values):
            values = np.asarray(list(values))
            if not values.size:
                return {"p50": None, "p95": None}
            return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}

        scenes = [key for key in self.scenes if in_window(key)]
        events = {
            topic: {key: ms for key, ms in arrivals.items() if in_window(key)}
            for topic, arrivals in self.events.items()
        }
        sequences = np.asarray([sequence for key, sequence in self.sequences if in_window(key)])
        psnr = [peak_signal_noise_ratio(s, d, data_range=1.0) for s, d in self.pairs]
        # Each decoded image against the *next* scene: what "resembling any face" alone scores.
        shifted = zip(self.pairs[1:], self.pairs[:-1], strict=False)
        psnr_unpaired = [peak_signal_noise_ratio(s, d, data_range=1.0) for (s, _), (_, d) in shifted]
        ssim = [structural_similarity(s, d, data_range=1.0, channel_axis=2) for s, d in self.pairs]
        return {
            "scenes": len(scenes),
            "measurement_frames": len(events["measurements"]),
            "latent_messages": len(events["latent"]),
            "decoded_images": len(events["image"]),
            # Scenes the camera saw that never became a latent code (a code for a scene this observer's
            # best-effort subscription missed is not a negative drop).
            "dropped_frames": len(set(scenes) - events["latent"].keys()),
            # Frames the encoder turned into latent codes that this observer's best-effort (sensor
            # data) subscription to Measurements never received: lost to the monitor, not the camera.
            "measurement_frames_unseen": len(events["latent"].keys() - events["measurements"].keys()),
            "sequence_gaps": int(np.sum(np.diff(sequences) != 1)) if sequences.size > 1 else 0,
            "bytes_per_frame": self.sizes,
            "latency_ms": {
                "scene_to_latent": percentiles(events["latent"].values()),
                "scene_to_image": percentiles(events["image"].values()),
            },
            "quality_rgb": {
                "pairs": len(self.pairs),
                "psnr_db": float(np.mean(psnr)) if psnr else None,
                "psnr_db_unpaired": float(np.mean(psnr_unpaired)) if psnr_unpaired else None,
                "ssim": float(np.mean(ssim)) if ssim else None,
            },
            "wall_time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def frame_strip(self, count: int = 6) -> np.ndarray:
        """Scenes (top) over their decoded images (bottom), uint8 RGB."""
        chosen = self.pairs[:: max(1, len(self.pairs) // count)][:count]
        top = np.concatenate([s for s, _ in chosen], axis=1)
        bottom = np.concatenate([d for _, d in chosen], axis=1)
        return np.rint(np.concatenate([top, bottom], axis=0) * 255).astype(np.uint8)

    def framing_summary(self) -> dict:
        """Localisations, faces found, their cost, and the registrations frames were measured under."""
        localisations = [f for f in self.faces if "track" not in f.stages]
        found = [f for f in localisations if f.found]
        ids = list(self.frame_registration.values())
        return {
            "localisations": len(localisations),
            "faces_found": len(found),
            "tracking_updates": len(self.faces) - len(localisations),
            "registrations_applied": len([i for i in self.registrations if i]),
            "frames_registered": int(sum(1 for i in ids if i)),
            "frames_unregistered": int(sum(1 for i in ids if not i)),
            **{
                f"localisation_{name}_p50": float(np.median([getattr(f, name) for f in localisations]))
                if localisations
                else None
                for name in ("patterns", "display_ms", "compute_ms")
            },
        }

    def framing_figure(self, path, count: int = 6) -> None:
        """Fields with the registered grid (top), what it frames (middle), decoded images (bottom)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from lsi_ros.framing import registration_quad

        chosen = self.framed[:: max(1, len(self.framed) // count)][:count]
        figure, axes = plt.subplots(3, len(chosen), figsize=(2.2 * len(chosen), 6.9), squeeze=False)
        for column, (field, registration, view, decoded) in enumerate(chosen):
            axes[0, column].imshow(field)
            if registration is not None:
                quad = registration_quad(registration, field.shape[:2], view.shape[0])
                closed = np.vstack([quad, quad[:1]])
                axes[0, column].plot(closed[:, 0], closed[:, 1], color="lime", linewidth=1.2)
                axes[0, column].set_xlim(-0.5, field.shape[1] - 0.5)  # a grid partly off the field
                axes[0, column].set_ylim(field.shape[0] - 0.5, -0.5)
            axes[1, column].imshow(view)
            axes[2, column].imshow(decoded)
        for row, label in enumerate(("scene field + registered grid", "what the grid frames", "decoded")):
            axes[row, 0].set_ylabel(label, fontsize=8)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
