"""training.combine_sources: several datasets become one training set without any of their
test images, links for folders and copies for archive members, with a record of what went in."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from forensics.data import assign_splits
from forensics.scan import build_manifest
from tests.conftest import write_dataset
from training import combine_sources
from training.combine_sources import main as combine_main


def _zipped(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*.png")):
            archive.write(file, file.relative_to(folder).as_posix())
    return path


def test_sources_are_combined_without_their_test_rows(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "a", per_class=20, size=32)
    archive = _zipped(write_dataset(tmp_path / "b_src", per_class=20, size=48), tmp_path / "b.zip")
    target = tmp_path / "combined"
    assert combine_main([f"a={folder}", f"b={archive}", "--to", str(target)]) == 0

    manifest = build_manifest(target, progress=False).manifest
    names = set(manifest["path"])
    for name, root in (("a", folder), ("b", archive)):
        split = assign_splits(build_manifest(root, progress=False).manifest,
                              fractions=[0.8, 0.1, 0.1], seed=0)  # fmt: skip
        expected = {
            f"{label}/{name}__{path.replace('/', '__')}"
            for path, label in zip(split["path"], split["label"].map({0: "real", 1: "fake"}),
                                   strict=True)
        }  # fmt: skip
        test = {
            f"{name}__{p.replace('/', '__')}" for p in split.loc[split["split"] == "test", "path"]
        }
        held = {n for n in names if n.split("/")[1].startswith(f"{name}__")}
        assert held and held <= expected
        assert not {n.split("/")[1] for n in held} & test  # no test image of any source
        assert len(held) == int((split["split"] != "test").sum())
    # Folder sources are linked, archive members copied; labels come from the folders.
    linked = next((target / "real").glob("a__*"))
    assert linked.is_symlink() and linked.resolve().parent == (folder / "real").resolve()
    assert not next((target / "fake").glob("b__*")).is_symlink()
    record = json.loads((target / "SOURCES.json").read_text())
    assert record["excluded"] == "test" and set(record["sources"]) == {"a", "b"}
    assert (
        combine_sources.sources_of(target) == ["a", "b"]
        and combine_sources.sources_of(folder) == []
    )


def test_per_source_caps_and_refusals(tmp_path: Path, capsys) -> None:
    folder = write_dataset(tmp_path / "a", per_class=20, size=32)
    target = tmp_path / "capped"
    assert combine_main([f"a={folder}", "--to", str(target), "--per-source", "10"]) == 0
    record = json.loads((target / "SOURCES.json").read_text())["sources"]["a"]
    assert record["images"] == 10 and record["real"] == record["fake"] == 5
    assert combine_main([f"a={folder}", "--to", str(target)]) == 2
    assert "exists" in capsys.readouterr().err
    assert combine_main([f"a__b={folder}", "--to", str(tmp_path / "x")]) == 2
    assert combine_main(["a=/nonexistent", "--to", str(tmp_path / "y")]) == 2
