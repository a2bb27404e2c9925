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
