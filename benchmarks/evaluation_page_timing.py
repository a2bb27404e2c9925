"""Time the Model evaluation page in a real browser: the first open (scan + evaluate) and the
second (everything from the disk caches), in a new tab and by the app's own navigation.

    python -m benchmarks.evaluation_page_timing --data ../shared/data/cifake [--split test]

Starts `streamlit run` on a free local port with the shipped checkpoint (or --checkpoint), drives
Debian's Chromium through Playwright, and prints the seconds from navigation until the metrics
table is shown. The first open uses an empty cache folder, so it includes the dataset scan. For
scale it also times, in a new tab, the Classify page (a title and an upload box) and a bare
Streamlit page drawing the same kinds of elements as the evaluation page (radio, select box,
slider, table, five plotly charts) from constants, without any of this project's code: that is
Streamlit's own start-up in a fresh tab, which no caching can remove.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.browser import CHROMIUM_FLAGS, REPO_ROOT, serve_app

METRICS_SHOWN = "Decision threshold on P(fake)"
# The evaluation page's kinds of elements, drawn from constants with nothing of the project's.
BARE_PAGE = f"""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")
st.title("Model evaluation")
st.radio("Results", ["stored", "on the dataset"], horizontal=True)
st.checkbox("Use the checkpoint's own split", value=True)
st.selectbox("Split", ["test", "all"])
st.slider("{METRICS_SHOWN}", 0.0, 1.0, 0.5, 0.01)
left, right = st.columns(2)
left.dataframe(pd.DataFrame({{"metric": list("abcdefghi"), "value": range(9)}}), hide_index=True)
right.toggle("Show shares of each true class")
for row in range(3):
    for column in st.columns(2):
        column.plotly_chart(go.Figure(go.Scatter(x=list(range(500)), y=list(range(500)))))
"""
ON_DATASET = "Evaluate on the sidebar's dataset"  # forensics.ui.results.ON_DATASET; importing
# the page module here would start Streamlit's caches outside a running app.


def first_open(page, url: str, split: str) -> float:
    """Seconds from navigation until the metrics are shown, choosing the dataset and evaluating."""
    started = time.perf_counter()
    page.goto(f"{url}/evaluation", timeout=120_000)
    page.get_by_text(ON_DATASET, exact=True).click()
    split_box = page.get_by_role("combobox", name="Split")
    split_box.wait_for(timeout=900_000)
    if split != split_box.input_value():
        split_box.click()
        page.get_by_role("option", name=split, exact=True).click()
    page.get_by_role("button", name="Evaluate").click()
    page.get_by_text(METRICS_SHOWN).wait_for(timeout=900_000)
    return time.perf_counter() - started


def open_in_new_tab(page, url: str, path: str, shown: str) -> float:
    """Seconds from navigation until `shown` is on the page, with no clicks."""
    started = time.perf_counter()
    page.goto(f"{url}/{path}", timeout=120_000)
    page.get_by_text(shown).first.wait_for(timeout=60_000)
    return time.perf_counter() - started


def return_by_navigation(page) -> float:
    """Seconds from clicking 'Model evaluation' in the app's navigation (coming back from the
    Model card page) until the metrics are shown."""
    page.get_by_role("link", name="Model card").click()
    page.get_by_role("heading", name="Model card", exact=True).wait_for(timeout=60_000)
    started = time.perf_counter()
    page.get_by_role("link", name="Model evaluation").click()
    page.get_by_text(METRICS_SHOWN).wait_for(timeout=60_000)
    return time.perf_counter() - started


def time_bare_page(chromium: str, scratch: Path, *, repeats: int) -> float:
    """Median seconds until BARE_PAGE shows its slider in a new tab of a warm browser profile."""
    from playwright.sync_api import sync_playwright

    script = scratch / "bare_page.py"
    script.write_text(BARE_PAGE)
    with serve_app(dict(os.environ), script=script) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        profile = browser.new_context(viewport={"width": 1300, "height": 1000})
        times = []
        for _ in range(repeats + 1):  # the first one warms the profile's HTTP cache
            page = profile.new_page()
            times.append(open_in_new_tab(page, url, "", METRICS_SHOWN))
            page.close()
        browser.close()
    return statistics.median(times[1:])


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
    parser.add_argument("--repeats", type=int, default=5, help="second opens to time")
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
            # One browser profile, as a returning user has: its HTTP cache keeps Streamlit's
            # scripts, so a second tab does not download them again.
            profile = browser.new_context(viewport={"width": 1300, "height": 1000})
            first = first_open(profile.new_page(), url, args.split)
            new_tab, by_navigation, app_start = [], [], []
            for _ in range(args.repeats):
                page = profile.new_page()
                new_tab.append(open_in_new_tab(page, url, "evaluation", METRICS_SHOWN))
                by_navigation.append(return_by_navigation(page))
                page.close()
                page = profile.new_page()
                app_start.append(open_in_new_tab(page, url, "", "Classify an image"))
                page.close()
            browser.close()
        bare = time_bare_page(args.chromium, Path(scratch), repeats=args.repeats)
    print(f"evaluation page, {args.data} ({args.split} split), median of {args.repeats}:")
    print(f"  first open (scan + evaluate):           {first:7.1f} s")
    print(f"  second open, new tab (disk caches):     {statistics.median(new_tab):7.2f} s")
    print(f"  second open, the app's navigation:      {statistics.median(by_navigation):7.2f} s")
    print(f"  for scale, Classify in a new tab:       {statistics.median(app_start):7.2f} s")
    print(f"  for scale, bare Streamlit, same elements: {bare:7.2f} s  (new tab, no project code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
