"""Batch audits (`python -m forensics audit`): one row per file, a resumed audit equals an
uninterrupted one without redoing finished images, hostile files are listed and never fatal,
and no link leads the audit out of its folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from forensics.cli import main as cli_main
from forensics.detector import Detector, load_detector
from forensics.report.audit import COLUMNS, PARTS, run_audit
from tests.conftest import image_bytes, make_image
from tests.hostile import hostile_corpus


def _folder(root: Path, count: int = 6) -> Path:
    for i in range(count):
        sub = root / ("fakes" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img {i}.png").write_bytes(image_bytes(make_image(40 + i, fake=i % 2 == 1), "PNG"))
    return root


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    """An untrained tiny checkpoint, loaded once for the module."""
    import torch

    from forensics.checkpoint import save_checkpoint
    from forensics.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", stem="compact", layer4_stride=1)
    meta = {"architecture": "resnet18", "head": "linear", "stem": "compact",
            "layer4_stride": 1, "data": {"input_size": 32, "resize": 32}}  # fmt: skip
    return load_detector(save_checkpoint(tmp_path_factory.mktemp("audit") / "ckpt", model, meta))


def test_an_audit_killed_midway_resumes_to_the_same_table_without_redoing_images(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "in")
    whole = run_audit(detector, folder, tmp_path / "whole", batch_size=2, progress=False)
    assert list(whole.table.columns) == list(COLUMNS) and len(whole.table) == 6

    explained: list[int] = []
    original = detector.explain_batch

    def counting(images, *args, **kwargs):
        explained.append(len(images))
        return original(images, *args, **kwargs)

    monkeypatch.setattr(detector, "explain_batch", counting)

    def kill(done: int, total: int) -> None:
        if done == 4:
            raise KeyboardInterrupt  # as a kill after two batches

    resumed_out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_audit(detector, folder, resumed_out, batch_size=2, progress=False, on_image=kill)
    assert not (resumed_out / "audit.csv").exists()
    assert len(list((resumed_out / PARTS).glob("*.json"))) == 4
    assert sum(explained) == 4
    resumed = run_audit(detector, folder, resumed_out, batch_size=2, progress=False)
    assert sum(explained) == 6  # only the two unfinished images were judged again
    assert resumed.reused == 4
    assert (resumed_out / "audit.csv").read_bytes() == (
        tmp_path / "whole" / "audit.csv"
    ).read_bytes()
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    # Each row's case report exists and names the file's SHA-256.
    for row in resumed.table.itertuples():
        data = (folder / row.path).read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.sha256 in (resumed_out / row.case).read_text(encoding="utf-8")


def test_a_changed_file_or_another_checkpoint_is_judged_again(
    detector: Detector, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "in", count=2)
    out = tmp_path / "out"
    run_audit(detector, folder, out, progress=False)
    (folder / "img 0.png").write_bytes(image_bytes(make_image(99), "PNG"))
    again = run_audit(detector, folder, out, progress=False)
    assert again.reused == 1
    row = again.table.set_index("path").loc["img 0.png"]
    assert row["sha256"] == hashlib.sha256((folder / "img 0.png").read_bytes()).hexdigest()
    assert (again.table["faithfulness"] == "").all()  # not measured by default
    redone = run_audit(detector, folder, out, progress=False, faithfulness=True)
    assert redone.reused == 0
    assert redone.table["faithfulness"].map(lambda f: -1 <= f <= 1).all()


def test_hostile_files_are_listed_with_their_reasons_not_fatal(
    detector: Detector, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    corpus = [case for case in hostile_corpus() if not case.decodable]
    corpus += [case for case in hostile_corpus() if case.name in ("valid.jpg", "cmyk.jpg",
                                                                  "sixteen_bit.tiff")]  # fmt: skip
    for case in corpus:
        (folder / case.name).write_bytes(case.data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(image_bytes(make_image(1), "PNG"))
    os.symlink(outside / "secret.png", folder / "link_out.png")
    os.symlink(outside, folder / "linked_folder")
    (folder / "notes.txt").write_text("not an image, not audited")
    out = tmp_path / "out"
    code = cli_main(["audit", str(folder), "--out", str(out), "--batch-size", "4",
                     "--checkpoint", str(detector.checkpoint_dir), "--no-views"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured.err
    table = pd.read_csv(out / "audit.csv", keep_default_na=False)
    expected = sorted(case.name for case in corpus if case.name.endswith(
        (".jpg", ".png", ".tiff", ".svg")))  # fmt: skip
    listed = sorted(table["path"])
    assert [p for p in listed if p != "svg_drawing.svg"] == [
        p for p in expected if p != "svg_drawing.svg"
    ]
    assert "link_out.png" not in listed and not any("linked_folder" in p for p in listed)
    unreadable = table[table["decision"] == "unreadable"]
    assert set(unreadable["path"]) >= {"zero_bytes.jpg", "random_bytes.png", "truncated_50.jpg",
                                       "bomb_30000x30000.png"}  # fmt: skip
    assert (unreadable["reason"] != "").all()
    assert set(table.loc[table["decision"] != "unreadable", "path"]) == {
        "valid.jpg",
        "cmyk.jpg",
        "sixteen_bit.tiff",
    }
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count('class="unreadable-row"') == len(unreadable)
    assert report.count('class="image-row"') == 3
    assert "zero_bytes.jpg: unreadable: file is empty" in captured.err


def test_bad_arguments_exit_2(detector: Detector, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in", count=1)
    assert cli_main(["audit", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["audit", str(folder), "--out", str(folder / "inside")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["audit", str(empty), "--out", str(tmp_path / "o"),
                     "--checkpoint", str(detector.checkpoint_dir)]) == 2  # fmt: skip


def test_the_benchmark_prints_evaluate_and_audit_side_by_side(
    detector: Detector, tmp_path: Path, capsys
) -> None:
    import zipfile

    from benchmarks.audit import main as bench_main

    archive = tmp_path / "cifake-train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            label = "FAKE" if i % 2 else "REAL"
            zf.writestr(f"{label}/{i}.jpg", image_bytes(make_image(i, fake=label == "FAKE")))
    work = tmp_path / "work"
    assert bench_main(["--data", str(archive), "--images", "4", "--workdir", str(work),
                       "--checkpoint", str(detector.checkpoint_dir)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "4 CIFAKE files" in out
    for name in ("evaluate", "audit", "audit --faithfulness"):
        assert any(line.startswith(name) for line in out.splitlines()), out
    assert "faithfulness check:" in out and "of evaluate's throughput" in out
    assert len(pd.read_csv(work / "audit" / "audit.csv")) == 4
