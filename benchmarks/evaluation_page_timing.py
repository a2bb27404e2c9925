"""Time the Model evaluation page in a real browser: first open (scan + evaluate) and second open
(everything from the disk caches).

    python -m benchmarks.evaluation_page_timing --data ../shared/data/cifake [--split test]

Starts `streamlit run` on a free local port with the shipped checkpoint (or --checkpoint), drives
Debian's Chromium through Playwright, and prints the seconds from page load until the metrics
table is shown. The first run uses an empty cache folder, so it includes the dataset scan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.browser import CHROMIUM_FLAGS, REPO_ROOT, serve_app


def open_evaluation(page, url: str, split: str, *, click_evaluate: bool) -> float:
    """Seconds from navigation until the evaluation's metrics table is visible."""
    started = time.perf_counter()
    page.goto(f"{url}/evaluation", timeout=120_000)
    page.get_by_text("Evaluate on the sidebar's dataset").click()
    page.get_by_role("combobox", name="Split").wait_for(timeout=900_000)
    if split != page.get_by_role("combobox", name="Split").input_value():
        page.get_by_role("combobox", name="Split").click()
        page.get_by_role("option", name=split, exact=True).click()
    if click_evaluate:
        page.get_by_role("button", name="Evaluate").click()
    page.get_by_text("Decision threshold on P(fake)").wait_for(timeout=900_000)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.evaluation_page_timing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or .zip")
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "checkpoints" / "default")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        # A private copy of the checkpoint (without its eval_cache) and an empty scan cache, so
        # the first open really scans and evaluates.
        checkpoint = Path(scratch) / "checkpoint"
        shutil.copytree(args.checkpoint, checkpoint, ignore=shutil.ignore_patterns("eval_cache"))
        env = {
            **os.environ,
            "FORENSICS_CHECKPOINT": str(checkpoint),
            "FORENSICS_DATASET": str(args.data),
            "FORENSICS_CACHE": str(Path(scratch) / "cache"),
        }
        with serve_app(env) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            first = open_evaluation(page, url, args.split, click_evaluate=True)
            second_page = browser.new_page(viewport={"width": 1300, "height": 1000})
            second = open_evaluation(second_page, url, args.split, click_evaluate=False)
            browser.close()
    print(
        f"evaluation page, {args.data} ({args.split} split): first open (scan + evaluate) "
        f"{first:.1f} s, second open (cached) {second:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
