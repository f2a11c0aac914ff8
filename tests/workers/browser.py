"""Headless Debian Chromium driven over the DevTools protocol, for the Web UI test.

The Temporal Web UI renders in the browser and keeps long polls open, so ``--dump-dom`` either
returns before the data arrives or never returns. Over the DevTools protocol we navigate, poll
the rendered text until what we expect is there, and capture a screenshot. The protocol is
spoken through ``websocket-client`` (a small, well-kept library) because Playwright's own
browser builds cannot be downloaded here.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import websocket

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
]


def chromium_binary() -> str:
    """Debian's chromium (installed by scripts/setup-system.sh)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise AssertionError("chromium is missing: run scripts/setup-system.sh (apt chromium)")
    return found


class Page:
    """One browser tab spoken to over its DevTools websocket."""

    def __init__(self, socket: websocket.WebSocket) -> None:
        self._socket = socket
        self._ids = count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def open(self, url: str) -> None:
        """Navigate to ``url``."""
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        """The rendered text of the page."""
        result = self.call("Runtime.evaluate", expression="document.body ? "
                           "document.body.innerText : ''", returnByValue=True)
        return str(result["result"].get("value", ""))

    def wait_for_text(self, *needles: str, timeout_s: float = 30) -> str:
        """Poll the rendered text until it contains every needle; return it.

        Raises:
            AssertionError: not all shown within ``timeout_s`` (with what was shown).
        """
        deadline = time.monotonic() + timeout_s
        shown = ""
        while time.monotonic() < deadline:
            shown = self.text()
            if all(n in shown for n in needles):
                return shown
            time.sleep(0.25)
        missing = [n for n in needles if n not in shown]
        raise AssertionError(f"the Web UI does not show {missing}; it shows: {shown[:2000]!r}")

    def click_text(self, label: str) -> bool:
        """Click the first button/link/summary whose text is ``label``; ``False`` if none."""
        script = (
            "(() => { const want = " + json.dumps(label) + ";"
            " for (const el of document.querySelectorAll('button, a, summary, [role=tab]')) {"
            "  if (el.innerText && el.innerText.trim() === want) { el.click(); return true; } }"
            " return false; })()"
        )
        result = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        return bool(result["result"].get("value"))

    def screenshot(self, path: Path) -> Path:
        """Save the visible page as PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A headless chromium with a fresh profile; yields its first tab."""
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    socket = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start (exit {process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        page = next(t for t in targets if t["type"] == "page")
        socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                             suppress_origin=True)
        tab = Page(socket)
        tab.call("Page.enable")
        yield tab
    finally:
        if socket is not None:
            socket.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
