"""An audit's report.html in a real headless Chromium: every audited image has its row, the
table sorts, a row opens its case report, and the page requests nothing from any network."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from forensics.checkpoint import DEFAULT_CHECKPOINT, METADATA_FILE
from forensics.cli import main as cli_main
from tests.test_browser import SCREENSHOTS, browser_page  # noqa: F401 - a fixture

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _few_shared_images(root: Path, folder: Path) -> list[str]:
    """Two CIFAKE images of each class and one face of each, copied out of ../shared/data."""
    folder.mkdir()
    archive = root / "cifake" / "cifake-train.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} is missing")
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        for label in ("REAL", "FAKE"):
            members = [n for n in names if n.startswith(f"{label}/") and n.endswith(".jpg")][:2]
            for i, member in enumerate(members):
                (folder / f"cifake_{label.lower()}_{i}.jpg").write_bytes(zf.read(member))
    for label in ("real", "fake"):
        faces = sorted((root / "faces" / label).glob("*.jpg"))[:1]
        for face in faces:
            (folder / f"face_{label}.jpg").write_bytes(face.read_bytes())
    return sorted(path.name for path in folder.iterdir())


def test_the_audit_report_shows_every_row_and_fetches_nothing(
    shared_data_root: Path,
    browser_page,  # noqa: F811
    tmp_path: Path,
) -> None:
    if not (DEFAULT_CHECKPOINT / METADATA_FILE).is_file():
        pytest.skip("the shipped default model is not here")
    files = _few_shared_images(shared_data_root, tmp_path / "in")
    out = tmp_path / "audit"
    assert cli_main(["audit", str(tmp_path / "in"), "--out", str(out), "--no-views"]) == 0
    table = pd.read_csv(out / "audit.csv")
    assert sorted(table["path"]) == files

    page = browser_page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((out / "report.html").as_uri())
    rows = page.locator("tr.image-row")
    assert rows.count() == len(files)
    body = page.inner_text("body")
    for name in files:
        assert name in body
    for decision, count in table["decision"].value_counts().items():
        assert page.locator(f'#counts td[data-decision="{decision}"]').inner_text() == str(count)
    assert page.locator("svg.hist rect").count() >= 1
    # Every thumbnail and heatmap is drawn.
    assert page.evaluate(
        "Array.from(document.querySelectorAll('tr.image-row img'))"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    # Sorting by P(fake), twice: ascending, then descending.
    page.get_by_role("columnheader", name="P(fake)").click()
    shown = [float(v) for v in page.locator("tr.image-row td:nth-child(6)").all_inner_texts()]
    assert shown == sorted(shown)
    page.get_by_role("columnheader", name="P(fake)").click()
    shown = [float(v) for v in page.locator("tr.image-row td:nth-child(6)").all_inner_texts()]
    assert shown == sorted(shown, reverse=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "audit_report.png"), full_page=True)
    # A row opens its case report, which shows the same file's digest.
    first = page.locator("tr.image-row a").first
    name = first.inner_text().strip()
    first.click()
    page.wait_for_load_state()
    sha = table.set_index("path").loc[name, "sha256"]
    assert sha in page.inner_text("body")
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
