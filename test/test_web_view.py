"""web_view: the live page in a real headless Chromium on the simulated pipeline, the MJPEG/JPEG
endpoints on a real image topic, 4xx for bad requests, and "no signal" when a topic stops."""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import node_command, wait_for

from lsi_ros.ros.launch_process import SIGTERM_TIMEOUT_S
from lsi_ros.web.browser import PAGE_READY, HeadlessChromium, find_chromium
from lsi_ros.web.live import PipelineState

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium: `make test` installs Debian's chromium where apt is available and it runs as root",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, timeout: float = 10.0):
    """(status, headers, body) of one GET."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def state(port: int) -> dict:
    status, _, body = get(port, "/api/state")
    assert status == 200, body
    return json.loads(body)


def read_mjpeg(port: int, path: str, count: int, timeout: float = 20.0) -> list:
    """The first ``count`` JPEG parts of a multipart/x-mixed-replace stream, decoded (BGR)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    content_type = response.getheader("Content-Type")
    assert content_type.startswith("multipart/x-mixed-replace"), content_type
    boundary = b"--" + content_type.split("boundary=")[1].strip().encode()
    frames = []
    try:
        while len(frames) < count:
            line = response.readline()
            assert line, "the stream ended"
            if line.strip() != boundary:
                continue
            headers = {}
            while (line := response.readline().strip()) != b"":
                key, value = line.decode().split(":", 1)
                headers[key.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg", headers
            data = response.read(int(headers["content-length"]))
            frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    finally:
        connection.close()
    return frames


def test_pipeline_state_follows_frames_by_stamp():
    """Latency from stamps, drops after the match time, sequence gaps, attributes of the shown image."""
    live = PipelineState(match_s=0.05)
    ms = 1_000_000
    for stamp in (1, 2, 3):
        live.scene(stamp * ms, 196608)
        live.measurements(stamp * ms, stamp if stamp < 3 else 7, np.arange(2048.0), 600, 0)
    live.latent(1 * ms, 21 * ms, "m", "p", 2148)
    live.latent(2 * ms, 22 * ms, "m", "p", 2148)
    live.image(1 * ms, 101 * ms, 196608)
    live.attributes(1 * ms, ["smiling"], [0.25], "m")
    live.attributes(2 * ms, ["smiling"], [0.75], "m")
    live.diagnostics("latent_encoder", {"encoded": "3", "refused_pattern_set": "2", "encode_ms_p50": "1.2"})
    time.sleep(0.1)
    now = live.snapshot()
    assert now["latency_ms"] == {"scene_to_code": 20.0, "scene_to_image": 100.0}
    assert now["dropped"] == {"not_encoded": 1, "not_decoded": 1, "sequence_gaps": 4}
    assert now["refused"] == {"latent_encoder": 2}
    assert now["attributes"]["scores"] == [0.25]  # the shown image's, not the newest code's
    assert now["measurements"]["count"] == 2048 and len(now["measurements"]["values"]) == 1024
    assert now["bytes_per_frame"] == {"scene": 196608, "measurements": 600, "latent": 2148, "image": 196608}


class Camera:
    """A real image topic (camera/image, 160x120 rgb8 at 10 Hz, a bar moving across) that can pause,
    and a topic of another type (chatter, std_msgs/String)."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from lsi_ros.ros import image, qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("web_view_test_camera", context=self.context)
        self.published = 0
        self.paused = False
        publisher = self.node.create_publisher(image.Image, "camera/image", qos.SENSOR_DATA)
        chatter = self.node.create_publisher(String, "chatter", 10)

        def tick():
            chatter.publish(String(data="not an image"))
            if self.paused:
                return
            pixels = np.zeros((120, 160, 3), np.uint8)
            pixels[:, :, 2] = 200
            column = (self.published * 8) % 160
            pixels[:, column : column + 16] = (255, 255, 0)
            msg = image.array_to_image(pixels, "rgb8")
            msg.header.stamp = self.node.get_clock().now().to_msg()
            publisher.publish(msg)
            self.published += 1

        self.node.create_timer(0.1, tick)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def stop(process: subprocess.Popen) -> str:
    """SIGINT, as Ctrl-C; `lsi run` may take LaunchProcess.stop's whole timeout (a node finishing a
    decode), so wait longer than that before killing its session (nodes included: they hold the pipe)."""
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=SIGTERM_TIMEOUT_S + 45)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    return output


@pytest.fixture(scope="module")
def camera_view():
    """The test camera and a web_view process showing it (stale after 0.5 s): (camera, port)."""
    camera = Camera()
    port = free_port()
    process = subprocess.Popen(
        node_command(
            "web_view", "-p", f"port:={port}", "-p", "image_topic:=camera/image", "-p", "stale_after_s:=0.5"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def serving():
        try:
            return state(port)["images"]["decoded"]["seq"] is not None
        except OSError:
            return process.poll() is not None

    try:
        assert wait_for(serving, timeout=60, period=0.3) and process.poll() is None, stop(process)
        yield camera, port
    finally:
        output = stop(process)
        camera.close()
    assert process.returncode == 0 and "Traceback" not in output, output


def test_stream_gives_mjpeg_frames_while_a_slow_client_stalls(camera_view):
    camera, port = camera_view
    # A client that asks for the stream and never reads: it must hold up nobody.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(b"GET /stream?topic=/camera/image HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        seq_before = state(port)["images"]["decoded"]["seq"]
        frames = read_mjpeg(port, "/stream?topic=/camera/image&quality=95", 3)
        scaled = read_mjpeg(port, "/stream?topic=camera/image&width=80", 1)[0]
        time.sleep(1.0)
        seq_after = state(port)["images"]["decoded"]["seq"]
    finally:
        slow.close()
    assert [f.shape for f in frames] == [(120, 160, 3)] * 3 and scaled.shape == (60, 80, 3)
    # The bar moves between frames: three different images, each the published one (BGR here).
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(frames, frames[1:], strict=False))
    background = np.median(frames[0].reshape(-1, 3), axis=0)
    assert np.allclose(background, (200, 0, 0), atol=12), background
    # The node kept taking frames at the camera's rate (10 Hz) meanwhile.
    assert seq_after - seq_before >= 10, (seq_before, seq_after)

    status, headers, body = get(port, "/snapshot?topic=/camera/image")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    status, headers, body = get(port, "/api/frame/decoded")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    status, _, body = get(port, "/api/topics")
    assert status == 200 and "/camera/image" in json.loads(body)["image_topics"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/stream?topic=/no_such_topic", 404),
        ("/snapshot?topic=/chatter", 404),  # a topic, but not an Image
        ("/snapshot", 400),
        ("/stream?topic=", 400),
        ("/snapshot?topic=/camera/image%20x", 400),
        ("/snapshot?topic=../../etc/passwd", 400),
        ("/snapshot?topic=/camera/image&quality=abc", 400),
        ("/snapshot?topic=/camera/image&quality=101", 400),
        ("/snapshot?topic=/camera/image&width=0", 400),
        ("/stream?topic=/camera/image&topic=/scene", 400),
        ("/stream?topic=/camera/image&fps=5", 400),
        ("/api/state?x=1", 400),
        ("/api/frame/decoded?topic=/scene", 400),
        ("/api/frame/no_such_panel", 404),
        ("/no/such/page", 404),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(camera_view, path, status):
    _, port = camera_view
    answer, headers, body = get(port, path)
    assert answer == status, body
    assert b"Traceback" not in body and len(body) < 1000, body


def test_no_signal_when_the_topic_stops_and_live_again_when_it_resumes(camera_view):
    camera, port = camera_view
    camera.paused = True
    try:
        assert wait_for(lambda: state(port)["images"]["decoded"]["age_s"] > 1.0, timeout=10, period=0.2)
        stopped = state(port)["images"]["decoded"]
        if find_chromium() is not None:
            text = asyncio.run(_no_signal_text(port))
            assert text.startswith("no signal · last frame") and text.endswith("s ago"), text
    finally:
        camera.paused = False
    resumed = wait_for(
        lambda: (now := state(port)["images"]["decoded"])["seq"] > stopped["seq"] and now["age_s"] < 0.5,
        timeout=10,
        period=0.1,
    )
    assert resumed, state(port)["images"]


async def _no_signal_text(port: int) -> str:
    """What the decoded panel's overlay says once the page marked the panel stale."""
    async with HeadlessChromium(width=800, height=600) as browser:
        await browser.open(f"http://127.0.0.1:{port}/")
        shown = (
            "document.getElementById('decoded-panel').dataset.stale === 'true' && "
            "getComputedStyle(document.querySelector('#decoded-panel .nosignal')).display !== 'none' && "
            "document.querySelector('#decoded-panel .nosignal').textContent"
        )
        return await browser.wait_for(shown, timeout=30)


