"""The HTTP side of web_view (aiohttp, no ROS): the live page, its state as JSON, and the
web_video_server-style endpoints ``/stream?topic=…`` (MJPEG) and ``/snapshot?topic=…`` (JPEG).

Every client reads the newest frame whenever it is ready for one: a slow client skips frames, it
never queues them, and ROS never waits for a client. Bad requests get 4xx with a one-line reason.
"""

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from lsi_ros.web.live import ImageChannel, PipelineState

PAGE_DIR = Path(__file__).with_name("page")
BOUNDARY = "lsi_ros_frame"
IMAGE_PARAMETERS = {"topic", "quality", "width", "height"}
DEFAULT_QUALITY = 90
MAX_SIDE = 4096


class TopicError(Exception):
    """A requested topic that cannot be served: ``status`` is the HTTP status to answer with."""

    status = 404


class TopicNameError(TopicError):
    status = 400


class UnknownTopicError(TopicError):
    status = 404


@dataclass(frozen=True)
class ImageRequest:
    topic: str
    quality: int
    width: int
    height: int


def parse_image_query(query) -> ImageRequest:
    """``topic`` (required), ``quality`` 1..100, ``width``/``height`` in pixels: anything else is a 400."""
    unknown = set(query) - IMAGE_PARAMETERS
    if unknown:
        raise web.HTTPBadRequest(
            text=f"unknown query parameters {sorted(unknown)}; known: {sorted(IMAGE_PARAMETERS)}\n"
        )
    repeated = sorted(k for k in set(query) if len(query.getall(k)) > 1)
    if repeated:
        raise web.HTTPBadRequest(text=f"query parameters given more than once: {repeated}\n")
    topic = query.get("topic", "").strip()
    if not topic:
        raise web.HTTPBadRequest(text="missing query parameter 'topic' (an image topic, e.g. topic=/scene)\n")

    def integer(name, default, low, high):
        text = query.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"{name}={text!r} is not an integer\n") from None
        if not low <= value <= high:
            raise web.HTTPBadRequest(text=f"{name}={value} is outside {low}..{high}\n")
        return value

    return ImageRequest(
        topic=topic,
        quality=integer("quality", DEFAULT_QUALITY, 1, 100),
        width=integer("width", 0, 1, MAX_SIDE),
        height=integer("height", 0, 1, MAX_SIDE),
    )


def _output_size(request: ImageRequest, frame) -> tuple[int, int]:
    """web_video_server's rule: one side given keeps the aspect ratio; none keeps the size."""
    if request.width and request.height:
        return request.width, request.height
    if request.width:
        return request.width, max(1, round(frame.height * request.width / frame.width))
    if request.height:
        return max(1, round(frame.width * request.height / frame.height)), request.height
    return 0, 0


