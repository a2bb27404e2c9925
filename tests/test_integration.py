"""Integration: the shipped default model on real CIFAKE and faces images from FORENSICS_DATA_ROOT.

A handful of files is copied into tmp_path (never into the repository); CIFAKE members are also
read in place from the zip. Skipped where FORENSICS_DATA_ROOT is unset or the default checkpoint
has not been shipped yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forensics import load_detector
from forensics.checkpoint import DEFAULT_CHECKPOINT, METADATA_FILE
from forensics.data import ImageStore
from forensics.scan import build_manifest
from tests.conftest import make_image

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
PER_CLASS = 10
FACES_PER_CLASS = 3


def _cifake_zip(root: Path) -> Path:
    path = root / "cifake" / "cifake-train.zip"
    if not path.is_file():
        pytest.skip(f"{path} not found under FORENSICS_DATA_ROOT")
    return path


def _spread(names: list[str], n: int) -> list[str]:
    """n members spread evenly over the sorted list (no reliance on numbering per class)."""
    names = sorted(names)
    step = max(1, len(names) // n)
    return names[::step][:n]


def _cifake_members(zip_path: Path, n: int = PER_CLASS) -> dict[str, list[str]]:
    """n REAL and n FAKE members, from the shipped model's held-out test split where it exists
    (so the check is on images the model never trained on), else from the whole archive."""
    splits_file = DEFAULT_CHECKPOINT / "splits.csv.gz"
    prefix = f"{zip_path.name}/"
    if splits_file.is_file():
        splits = pd.read_csv(splits_file)
        test = splits.loc[(splits["split"] == "test") & splits["path"].str.startswith(prefix)]
        names = [path[len(prefix) :] for path in test["path"]]
    else:
        with zipfile.ZipFile(zip_path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    members = {
        folder: _spread([m for m in names if m.startswith(f"{folder}/")], n)
        for folder in ("REAL", "FAKE")
    }
    assert all(len(v) == n for v in members.values()), members
    return members


@pytest.fixture
def default_detector():
    if not (DEFAULT_CHECKPOINT / METADATA_FILE).is_file():
        pytest.skip(f"the shipped default checkpoint is not there yet ({DEFAULT_CHECKPOINT})")
    return load_detector()


@pytest.fixture
def cifake_copy(shared_data_root: Path, tmp_path: Path) -> Path:
    """~10 REAL + ~10 FAKE CIFAKE JPEGs copied into tmp_path/cifake/{REAL,FAKE}."""
    zip_path = _cifake_zip(shared_data_root)
    out = tmp_path / "cifake"
    with zipfile.ZipFile(zip_path) as archive:
        for folder, members in _cifake_members(zip_path).items():
            (out / folder).mkdir(parents=True)
            for i, member in enumerate(members):
                (out / folder / f"{i:02d}.jpg").write_bytes(archive.read(member))
    return out


@pytest.fixture
def faces_copy(shared_data_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "faces"
    for label in ("real", "fake"):
        source = shared_data_root / "faces" / label
        if not source.is_dir():
            pytest.skip(f"{source} not found under FORENSICS_DATA_ROOT")
        (out / label).mkdir(parents=True)
        for path in _spread([p.name for p in source.glob("*.jpg")], FACES_PER_CLASS):
            (out / label / path).write_bytes((source / path).read_bytes())
    return out


def _labelled_files(root: Path) -> tuple[list[Path], np.ndarray]:
    files = sorted(p for p in root.rglob("*.jpg"))
    labels = np.array([1 if p.parent.name.lower() == "fake" else 0 for p in files])
    return files, labels


# ------------------------------------------------------------------------------- default model


def test_default_model_on_cifake(default_detector, cifake_copy: Path) -> None:
    files, labels = _labelled_files(cifake_copy)
    assert len(files) == 2 * PER_CLASS
    verdicts = default_detector.predict_batch(files, batch_size=8)
    probs = np.array([v.prob_fake for v in verdicts])
    assert ((probs >= 0) & (probs <= 1)).all()
    predicted = np.array([v.label == "fake" for v in verdicts], dtype=int)
    np.testing.assert_array_equal(predicted, probs >= default_detector.threshold)
    accuracy = float((predicted == labels).mean())
    assert accuracy >= 0.8, f"accuracy {accuracy:.2f} on {len(files)} CIFAKE images"
    # Single predictions agree with the batch.
    for path, verdict in list(zip(files, verdicts, strict=True))[:4]:
        assert default_detector.predict(path).prob_fake == pytest.approx(
            verdict.prob_fake, abs=1e-5
        )


def test_default_model_heatmaps_on_cifake(default_detector, cifake_copy: Path) -> None:
    files, _ = _labelled_files(cifake_copy)
    size = default_detector.data_config.input_size
    spreads = []
    for path in files:
        explanation = default_detector.explain(path, method="gradcam")
        assert explanation.heatmap.shape == (size, size)
        assert explanation.heatmap.dtype == np.float32
        assert 0.0 <= explanation.heatmap.min() <= explanation.heatmap.max() <= 1.0
        assert explanation.view.shape == explanation.overlay.shape == (size, size, 3)
        assert explanation.target == explanation.verdict.label
        spreads.append(float(np.ptp(explanation.heatmap)))
    non_constant = sum(s > 0 for s in spreads)
    assert non_constant >= 0.75 * len(files), f"constant heatmaps: {spreads}"


def test_default_model_on_faces(default_detector, faces_copy: Path) -> None:
    files, _ = _labelled_files(faces_copy)
    assert len(files) == 2 * FACES_PER_CLASS
    verdicts = default_detector.predict_batch(files, batch_size=4)
    assert all(v.label in ("real", "fake") and 0 <= v.prob_fake <= 1 for v in verdicts)
    size = default_detector.data_config.input_size
    for path in files[:2]:
        explanation = default_detector.explain(path, method="gradcam")
        # A 256 px face is shown as the model saw it, at its input size, not the original.
        assert explanation.view.shape == (size, size, 3)
        assert explanation.heatmap.shape == (size, size)
    # 256 px faces are 8x the default model's 32 px training images: never a confident answer.
    assert all(v.decision == "unsure" for v in verdicts)
    assert all(any("downscaled 8x" in r for r in v.reasons) for v in verdicts)


def test_auto_sends_each_shared_set_to_its_own_model(
    cifake_copy: Path, faces_copy: Path, shared_data_root: Path
) -> None:
    from forensics.router import NO_MODEL_FITS, load_detector

    auto = load_detector("auto")
    cifake, _ = _labelled_files(cifake_copy)
    faces, _ = _labelled_files(faces_copy)
    sdcoco = sorted((shared_data_root / "sdcoco").rglob("*.jpg"))[::300]  # 4, both classes
    if len(sdcoco) < 4:
        pytest.skip("sdcoco not found under FORENSICS_DATA_ROOT")
    photo = make_image(5, size=64).resize((1600, 1131))  # a PNG: no shipped model's domain
    verdicts = auto.predict_batch([*cifake[:4], *faces[:4], *sdcoco[:4], photo])
    expected = ["default"] * 4 + ["faces"] * 4 + ["photos"] * 4
    assert [v.checkpoint for v in verdicts[:12]] == expected
    assert all(v.routing == "chosen" for v in verdicts[:12])
    assert verdicts[-1].decision == "unsure" and verdicts[-1].routing == "nearest"
    assert verdicts[-1].reasons[0].startswith(NO_MODEL_FITS)


def test_cli_evaluate_with_the_default_model(default_detector, cifake_copy: Path, tmp_path) -> None:
    out = tmp_path / "eval"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forensics",
            "evaluate",
            "--data",
            str(cifake_copy),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert metrics["n"] == len(table) == 2 * PER_CLASS
    assert metrics["checkpoint_id"] == default_detector.checkpoint_id
    assert metrics["accuracy"] >= 0.8
    assert sorted(table["label"].tolist()) == [0] * PER_CLASS + [1] * PER_CLASS
    direct = default_detector.predict_batch([cifake_copy / p for p in table["path"]])
    np.testing.assert_allclose(table["prob_fake"], [v.prob_fake for v in direct], atol=1e-5)


# ------------------------------------------------------------------------------- reading data


def test_image_store_reads_cifake_members_in_place(shared_data_root: Path) -> None:
    zip_path = _cifake_zip(shared_data_root)
    members = _cifake_members(zip_path, n=3)
    store = ImageStore(zip_path)
    in_folder = ImageStore(zip_path.parent)  # a folder holding the zip: members read in place
    with zipfile.ZipFile(zip_path) as archive:
        for folder, names in members.items():
            for name in names:
                data = store.read_bytes(name)
                assert data == archive.read(name)
                assert in_folder.read_bytes(f"{zip_path.name}/{name}") == data
                image = store.load_image(name)
                assert image.mode == "RGB" and image.size == (32, 32)
                assert folder in ("REAL", "FAKE")


def test_manifest_of_the_copied_subset(cifake_copy: Path) -> None:
    discovery = build_manifest(cifake_copy, progress=False)
    manifest = discovery.manifest
    assert discovery.skipped.empty
    assert len(manifest) == 2 * PER_CLASS
    assert (manifest["label"] == manifest["path"].str.startswith("FAKE/").astype(int)).all()
    assert set(manifest["format"]) == {"JPEG"}
    assert set(zip(manifest["width"], manifest["height"], strict=True)) == {(32, 32)}
    assert manifest["sha256"].is_unique