@needs_chromium
@pytest.mark.timeout(420)
def test_live_page_in_headless_chromium_on_the_simulated_camera(tmp_path):
    """lsi run (m128 on MobileStyleGAN, every node its own process) with web_view, seen by Chromium."""
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "lsi_ros.cli", "run", "--duration", "120", "--scene-rate", "2",
         "--web-port", str(port), "--output", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        page = asyncio.run(_watch_page(port, tmp_path))
        live = state(port)
        # The scene panel shows the scene the decoded image came from, not the newest scene.
        paired = wait_for(
            lambda: (
                (now := state(port))["images"]["decoded"]["stamp_ns"]
                == now["images"]["scene"]["stamp_ns"]
                == now["attributes"]["stamp_ns"]
            ),
            timeout=10,
            period=0.1,
        )
    finally:
        output = stop(run)
    assert page is not None, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert paired, live["images"]
    screenshots, rect, dom = page
    # The decoded image changed between the two screenshots, and neither image area is blank.
    areas = []
    for png in screenshots:
        pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        x, y, w, h = (round(rect[k]) for k in ("x", "y", "width", "height"))
        areas.append(pixels[y : y + h, x : x + w].astype(float))
    for area in areas:
        assert area.shape[0] > 100 and area.std() > 20 and (area.max(axis=2) < 16).mean() < 0.5
    assert np.abs(areas[0] - areas[1]).mean() > 2
    # Attributes as bars with probabilities; the status strip filled in.
    assert dom["attributes"] and all(0.0 <= value <= 1.0 for _, value in dom["attributes"]), dom
    assert [name for name, _ in dom["attributes"]] == live["attributes"]["names"]
    assert float(dom["rate"].split()[0]) > 0.2, dom
    assert dom["latency"].count("ms") == 2, dom
    assert (
        "vs raw image" in dom["bytes"] and dom["model"].endswith("m128") and "M = 128" in dom["patterns"]
    ), dom
    assert dom["dropped"][0].isdigit() and dom["refused"].isdigit(), dom
    assert dom["scene_stale"] == "false" and dom["decoded_stale"] == "false", dom
    assert dom["plot_caption"].startswith("· frame") and "128 values" in dom["plot_caption"], dom
    sizes = live["bytes_per_frame"]
    assert sizes["measurements"] * 100 < sizes["raw_image"], sizes