class WebView:
    """The aiohttp application of the page, served from its own thread and event loop.

    ``open_channel(topic)`` gives the channel of any image topic (it may block briefly while the
    node subscribes) or raises a TopicError; ``page_channels`` are the page's panels by name;
    ``image_topics()`` lists what the graph offers.
    """

    def __init__(
        self,
        state: PipelineState,
        page_channels: dict[str, ImageChannel],
        open_channel: Callable[[str], ImageChannel],
        image_topics: Callable[[], list],
        stale_after_s: float = 3.0,
    ):
        self.state = state
        self.page_channels = page_channels
        self.open_channel = open_channel
        self.image_topics = image_topics
        self.stale_after_s = stale_after_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/topics", self._topics)
        app.router.add_get("/api/frame/{panel}", self._panel_frame)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/snapshot", self._snapshot)
        app.router.add_static("/page/", PAGE_DIR, show_index=False)
        return app

    # Serving -----------------------------------------------------------------------------------

    def start(self, host: str, port: int, timeout: float = 10.0) -> tuple[str, int]:
        """Bind and serve in a background thread; returns the bound address (port 0: any free one).
        Raises OSError when the address cannot be bound."""
        started = threading.Event()
        failure = []

        def serve():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._serve(host, port, started))
            except OSError as error:
                failure.append(error)
                started.set()
            finally:
                self.loop.close()

        self._thread = threading.Thread(target=serve, name="web_view_http", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise OSError(f"the web server did not start within {timeout} s")
        if failure:
            raise failure[0]
        return self.address

    async def _serve(self, host, port, started: threading.Event):
        for channel in self.page_channels.values():
            channel.attach(self.loop)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(
            self.application(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            self.address = tuple(self._runner.addresses[0][:2])
            started.set()
            await self._stopping.wait()
        finally:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self.loop is not None and self._stopping is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # Handlers ----------------------------------------------------------------------------------

    async def _index(self, request):
        return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _state(self, request):
        if request.query:
            raise web.HTTPBadRequest(text="/api/state takes no query parameters\n")
        now = time.monotonic()
        body = {
            "images": {name: channel.describe(now) for name, channel in self.page_channels.items()},
            "stale_after_s": self.stale_after_s,
        } | self.state.snapshot()
        return web.json_response(body, headers={"Cache-Control": "no-store"}, dumps=json.dumps)

    async def _topics(self, request):
        topics = await asyncio.to_thread(self.image_topics)
        return web.json_response({"image_topics": topics}, headers={"Cache-Control": "no-store"})

    async def _channel(self, topic: str) -> ImageChannel:
        try:
            channel = await asyncio.to_thread(self.open_channel, topic)
        except TopicError as error:
            raise _http_error(error.status, str(error)) from None
        channel.attach(self.loop)
        return channel

    async def _snapshot(self, request):
        image_request = parse_image_query(request.query)
        channel = await self._channel(image_request.topic)
        return await self._jpeg_response(channel, image_request)

    async def _panel_frame(self, request):
        """The newest frame of one of the page's panels (the scene panel pairs scenes with images)."""
        channel = self.page_channels.get(request.match_info["panel"])
        if channel is None:
            raise web.HTTPNotFound(
                text=f"no panel '{request.match_info['panel']}': {sorted(self.page_channels)}\n"
            )
        if request.query:
            raise web.HTTPBadRequest(text="/api/frame takes no query parameters\n")
        return await self._jpeg_response(channel, ImageRequest(channel.topic, DEFAULT_QUALITY, 0, 0))

    async def _jpeg_response(self, channel: ImageChannel, image_request: ImageRequest):
        frame = await channel.next_frame(-1, timeout=2.0)
        if frame is None:
            raise web.HTTPServiceUnavailable(
                text=f"no image received on {channel.topic} yet\n", headers={"Retry-After": "1"}
            )
        width, height = _output_size(image_request, frame)
        data = await asyncio.to_thread(channel.jpeg, frame, image_request.quality, width, height)
        return web.Response(
            body=data,
            content_type="image/jpeg",
            headers={"Cache-Control": "no-store", "X-Frame-Seq": str(frame.seq)},
        )

    async def _stream(self, request):
        image_request = parse_image_query(request.query)
        channel = await self._channel(image_request.topic)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
                "Connection": "close",
            }
        )
        await response.prepare(request)
        seq = -1
        while request.transport is not None and not request.transport.is_closing():
            frame = await channel.next_frame(seq, timeout=1.0)
            if frame is None:
                continue
            width, height = _output_size(image_request, frame)
            data = await asyncio.to_thread(channel.jpeg, frame, image_request.quality, width, height)
            part = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                f"X-Timestamp: {frame.stamp_ns / 1e9:.6f}\r\n\r\n"
            ).encode()
            try:
                await response.write(part + data + b"\r\n")  # waits for this client only
            except (ConnectionResetError, ConnectionError):
                break
            seq = frame.seq
        return response


def _http_error(status: int, text: str) -> web.HTTPException:
    return {400: web.HTTPBadRequest, 404: web.HTTPNotFound}[status](text=text.rstrip("\n") + "\n")
