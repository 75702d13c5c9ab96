"""Headless Chromium driven over the DevTools protocol, with nothing but ``websockets``.

The Prefect UI is a single-page app: its content appears after the page has
loaded, from API calls, so one-shot ``--screenshot``/``--dump-dom`` would race
it. Instead the browser is kept open and the page's visible text is polled
until what the test expects is there, then screenshotted.

``websockets`` comes with Prefect; Chromium is Debian's ``chromium`` package,
installed by :func:`ensure_chromium` when missing and allowed (root, apt).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def ensure_chromium(log: Path) -> str | None:
    """Chromium's path, installing Debian's package first when missing and we are root."""
    if path := find_chromium():
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("ab") as out:
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    return find_chromium()


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(
        self, executable: str, profile_dir: Path, log: Path, size: tuple[int, int] = (1440, 1000)
    ) -> None:
        self.executable = executable
        self.profile_dir = profile_dir
        self.log = log
        self.size = size
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: ClientConnection | None = None
        self._next_id = 0

    def __enter__(self) -> Browser:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        width, height = self.size
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    *FLAGS,
                    f"--user-data-dir={self.profile_dir}",
                    f"--window-size={width},{height}",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    "about:blank",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port = self._devtools_port(timeout=30)
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it picked to DevToolsActivePort in its profile."""
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}; see {self.log}")
            if marker.exists() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium did not open its DevTools port; see {self.log}")

    def __exit__(self, *exc_info: object) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are dropped)."""
        assert self.ws is not None, "use Browser as a context manager"
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        """The page's visible text once it contains every needle; on timeout, say which not."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [n for n in needles if n not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {missing}; it showed:\n{text[:3000]}")
            time.sleep(0.5)

    def click_text(self, label: str) -> bool:
        """Click the first button, link or tab whose visible text is exactly ``label``."""
        script = (
            "(() => { const want = " + json.dumps(label) + ";"
            " const nodes = document.querySelectorAll("
            "'button, a, li, [role=tab], [role=button]');"
            " for (const node of nodes) {"
            "  if (node.innerText && node.innerText.trim() === want) { node.click(); return true; }"
            " } return false; })()"
        )
        return bool(self.evaluate(script))

    def screenshot(self, path: Path, settle: float = 1.5) -> Path:
        """A PNG of the viewport, after ``settle`` seconds for lazily loaded parts (charts)."""
        time.sleep(settle)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
