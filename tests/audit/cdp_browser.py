"""A headless Chromium driven over its DevTools protocol (CDP): load a page, collect console errors and
uncaught exceptions, read every image's decoded size. Used by the HTML report tests and the benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Path of a Chromium-family browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """``with Chromium() as browser: browser.load(path)`` -> {"errors", "images", "title"}; ``screenshot(path)``."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0) -> None:
        self.executable = executable or find_browser()
        if self.executable is None:
            raise RuntimeError("no Chromium-family browser on PATH")
        self.timeout = timeout

    def __enter__(self) -> "Chromium":
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="recroute-chromium-")
        cmd = [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
               f"--user-data-dir={self._profile}", "--window-size=1200,900", "about:blank"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"chromium did not open its DevTools port (exit {self.process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        import httpx

        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        self._connection = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout)
        self.ws = self._connection.__enter__()
        self._id = 0
        self.events: list[dict] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._connection.__exit__(None, None, None)
        finally:
            self._stop()

    def _stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """Send one CDP command and return its result; events that arrive meanwhile are kept."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def _wait_for(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def load(self, path: str | os.PathLike) -> dict:
        """Open a local file; {"errors": [str], "images": [{"id", "complete", "width", "height"}], "title"}."""
        self.events.clear()
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        self._wait_for("Page.loadEventFired")
        time.sleep(0.3)  # late console messages
        self.call("Runtime.evaluate", expression="1")  # drains events queued before it
        probe = ("JSON.stringify({title: document.title, images: Array.from(document.images).map(i => "
                 "({id: i.id, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))})")
        value = json.loads(self.call("Runtime.evaluate", expression=probe, returnByValue=True)["result"]["value"])
        return {"errors": console_errors(self.events), **value}

    def screenshot(self, path: str | os.PathLike, width: int = 1200) -> Path:
        """A full-page PNG of the page loaded last."""
        import base64

        height = self.call("Runtime.evaluate", expression="document.documentElement.scrollHeight",
                           returnByValue=True)["result"]["value"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=int(min(height, 16000)),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


def console_errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console.error/assert calls and error log entries (failed loads) among CDP events."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("uncaught: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append("log: " + str(params["entry"].get("text")) + " " + str(params["entry"].get("url", "")))
    return out
