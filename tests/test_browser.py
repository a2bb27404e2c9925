"""The app in a real headless Chromium (Debian's package, driven by Playwright): upload an image,
see the verdict and the heatmap, open the model card. Screenshots go to artifacts/screenshots/.

Skipped, with the reason, where Chromium or Playwright is missing (`.ci/run` installs both).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM_FLAGS, REPO_ROOT, serve_app
from forensics.checkpoint import DEFAULT_CHECKPOINT, METADATA_FILE
from tests.conftest import image_bytes, make_image, write_dataset

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not path:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does this)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return path


@pytest.fixture
def app_url(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    """`streamlit run` on a free local port: the shipped model where it exists, else a tiny one."""
    checkpoint = DEFAULT_CHECKPOINT if (DEFAULT_CHECKPOINT / METADATA_FILE).is_file() else None
    env = {
        **os.environ,
        "FORENSICS_CHECKPOINT": str(checkpoint or tiny_checkpoint),
        "FORENSICS_CACHE": str(tmp_path / "cache"),
    }
    with serve_app(env) as url:
        yield url


@pytest.fixture
def browser_page():
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def upload_file(tmp_path: Path) -> Path:
    """A real CIFAKE image where FORENSICS_DATA_ROOT is set, else a synthetic one."""
    root = os.environ.get("FORENSICS_DATA_ROOT")
    archive = Path(root) / "cifake" / "cifake-train.zip" if root else None
    path = tmp_path / "upload.jpg"
    if archive is not None and archive.is_file():
        with zipfile.ZipFile(archive) as zf:
            member = next(n for n in sorted(zf.namelist()) if n.startswith("FAKE/"))
            path.write_bytes(zf.read(member))
    else:
        path.write_bytes(image_bytes(make_image(7, size=32, fake=True)))
    return path


def test_upload_shows_verdict_and_heatmap(app_url: str, browser_page, upload_file: Path) -> None:
    page = browser_page
    page.goto(app_url, timeout=60_000)
    page.get_by_text("Classify an image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(upload_file))
    page.get_by_text("What the model saw").wait_for(timeout=90_000)
    verdict = page.get_by_text("Verdict", exact=True)
    assert verdict.is_visible()
    body = page.inner_text("body")
    assert "AI-generated" in body or "Real photograph" in body
    assert "regions pushing towards" in body  # the heatmap's caption
    assert page.locator("img").count() >= 2  # the view and the overlay
    assert "Traceback" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify.png"), full_page=True)


def test_bad_upload_shows_a_message_not_a_traceback(
    app_url: str, browser_page, tmp_path: Path
) -> None:
    fake_jpeg = tmp_path / "notes.jpg"
    fake_jpeg.write_text("not an image at all")
    page = browser_page
    page.goto(app_url, timeout=60_000)
    page.get_by_text("Classify an image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(fake_jpeg))
    page.get_by_text("Cannot read notes.jpg").wait_for(timeout=60_000)
    assert "Traceback" not in page.inner_text("body")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify_bad_upload.png"), full_page=True)


@pytest.mark.parametrize(
    ("url_path", "heading", "screenshot"),
    [
        ("evaluation", "Model evaluation", "evaluation.png"),
        ("errors", "Error browser", "error_browser.png"),
        ("training", "Training runs", "training_runs.png"),
        ("model-card", "Model card", "model_card.png"),
    ],
)
def test_every_page_opens_without_a_traceback(
    app_url: str, browser_page, url_path: str, heading: str, screenshot: str
) -> None:
    page = browser_page
    page.goto(f"{app_url}/{url_path}", timeout=60_000)
    page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # let charts render before the screenshot
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error:" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)


def test_dataset_page_on_a_real_folder(app_url: str, browser_page, tmp_path: Path) -> None:
    """The faces folder of FORENSICS_DATA_ROOT where set (1,800 images), else a synthetic one."""
    root = os.environ.get("FORENSICS_DATA_ROOT")
    faces = Path(root) / "faces" if root else None
    if faces is None or not faces.is_dir():
        faces = write_dataset(tmp_path / "data", per_class=6)
    page = browser_page
    page.goto(f"{app_url}/dataset", timeout=60_000)
    page.get_by_role("heading", name="Dataset analysis").wait_for(timeout=60_000)
    field = page.get_by_role("textbox", name="Dataset folder or .zip")
    field.fill(str(faces))
    field.press("Enter")
    page.get_by_role("heading", name="Shortcuts").wait_for(timeout=180_000)
    page.get_by_role("heading", name="Samples").wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    assert "Traceback" not in page.inner_text("body")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dataset.png"), full_page=True)
