"""File names from strangers: spaces, unicode and shell metacharacters work everywhere, and
nothing a dataset contains decides where the tool writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from forensics.cli import main
from tests.conftest import make_image

REPO_ROOT = Path(__file__).resolve().parent.parent
ODD_NAMES = [
    "with space.png",
    "ünïcødé 日本語.png",
    "$(touch pwned); `touch pwned2` & | ; > x.png",
    "--help.png",
    "-rf.png",
    "quote'\"s.png",
    "new\nline.png",
    "..png",
]


def _odd_dataset(root: Path) -> Path:
    for label in ("real", "fake"):
        folder = root / "odd folder $HOME ü" / label
        folder.mkdir(parents=True)
        for i, name in enumerate(ODD_NAMES):
            make_image(100 * (label == "fake") + i, fake=label == "fake").save(
                folder / name, format="PNG"
            )
    return root / "odd folder $HOME ü"


def _all_files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_odd_names_are_evaluated_and_nothing_is_written_elsewhere(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    data = _odd_dataset(tmp_path / "data")
    before = _all_files(tmp_path)
    out = tmp_path / "out"
    code = main(["evaluate", "--data", str(data), "--split", "all", "--checkpoint",
                 str(tiny_checkpoint), "--out", str(out)])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    expected = {f"{label}/{name}" for label in ("real", "fake") for name in ODD_NAMES}
    assert set(table["path"]) == expected
    # Only the output folder (and the private cache the tests point FORENSICS_CACHE at) grew:
    # no file was created next to the data, beside the checkpoint or in the working directory.
    cache = Path(os.environ["FORENSICS_CACHE"])
    new = {p for p in _all_files(tmp_path) - before if cache not in p.parents}
    assert new == {out / "metrics.json", out / "predictions.csv"}
    assert not (Path.cwd() / "pwned").exists() and not (Path.cwd() / "pwned2").exists()


def test_odd_names_through_the_command_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    # A real process with the names as arguments, as a shell user would pass them quoted.
    folder = _odd_dataset(tmp_path / "data") / "real"
    files = [str(folder / name) for name in ODD_NAMES]
    result = subprocess.run(
        [sys.executable, "-m", "forensics", "predict", *files, "--checkpoint",
         str(tiny_checkpoint), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["path"] for r in records] == files
    assert all("label" in r for r in records)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def _evaluation_then_errors() -> None:
    import streamlit as st

    from forensics.ui.common import draw_sidebar
    from forensics.ui.errors import errors_page
    from forensics.ui.evaluation import evaluation_page

    draw_sidebar()
    if st.session_state.get("page", "evaluation") == "evaluation":
        evaluation_page()
    else:
        errors_page()


def test_odd_names_through_the_app_write_only_to_its_cache(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from forensics.ui.results import ON_DATASET

    data = _odd_dataset(tmp_path / "data")
    cache = tmp_path / "app cache"
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("FORENSICS_DATASET", str(data))
    monkeypatch.setenv("FORENSICS_CACHE", str(cache))
    before = _all_files(tmp_path)
    at = AppTest.from_function(_evaluation_then_errors, default_timeout=120).run()
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("all").run()
    next(b for b in at.button if b.label.startswith("Evaluate ")).click().run()
    assert not at.exception, at.exception
    at.session_state["page"] = "errors"
    at.run()
    assert not at.exception, at.exception
    assert any("why fake" in c for image in at.image for c in image.captions)
    new = _all_files(tmp_path) - before
    allowed = (cache, tiny_checkpoint / "eval_cache")
    assert new and all(any(root in p.parents for root in allowed) for p in new), new
    assert not any((folder / "pwned").exists() for folder in (Path.cwd(), tmp_path, data))
