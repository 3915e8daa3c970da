"""Headless Chromium over the DevTools protocol (Debian's ``chromium``; ``.ci/run`` installs it), for tests and
for regenerating the screenshots in ``docs/``: no Selenium or Playwright, just the ``websockets`` client.

    with Chromium(tmp_path / "profile") as browser:
        browser.navigate("file:///.../report.html")
        browser.evaluate("document.title")
        png = browser.screenshot(full_page=True)
        assert not browser.errors          # console errors and uncaught exceptions seen so far
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Self

import requests


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The browser's path; skips the test without it (fails under CI, whose ``.ci/run`` installs it)."""
    import pytest

    exe = chromium_path()
    if not exe:
        msg = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; .ci/run installs it")
        pytest.skip(msg)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chromium:
    """One headless Chromium process with one page, driven synchronously; killed (process group) on exit.

    ``errors`` collects what a user would see in the console as errors: uncaught exceptions
    (``Runtime.exceptionThrown``), ``console.error`` / failed ``console.assert`` calls, and browser log entries
    of level error (e.g. a resource that failed to load).
    """

    def __init__(self, user_data_dir: str | Path, *, size: tuple[int, int] = (1280, 1300), timeout: float = 90):
        self.user_data_dir, self.size, self.timeout = Path(user_data_dir), size, timeout
        self.errors: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self._ws = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        from websockets.sync.client import connect

        exe = chromium_path()
        assert exe, "chromium is not installed"
        port = _free_port()
        self._proc = subprocess.Popen(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={self.user_data_dir}",
                f"--remote-debugging-port={port}",
                f"--window-size={self.size[0]},{self.size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    pages = [
                        t
                        for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                        if t["type"] == "page"
                    ]
                    if pages:
                        break
                except requests.RequestException:
                    pass
                assert self._proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.2)
            self._ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
            for domain in ("Page", "Runtime", "Log"):
                self.cdp(f"{domain}.enable")
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                width=self.size[0],
                height=self.size[1],
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):  # the browser is killed next anyway
                self._ws.close()
            self._ws = None
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None

    # ------------------------------------------------------------------ protocol
    def _receive(self, timeout: float) -> dict[str, Any]:
        msg = json.loads(self._ws.recv(timeout=max(0.05, timeout)))
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg: dict[str, Any]) -> None:
        self._events.append(msg)
        method, p = msg["method"], msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(
                "console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url') or ''}".strip())

    def cdp(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are recorded)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._receive(deadline - time.monotonic())
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return msg["result"]

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event ``method`` (one already received since the last call counts)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self._events):
                if ev["method"] == method:
                    del self._events[: i + 1]
                    return ev
            self._events.clear()
            assert time.monotonic() < deadline, f"no {method} event"
            try:
                self._receive(deadline - time.monotonic())
            except TimeoutError:
                pass

    def settle(self, seconds: float = 0.5) -> None:
        """Process events for ``seconds`` (late console errors, timers)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._receive(left)
            except TimeoutError:
                break

    # ------------------------------------------------------------------ page helpers
    def navigate(self, url: str, *, wait_load: bool = True) -> None:
        self._events.clear()
        self.cdp("Page.navigate", url=url)
        if wait_load:
            self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (an exception in it fails the caller)."""
        result = self.cdp("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport, or of the whole page at the viewport's width."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.cdp("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": self.size[0], "height": int(size["height"]), "scale": 1},
            )
        return base64.b64decode(self.cdp("Page.captureScreenshot", **params)["data"])


# ---------------------------------------------------------------------- PNG checks
def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB(A) PNG: (width, height, rows of raw pixel bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def assert_not_blank(data: bytes) -> None:
    """At least 800 x 600 pixels, more than 50 colours, and no single colour covering 97% of it."""
    width, height, rows = png_pixels(data)
    assert width >= 800 and height >= 600, (width, height)
    bpp = len(rows[0]) // width
    colours = Counter(row[x * bpp : x * bpp + 3] for row in rows[::4] for x in range(0, width, 4))
    background = colours.most_common(1)[0][1] / sum(colours.values())
    assert len(colours) > 50 and background < 0.97, f"{len(colours)} colours, background {background:.1%}"
