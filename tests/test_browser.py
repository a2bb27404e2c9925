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
def served_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the shipped default model where it exists (so that what the pages
    write, such as the evaluation cache, stays out of the repository), else a tiny one."""
    if not (DEFAULT_CHECKPOINT / METADATA_FILE).is_file():
        return tiny_checkpoint
    checkpoint = tmp_path / "served" / DEFAULT_CHECKPOINT.name
    shutil.copytree(DEFAULT_CHECKPOINT, checkpoint, ignore=shutil.ignore_patterns("eval_cache"))
    return checkpoint


@pytest.fixture
def app_url(served_checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    """`streamlit run` on a free local port, serving `served_checkpoint`."""
    env = {
        **os.environ,
        "FORENSICS_CHECKPOINT": str(served_checkpoint),
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


def upload_to_classify(page, app_url: str, files) -> None:
    """Open the Classify page and upload `files` (a path, or a list of paths or payloads)."""
    page.goto(app_url, timeout=60_000)
    page.get_by_text("Classify an image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(files)


def test_upload_shows_verdict_and_heatmap(
    app_url: str, served_checkpoint: Path, browser_page, upload_file: Path
) -> None:
    from forensics import load_detector
    from forensics.ui.decision import DECISION_NAMES

    verdict = load_detector(served_checkpoint).predict(upload_file)
    page = browser_page
    upload_to_classify(page, app_url, str(upload_file))
    page.get_by_text("What the model saw").wait_for(timeout=90_000)
    decision = page.get_by_text("Decision", exact=True)
    assert decision.is_visible()
    body = page.inner_text("body")
    # The decision and the scores shown are the Detector's for this file.
    shown = page.get_by_test_id("stMetricValue").first.inner_text().strip()
    assert shown == DECISION_NAMES[verdict.decision]
    scores = (
        f"P(fake) = {verdict.prob_fake:.3f} (calibrated; the model's own softmax said "
        f"{verdict.prob_fake_raw:.3f})"
    )
    assert scores in body, body
    assert "regions pushing towards" in body  # the heatmap's caption
    assert page.locator("img").count() >= 2  # the view and the overlay
    assert "Traceback" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify.png"), full_page=True)


def test_a_photograph_gets_unsure_with_its_reason_from_the_default_model(
    app_url: str, browser_page, tmp_path: Path
) -> None:
    """A 1600 px photograph is nothing like the default model's 32 px training images: the page
    must say unsure, and why, not show a confident label."""
    if not (DEFAULT_CHECKPOINT / "trust.safetensors").is_file():
        pytest.skip("the shipped default model has no trust profile here")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(make_image(11, size=64).resize((1600, 1131)), "JPEG", quality=90))
    page = browser_page
    upload_to_classify(page, app_url, str(photo))
    page.get_by_text("What the model saw").wait_for(timeout=90_000)
    body = page.inner_text("body")
    assert page.get_by_test_id("stMetricValue").first.inner_text().strip() == "Unsure"
    assert "unlike what the model was trained on" in body and "downscaled" in body
    assert "Traceback" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify_photograph_unsure.png"), full_page=True)


def test_two_uploads_with_the_same_name_get_two_verdicts(
    app_url: str, browser_page, upload_file: Path
) -> None:
    # Two cameras both write IMG_0001.jpg; before the fix the page stopped with
    # StreamlitDuplicateElementKey on the second file's download buttons.
    other = image_bytes(make_image(9, size=32))
    page = browser_page
    upload_to_classify(
        page,
        app_url,
        [
            {"name": "IMG_0001.jpg", "mimeType": "image/jpeg", "buffer": data}
            for data in (upload_file.read_bytes(), other)
        ],
    )
    page.get_by_text("IMG_0001.jpg (2 of 2)").wait_for(timeout=90_000)
    page.get_by_text("JSON record of this verdict").nth(1).wait_for(timeout=90_000)
    # Streamlit draws (and on a rerun redraws) a page piece by piece: wait for each piece.
    page.get_by_text("What the model saw").nth(1).wait_for(timeout=90_000)
    body = page.inner_text("body")
    assert "IMG_0001.jpg (1 of 2)" in body
    assert page.get_by_text("Decision", exact=True).count() == 2
    assert page.get_by_text("What the model saw").count() == 2
    assert "Traceback" not in body and "DuplicateElement" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify_same_names.png"), full_page=True)


def test_several_sessions_at_once_each_get_their_own_verdict(
    app_url: str, served_checkpoint: Path, tmp_path: Path
) -> None:
    """Four browser sessions upload different images within moments of each other, so the
    server classifies and explains them concurrently with one shared model; each page must show
    the verdict of its own image (the P(fake) a lone Detector gives it)."""
    from playwright.sync_api import sync_playwright

    from forensics import load_detector

    detector = load_detector(served_checkpoint)
    files, expected = [], []
    for seed in range(40, 200):  # four images the page tells apart by their shown score
        data = image_bytes(make_image(seed, size=32, fake=seed % 2 == 1))
        shown = f"P(fake) = {detector.predict(data).prob_fake:.3f}"
        if shown not in expected:
            files.append(tmp_path / f"session_{len(files)}.png")
            files[-1].write_bytes(data)
            expected.append(shown)
        if len(files) == 4:
            break
    assert len(files) == 4, expected
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        pages = [browser.new_context(viewport={"width": 1300, "height": 1000}).new_page()
                 for _ in files]  # fmt: skip
        for page in pages:
            page.goto(app_url, timeout=60_000)
        for page in pages:
            page.get_by_text("Classify an image").wait_for(timeout=60_000)
        for page, path in zip(pages, files, strict=True):  # no waiting between the uploads
            page.locator("input[type=file]").set_input_files(str(path))
        for i, page in enumerate(pages):
            page.get_by_text("What the model saw").wait_for(timeout=180_000)
            page.get_by_text(expected[i]).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "Traceback" not in body
            for j, other in enumerate(expected):
                assert (other in body) == (i == j), (i, j, other)
            assert page.locator("img").count() >= 2
        browser.close()


def test_bad_upload_shows_a_message_not_a_traceback(
    app_url: str, browser_page, tmp_path: Path
) -> None:
    fake_jpeg = tmp_path / "notes.jpg"
    fake_jpeg.write_text("not an image at all")
    page = browser_page
    upload_to_classify(page, app_url, str(fake_jpeg))
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
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
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
    page.get_by_role("heading", name="Dataset analysis", exact=True).wait_for(timeout=60_000)
    field = page.get_by_role("textbox", name="Dataset folder or .zip")
    field.fill(str(faces))
    field.press("Enter")
    page.get_by_role("heading", name="Shortcuts", exact=True).wait_for(timeout=180_000)
    page.get_by_role("heading", name="Samples", exact=True).wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    assert "Traceback" not in page.inner_text("body")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dataset.png"), full_page=True)


# Every page on the shared real datasets, with each shipped model, as a user would walk them:
# (dataset, checkpoint folder in checkpoints/) -> the split the evaluation page offers first (a
# model's own saved split where it fits the data, else the whole folder).
REAL_CASES = {
    ("faces", "default"): "all",  # faces first: 1,800 files scan in seconds, CIFAKE in minutes
    ("cifake", "default"): "test",
    ("faces", "faces"): "test",
}


def _real_dataset(name: str, checkpoint: str) -> tuple[Path, Path]:
    root = os.environ.get("FORENSICS_DATA_ROOT")
    if not root or not (Path(root) / name).is_dir():
        pytest.skip(f"FORENSICS_DATA_ROOT has no {name}/ (.ci/run sets it to ../shared/data)")
    shipped = DEFAULT_CHECKPOINT.parent / checkpoint
    if not (shipped / METADATA_FILE).is_file():
        pytest.skip(f"the shipped checkpoint {checkpoint} is missing")
    return Path(root) / name, shipped


@pytest.fixture(scope="module", params=list(REAL_CASES), ids=lambda case: "-".join(case))
def real_app(
    request, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, str, str]]:
    """The app on a real dataset with a private copy of a shipped model (its evaluation cache
    starts empty and stays out of the repository) and a private scan cache."""
    name, checkpoint_name = request.param
    data, shipped = _real_dataset(name, checkpoint_name)
    scratch = tmp_path_factory.mktemp(f"real_{name}_{checkpoint_name}")
    checkpoint = scratch / checkpoint_name
    shutil.copytree(shipped, checkpoint, ignore=shutil.ignore_patterns("eval_cache"))
    env = {
        **os.environ,
        "FORENSICS_CHECKPOINT": str(checkpoint),
        "FORENSICS_DATASET": str(data),
        "FORENSICS_CACHE": str(scratch / "cache"),
    }
    prefix = name if checkpoint_name == "default" else f"{name}_{checkpoint_name}_model"
    with serve_app(env) as url:
        yield url, data, prefix, REAL_CASES[request.param]


def _assert_clean(page) -> None:
    """No Python exception box and no traceback anywhere on the page."""
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.inner_text("body")


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def _first_image(data: Path, tmp_path: Path) -> Path:
    """A fake image of the dataset as a file to upload (read from inside the zip for CIFAKE)."""
    from forensics.data import ImageStore
    from forensics.scan import load_or_build_manifest

    manifest = load_or_build_manifest(data, progress=False).manifest
    member = manifest[manifest["label"] == 1]["path"].iloc[0]
    path = tmp_path / Path(member).name
    path.write_bytes(ImageStore(data).read_bytes(member))
    return path


def test_every_page_on_real_data(real_app, browser_page, tmp_path: Path) -> None:
    url, data, name, expected_split = real_app
    page = browser_page

    page.goto(f"{url}/dataset", timeout=60_000)
    page.get_by_role("heading", name="Samples", exact=True).wait_for(
        timeout=600_000
    )  # scans the dataset
    _assert_clean(page)
    _screenshot(page, f"{name}_dataset.png")

    page.goto(f"{url}/evaluation", timeout=60_000)
    page.get_by_text("Evaluate on the sidebar's dataset", exact=True).click()
    evaluate = page.get_by_role("button", name="Evaluate")
    evaluate.wait_for(timeout=120_000)
    split = page.get_by_role("combobox", name="Split").input_value()
    assert split == expected_split
    evaluate.click()
    page.get_by_text("Decision threshold on P(fake)").wait_for(timeout=600_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5")
    _assert_clean(page)
    _screenshot(page, f"{name}_evaluation.png")

    # The error browser opens on the evaluation just cached, with thumbnails and heatmaps.
    page.goto(f"{url}/errors", timeout=60_000)
    page.get_by_role("heading", name="Detail", exact=True).wait_for(timeout=300_000)
    page.get_by_text("why real").first.wait_for(timeout=300_000)
    assert f"{split} split" in page.inner_text("body")
    _assert_clean(page)
    _screenshot(page, f"{name}_error_browser.png")

    page.goto(url, timeout=60_000)
    page.get_by_text("Classify an image").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(_first_image(data, tmp_path)))
    page.get_by_text("What the model saw").wait_for(timeout=120_000)
    _assert_clean(page)
    _screenshot(page, f"{name}_classify.png")

    for url_path, heading in [("training", "Training runs"), ("model-card", "Model card")]:
        page.goto(f"{url}/{url_path}", timeout=60_000)
        page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        _assert_clean(page)
        _screenshot(page, f"{name}_{url_path.replace('-', '_')}.png")


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_dataset_pages_explain_a_folder_without_images(
    app_url: str, browser_page, tmp_path: Path, case: str
) -> None:
    folder = tmp_path / case
    if case == "empty":
        (folder / "real").mkdir(parents=True)
    page = browser_page
    for url_path, heading in [("dataset", "Dataset analysis"), ("evaluation", "Model evaluation")]:
        page.goto(f"{app_url}/{url_path}", timeout=60_000)
        page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
        field = page.get_by_role("textbox", name="Dataset folder or .zip")
        field.fill(str(folder))
        field.press("Enter")
        if url_path == "evaluation":
            page.get_by_text("Evaluate on the sidebar's dataset", exact=True).click()
        message = "Dataset folder not found" if case == "missing" else "no image files"
        page.get_by_text(message).first.wait_for(timeout=60_000)
        _assert_clean(page)
    _screenshot(page, f"evaluation_{case}_dataset.png")


def test_moving_the_jpeg_quality_control_shows_the_perturbed_verdict(
    app_url: str, browser_page, upload_file: Path
) -> None:
    page = browser_page
    upload_to_classify(page, app_url, str(upload_file))
    page.get_by_text("What the model saw").wait_for(timeout=90_000)
    page.get_by_text("Try a perturbation", exact=True).click()
    page.get_by_text("JPEG quality 70", exact=True).first.wait_for(timeout=90_000)
    slider = page.get_by_test_id("stSlider").filter(has_text="JPEG quality").get_by_role("slider")
    slider.focus()
    for _ in range(4):  # 70 -> 50, a step of 5 per key
        page.keyboard.press("ArrowLeft")
    page.get_by_text("JPEG quality 50", exact=True).first.wait_for(timeout=90_000)
    page.get_by_text("Under JPEG quality 50 the decision", exact=False).wait_for(timeout=90_000)
    body = page.inner_text("body")
    assert "As uploaded" in body and "JPEG quality 50: gradcam" in body
    shown = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert len(shown) >= 3 and all(
        s.strip() in ("AI-generated", "Real photograph", "Unsure") for s in shown
    )
    assert "Traceback" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Try a perturbation", exact=True).scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "classify_perturbation.png"))


def test_an_ai_signed_upload_shows_the_decision_and_its_signer(
    app_url: str, browser_page, tmp_path: Path
) -> None:
    """A file whose valid content credential says it was AI-generated: the page decides so, by
    the credential, and names who signed it, whatever the default model makes of its pixels."""
    from tests.evidence_files import ai_signed_png

    signed = tmp_path / "signed.png"
    signed.write_bytes(ai_signed_png())
    page = browser_page
    upload_to_classify(page, app_url, str(signed))
    page.get_by_text("What the model saw").wait_for(timeout=90_000)
    assert page.get_by_test_id("stMetricValue").first.inner_text().strip() == "AI-generated"
    body = page.inner_text("body")
    assert "by its signed credential" in body
    assert "Decided by the file's signed content credential" in body
    assert "signed by Test Generator Signer" in body and "not on a trust list" in body
    assert "The model's own decision" in body and "Traceback" not in body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "classify_signed_credential.png"), full_page=True)
