"""Printing a report to PDF with Chromium (Debian's `chromium` package, the one the browser
tests drive), headless and offline: the report is a local file that fetches nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from forensics.atomic import write_atomic

# Headless as root on a closed network: no sandbox, no GPU, no background traffic.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIMEOUT_S = 120


class PdfUnavailableError(RuntimeError):
    """No Chromium to print with, or it failed; the message says which and what to do."""


def find_chromium() -> str | None:
    """$CHROMIUM_PATH, else the first Chromium on PATH; None where there is none."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if Path(configured).is_file() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def print_to_pdf(html: str | Path, pdf: str | Path, *, chromium: str | None = None) -> Path:
    """Render the HTML file `html` to `pdf` (A4, the page's own print style, no browser header
    or footer), atomically. PdfUnavailableError where no Chromium is installed or it fails."""
    executable = chromium or find_chromium()
    if executable is None:
        raise PdfUnavailableError(
            "no Chromium found to print the PDF with (install Debian's chromium package, or set "
            "CHROMIUM_PATH to a Chromium or Chrome executable); the HTML report was written"
        )
    html, pdf = Path(html).resolve(), Path(pdf)

    def run(tmp: Path) -> None:
        command = [executable, "--headless", *CHROMIUM_FLAGS, "--no-pdf-header-footer",
                   f"--print-to-pdf={tmp.resolve()}", html.as_uri()]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, timeout=PRINT_TIMEOUT_S,
                                  check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PdfUnavailableError(f"Chromium ({executable}) could not print: {exc}") from None
        if not tmp.is_file() or tmp.read_bytes()[:5] != b"%PDF-":
            output = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise PdfUnavailableError(
                f"Chromium ({executable}) wrote no PDF (exit {done.returncode}): "
                + " / ".join(output)
            )

    write_atomic(pdf, run)
    return pdf
