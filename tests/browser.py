"""Headless Chromium (Debian's package) driven over the DevTools protocol on a pipe, with the
standard library only: no chromedriver, no websocket, nothing downloaded.

    with Browser(1400, 900) as b:
        b.goto("http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning")
        b.wait_for("document.querySelectorAll('.ag-row').length > 0")
        b.screenshot(Path("runs.png"))

Chromium reads commands on fd 3 and writes replies and events on fd 4, one JSON object per
message, each ended by a NUL byte (``--remote-debugging-pipe``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# the real binary: Debian's /usr/bin/chromium is a shell wrapper that adds its own flags
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # needed as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
)


class BrowserError(RuntimeError):
    pass


def chromium() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    for name in CANDIDATES:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1400, height: int = 900, timeout: float = 30.0) -> None:
        binary = chromium()
        if binary is None:
            raise BrowserError("Chromium is not installed (Debian: apt-get install chromium)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="digitexp-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def child_fds() -> None:  # in the child, between fork and exec
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # dbus and GCM noise
            pass_fds=(3, 4),
            preexec_fn=child_fds,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        try:
            target = self.call("Target.createTarget", url="about:blank", session=False)
            self.session = self.call(
                "Target.attachToTarget", targetId=target["targetId"], flatten=True, session=False
            )["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.set_size(width, height)
        except BaseException:
            self.close()
            raise

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed its pipe (exit {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:  # events in between are dropped
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def set_size(self, width: int, height: int) -> None:
        """The exact CSS viewport (the screenshot's size)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def eval(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise BrowserError(f"JavaScript error: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, condition: str, timeout: float | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(condition)
            except BrowserError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {condition} (last value {value!r})")

    def goto(self, url: str) -> None:
        reply = self.call("Page.navigate", url=url)
        if reply.get("errorText"):
            raise BrowserError(f"{url}: {reply['errorText']}")
        if "loaderId" in reply:  # a new document (a change of #fragment has none)
            self.wait_for("document.readyState === 'complete'")

    def seed_local_storage(self, origin: str, items: dict[str, str]) -> None:
        """localStorage items set before the page's own scripts run, on every load."""
        js = "".join(
            f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in items.items()
        )
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            source=f"if (location.origin === {json.dumps(origin)}) {{ {js} }}",
        )

    def click(self, css: str) -> None:
        """A real mouse click in the middle of the first element matching ``css``."""
        x, y = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(css)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(BrowserError, TimeoutError, OSError):
                    self.call("Browser.close", session=False)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            for fd in (self._write, self._read):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
