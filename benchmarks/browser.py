"""Serving the app on a free local port and driving it with Debian's Chromium: shared by the
browser tests and the page-timing benchmark."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forensics.report.pdf import CHROMIUM_FLAGS

__all__ = ["CHROMIUM_FLAGS", "REPO_ROOT", "free_port", "serve_app"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(
    env: dict[str, str], *, timeout: float = 90, script: Path = REPO_ROOT / "streamlit_app.py"
) -> Iterator[str]:
    """`streamlit run <script>` (the app by default) from the repository root, so with its
    .streamlit/config.toml, on a free local port; yields its URL, then stops it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A file, not a pipe: a long session's log could fill a pipe and stall the server.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script),
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_until_healthy(url, server, log, timeout)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_until_healthy(url: str, server: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"streamlit did not start:\n{output[-2000:]}")
        time.sleep(0.5)