async def _watch_page(port: int, tmp_path):
    """Open the page once web_view answers; two screenshots a decoded frame apart, the image's
    rectangle and what the page shows. None if the page never showed decoded images."""
    url = f"http://127.0.0.1:{port}/"
    async with HeadlessChromium() as browser:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                state(port)
                break
            except OSError:
                await asyncio.sleep(1.0)
        await browser.open(url)
        ready = await browser.wait_for(
            PAGE_READY.format(frames=2), timeout=max(1, deadline - time.monotonic())
        )
        if not ready:
            (tmp_path / "page.png").write_bytes(await browser.screenshot())
            return None
        first_seq = await browser.evaluate("document.getElementById('decoded').dataset.seq")
        first = await browser.screenshot()
        changed = f"document.getElementById('decoded').dataset.seq !== '{first_seq}'"
        assert await browser.wait_for(changed, timeout=30), "the decoded image never changed"
        await asyncio.sleep(0.3)  # let the new frame paint
        second = await browser.screenshot()
        (tmp_path / "page.png").write_bytes(second)
        rect = await browser.evaluate(
            "(() => { const r = document.getElementById('decoded').getBoundingClientRect();"
            " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )
        dom = await browser.evaluate(
            """(() => {
              const text = (id) => document.getElementById(id).textContent;
              return {
                attributes: [...document.querySelectorAll('#attributes .attribute')].map(
                  (row) => [row.children[0].textContent, Number(row.children[2].textContent)]),
                rate: text('rate'), latency: text('latency'), bytes: text('bytes'),
                dropped: text('dropped'), refused: text('refused'), model: text('model'),
                patterns: text('patterns'), plot_caption: text('plot-caption'),
                scene_stale: document.getElementById('scene-panel').dataset.stale,
                decoded_stale: document.getElementById('decoded-panel').dataset.stale,
              };
            })()"""
        )
        return (first, second), rect, dom
