"""`musgen ui` end to end: the page served by the command line, driven in a real headless browser
(Debian's chromium, over the DevTools protocol on a pipe): set a short length, click Generate, find the
piano roll, the audio player and the MIDI download link."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"musgen ui exited: {server.stderr.read() if server.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"musgen ui did not answer on {url} within {timeout:.0f} s")


class Browser:
    """Headless chromium driven over ``--remote-debugging-pipe``: JSON messages separated by NUL
    bytes, written to its fd 3 and read from its fd 4."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plug_pipes() -> None:  # in the child: the pipes become fds 3 and 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--mute-audio",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=plug_pipes,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._buffer = b""
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]
        raise TimeoutError(method)

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(
            f"{what} did not appear within {timeout:.0f} s; page text: {self.js('document.body.innerText')}"
        )

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


PAGE_STATE = """JSON.stringify({
  status: (document.querySelector('#status') || {}).innerText || '',
  audio: Array.from(document.querySelectorAll('#player a[download]')).map(a => a.href),
  waveform: !!document.querySelector('#player [data-testid^="waveform"]'),
  duration: (document.querySelector('#player #duration') || {}).textContent || '',
  downloads: Array.from(document.querySelectorAll('#downloads a')).map(a => a.href),
  rolls: Array.from(document.querySelectorAll('img')).filter(i => i.naturalWidth > 0).map(i => i.src),
})"""


def test_generate_in_a_headless_browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium binary (Debian's chromium package)")
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("gradio is not installed (pip install 'musgen[ui]')")
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(REPO / "checkpoints" / "transformer", checkpoints / "transformer")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "musgen.cli", "ui", "--checkpoints", str(checkpoints), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    browser = None
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_page(url, server, timeout=60)
        browser = Browser(tmp_path / "profile")
        browser.open(url)
        # The checkpoint's controls arrive with the page's load event: the length field gets its default.
        browser.wait_for(
            "(document.querySelector('#length input') || {}).value === '256'", 30, "the length field"
        )
        browser.js("const f = document.querySelector('#length input'); f.focus(); f.select(); true")
        browser.send("Input.insertText", {"text": "32"})
        browser.js("document.querySelector('#length input').blur(); true")
        browser.js("document.querySelector('#generate').click(); true")
        state = json.loads(
            browser.wait_for(
                f"(() => {{ const s = {PAGE_STATE}; const o = JSON.parse(s);"
                " return (o.status.includes('Error') || (o.duration && o.duration !== '0:00' && o.downloads.length))"
                " ? s : ''; })()",
                60,
                "the generated sample",
            )
        )
        assert "generated with transformer" in state["status"], state
        # The player (a waveform) has loaded and decoded the rendered sample: it knows its duration.
        assert state["waveform"] and state["duration"] not in ("", "0:00"), state
        assert state["audio"] and state["audio"][0].endswith(".wav"), state
        with urllib.request.urlopen(state["audio"][0], timeout=10) as response:
            assert response.read(4) == b"RIFF"
        midi_links = [href for href in state["downloads"] if href.endswith(".mid")]
        assert midi_links, state
        with urllib.request.urlopen(midi_links[0], timeout=10) as response:
            assert response.read(4) == b"MThd"  # the download is the MIDI file itself
        assert any(".png" in src for src in state["rolls"]), state
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        _, errors = server.communicate(timeout=20)
        print(errors[-5000:])  # shown by pytest when the test fails
