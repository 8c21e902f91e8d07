"""A headless Chromium driven over the DevTools protocol: opens the live page, reads it, screenshots it.

For the tests and the documentation's screenshot, so they see the page as a browser renders it.
Chromium talks to 127.0.0.1 only (every other host name resolves to nothing) and keeps its
background services off.

python -m lsi_ros.web.browser http://127.0.0.1:8080/ docs/web_view.png
"""

import argparse
import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root (containers, CI) Chromium refuses to start sandboxed
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-breakpad",
    "--no-pings",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

# The page is ready once the decoded panel showed this many frames and the strip has values.
PAGE_READY = (
    "Number(document.getElementById('decoded').dataset.frames) >= {frames} && "
    "document.getElementById('rate').textContent !== '–' && "
    "document.querySelectorAll('#attributes .attribute').length > 0"
)


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a DevTools command failed."""


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, EXECUTABLES) if path), None)


class HeadlessChromium:
    """``async with HeadlessChromium() as browser:`` one page, driven by DevTools commands."""

    def __init__(self, width: int = 1280, height: int = 860, executable: str | None = None):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError(f"no Chromium found (looked for {', '.join(EXECUTABLES)})")
        self.width, self.height = width, height
        self._ids = itertools.count(1)

    async def __aenter__(self):
        self._profile = tempfile.TemporaryDirectory(prefix="lsi_chromium_")
        self._process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its zygote, renderer and GPU processes go down with it
        )  # fmt: skip
        try:
            port = await self._devtools_port()
            self._session = aiohttp.ClientSession()
            async with self._session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
                target = await response.json(content_type=None)
            self._socket = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            await self.command("Page.enable")
            await self.command(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=self.height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc):
        if getattr(self, "_session", None) is not None:
            await self._session.close()
        self._signal_group(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        # Chromium's child processes can outlive it by a moment and still write to the profile
        self._signal_group(signal.SIGKILL)
        for _ in range(20):
            try:
                self._profile.cleanup()
                return
            except OSError:
                await asyncio.sleep(0.1)
        shutil.rmtree(self._profile.name, ignore_errors=True)

    def _signal_group(self, signum) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass

    async def _devtools_port(self, timeout: float = 30.0) -> int:
        path = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"Chromium exited: {self._process.stderr.read().decode()[-2000:]}")
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            await asyncio.sleep(0.1)
        raise BrowserError(f"Chromium opened no DevTools port within {timeout} s")

    async def command(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        message_id = next(self._ids)
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        async for message in self._socket:
            reply = message.json()
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply["result"]
        raise BrowserError(f"the DevTools connection closed during {method}")

    async def open(self, url: str) -> None:
        await self.command("Page.navigate", url=url)

    async def evaluate(self, expression: str):
        result = await self.command("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, period: float = 0.25):
        """Poll a JavaScript expression until it is truthy; returns its value (falsy on timeout)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except BrowserError:  # the page is still loading
                value = None
            if value:
                return value
            await asyncio.sleep(period)
        return value

    async def screenshot(self, fit_content: bool = False) -> bytes:
        """PNG of the viewport, or (``fit_content``) of its width down to where the page ends."""
        params = {"format": "png"}
        if fit_content:
            height = await self.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)")
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": self.width,
                "height": min(height, self.height),
                "scale": 1,
            }
        result = await self.command("Page.captureScreenshot", **params)
        return base64.b64decode(result["data"])


async def capture_page(url: str, output: Path, frames: int = 3, timeout: float = 120.0) -> bool:
    """Screenshot the live page once it has shown ``frames`` decoded images; False if it never did."""
    async with HeadlessChromium() as browser:
        await browser.open(url)
        ready = await browser.wait_for(PAGE_READY.format(frames=frames), timeout)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(await browser.screenshot(fit_content=True))
        return bool(ready)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the live page in headless Chromium.")
    parser.add_argument("url")
    parser.add_argument("output", type=Path)
    parser.add_argument("--frames", type=int, default=3, help="decoded images the page shows first")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    ready = asyncio.run(capture_page(args.url, args.output, args.frames, args.timeout))
    print(f"wrote {args.output}" + ("" if ready else " (the page never showed the frames: look at it)"))
    return 0 if ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
