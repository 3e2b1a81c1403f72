"""Headless Chromium for the tests of HTML pages: the report file and the live pages the API serves."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("DTRAIN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

#: What load_in_chromium reports of a page by default: its images (loaded?, width, alt).
IMAGES = "JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.alt]))"


class DevTools:
    """A Chromium driven through the DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages ending in a NUL byte, read by the browser on fd 3, written on fd 4)."""

    def __init__(self, chromium: str, profile: Path, log: Path, timeout: float = 45):
        to_browser, from_browser = os.pipe(), os.pipe()
        # The browser's ends as fds 3 and 4, set up by a small exec shim.
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser[0], from_browser[1])]
        for fd in (to_browser[0], from_browser[1]):
            os.close(fd)
        shim = f"import os, sys; os.dup2({theirs[0]}, 3); os.dup2({theirs[1]}, 4); os.execv(sys.argv[1], sys.argv[1:])"
        with open(log, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", shim, chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 "--remote-debugging-pipe", "about:blank"],
                pass_fds=theirs, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )
        for fd in theirs:
            os.close(fd)
        self.write_fd, self.read_fd = to_browser[1], from_browser[0]
        self.deadline = time.monotonic() + timeout
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self.last_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    def wait_for(self, method: str) -> dict[str, Any]:
        while not any(e["method"] == method for e in self.events):
            self._receive()
        return next(e for e in self.events if e["method"] == method)

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            assert left > 0 and select.select([self.read_fd], [], [], left)[0], "chromium did not answer in time"
            chunk = os.read(self.read_fd, 1 << 20)
            assert chunk, "chromium closed the DevTools pipe"
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        try:
            os.write(self.write_fd, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=15)
        finally:
            os.close(self.write_fd)
            os.close(self.read_fd)


def load_in_chromium(
    chromium: str, url: str, workdir: Path, allowed: tuple[str, ...] = ("file:", "data:"), expression: str = IMAGES
) -> dict[str, Any]:
    """Open `url` in a fresh headless Chromium; what went wrong (console errors, uncaught
    exceptions, errors logged, requests for anything but the `allowed` URL prefixes) and
    what `expression` (JavaScript, a JSON string) says of the page: by default its images."""
    browser = DevTools(chromium, workdir / "profile", workdir / "chromium.log")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)
        browser.events.clear()
        browser.call("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        images = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"]["value"]
        browser.call("Runtime.evaluate", {"expression": "1"}, session=session)  # events before this have arrived
    finally:
        browser.close()
    problems = []
    for event in browser.events:
        method, params = event["method"], event["params"]
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert", "warning"):
            problems.append(f"console.{params['type']}: {[a.get('value') for a in params['args']]}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"uncaught: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            problems.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(allowed):
            problems.append(f"request: {params['request']['url']}")
    return {"problems": problems, "images": json.loads(images)}
