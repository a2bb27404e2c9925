"""forensics.data: label/split inference, the image store (folders and zips), manifests, seeded
grouped splits, split files, duplicate reports, fingerprints and the torch Dataset."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import image_bytes, make_image, write_dataset
from PIL import Image

from forensics.data import (
    MANIFEST_COLUMNS,
    PROVENANCE_COLUMN,
    ImageStore,
    ManifestDataset,
    assign_splits,
    dataset_fingerprint,
    find_duplicates,
    infer_label_and_split,
    load_splits,
    save_splits,
    summarize_manifest,
)
from forensics.images import ImageLoadError
from forensics.scan import build_manifest
from forensics.transforms import DataConfig, build_eval_transform

SMALL = DataConfig(input_size=16, resize=16)


def _png(seed: int, *, size: int = 16, fake: bool = False) -> bytes:
    return image_bytes(make_image(seed, size=size, fake=fake), "PNG")


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _zip(path: Path, files: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name in dirs:
            archive.writestr(zipfile.ZipInfo(name), b"")  # explicit directory entries
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _synthetic_manifest(per_class: int, *, duplicates: int = 1, split=None) -> pd.DataFrame:
    """A file-less manifest: `per_class` distinct hashes per class, each on `duplicates` rows."""
    rows = []
    for label, name in ((0, "real"), (1, "fake")):
        for i in range(per_class):
            sha = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()
            for copy in range(duplicates):
                rows.append((f"{name}/{i:03d}_{copy}.png", label, split, sha, 16, 16, "PNG", None))
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _per_class_counts(manifest: pd.DataFrame) -> dict[tuple[str, int], int]:
    return dict(Counter(zip(manifest["split"], manifest["label"], strict=True)))


# --------------------------------------------------------------------------------------------
# infer_label_and_split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel_path", "expected"),
    [
        ("real/a.png", ("real", None)),
        ("REAL/a.png", ("real", None)),
        ("Real/a.png", ("real", None)),
        ("genuine/a.png", ("real", None)),
        ("authentic/a.png", ("real", None)),
        ("training_real/a.jpg", ("real", None)),
        ("fake/a.png", ("fake", None)),
        ("FAKE/a.png", ("fake", None)),
        ("ai/a.png", ("fake", None)),
        ("AI/a.png", ("fake", None)),
        ("synthetic/a.png", ("fake", None)),
        ("generated/a.png", ("fake", None)),
        ("training_fake/a.jpg", ("fake", None)),
        # split folders and their aliases
        ("train/real/a.png", ("real", "train")),
        ("val/fake/a.png", ("fake", "val")),
        ("valid/real/a.png", ("real", "val")),
        ("validation/fake/a.png", ("fake", "val")),
        ("Validation/fake/a.png", ("fake", "val")),
        ("test/real/a.png", ("real", "test")),
        # CIFAKE
        ("train/REAL/0001 (2).jpg", ("real", "train")),
        ("test/FAKE/0001.jpg", ("fake", "test")),
        # Kaggle 140k real-and-fake faces
        ("real_vs_fake/real-vs-fake/train/real/00001.jpg", ("real", "train")),
        ("real_vs_fake/real-vs-fake/valid/fake/ABC.jpg", ("fake", "val")),
        ("real_vs_fake/real-vs-fake/test/fake/ABC.jpg", ("fake", "test")),
        # zip members as listed by ImageStore
        ("cifake.zip/train/REAL/x.png", ("real", "train")),
        # labels come from folders, never from file names
        ("misc/real.png", (None, None)),
        ("real.png", (None, None)),
        ("train/fake_001.png", (None, "train")),
        ("unsorted/a.png", (None, None)),
        # the innermost label folder wins
        ("fake/real/a.png", ("real", None)),
    ],
)
def test_infer_label_and_split(rel_path: str, expected) -> None:
    assert infer_label_and_split(rel_path) == expected


# --------------------------------------------------------------------------------------------
# ImageStore
# --------------------------------------------------------------------------------------------


def test_store_over_folder(tmp_path: Path) -> None:
    files = {"real/b.png": _png(1), "real/a.jpg": _png(2), "fake/sub/c.PNG": _png(3)}
    _write(tmp_path, files)
    _write(tmp_path, {"real/notes.txt": b"hi", ".hidden/real/x.png": _png(4), "fake/d": b"x"})
    store = ImageStore(tmp_path)
    assert store.list_files() == ["fake/sub/c.PNG", "real/a.jpg", "real/b.png"]
    for rel, data in files.items():
        assert store.read_bytes(rel) == data
    image = store.load_image("real/b.png")
    assert image.mode == "RGB" and image.size == (16, 16)


def test_store_missing_member_is_an_image_load_error(tmp_path: Path) -> None:
    _write(tmp_path, {"real/a.png": _png(1)})
    with pytest.raises(ImageLoadError, match=r"real/zzz\.png"):
        ImageStore(tmp_path).load_image("real/zzz.png")


def test_store_root_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageStore(tmp_path / "missing")
    not_zip = tmp_path / "data.zip"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"not a \.zip"):
        ImageStore(not_zip)


def test_store_over_zip_root(tmp_path: Path) -> None:
    members = {"REAL/x.png": _png(1), "FAKE/y.png": _png(2, fake=True), "FAKE/z.jpg": _png(3)}
    extras = {"__MACOSX/REAL/._x.png": b"junk", "REAL/.DS_Store.png": b"junk", "readme.txt": b"t"}
    archive = _zip(tmp_path / "cifake.zip", {**members, **extras}, dirs=("REAL/", "FAKE/"))
    store = ImageStore(archive)
    assert store.list_files() == sorted(members)
    for name, data in members.items():
        assert store.read_bytes(name) == data
    assert store.load_image("REAL/x.png").size == (16, 16)
    with pytest.raises(ImageLoadError):
        store.load_image("REAL/missing.png")


def test_store_over_folder_with_zip(tmp_path: Path) -> None:
    _write(tmp_path, {"extra/real/loose.png": _png(9)})
    members = {"train/REAL/x.png": _png(1), "test/FAKE/y.png": _png(2)}
    _zip(tmp_path / "cifake.zip", members)
    store = ImageStore(tmp_path)
    assert store.list_files() == [
        "cifake.zip/test/FAKE/y.png",
        "cifake.zip/train/REAL/x.png",
        "extra/real/loose.png",
    ]
    assert store.read_bytes("cifake.zip/train/REAL/x.png") == members["train/REAL/x.png"]
    assert store.load_image("cifake.zip/test/FAKE/y.png").mode == "RGB"


def test_store_contains_files_and_zip_members(tmp_path: Path) -> None:
    _write(tmp_path, {"real/a.png": _png(1)})
    _zip(tmp_path / "set.zip", {"test/FAKE/b.png": _png(2)})
    store = ImageStore(tmp_path)
    assert store.contains("real/a.png") and store.contains("set.zip/test/FAKE/b.png")
    assert not store.contains("real/missing.png")
    assert not store.contains("set.zip/test/FAKE/missing.png")
    assert not store.contains("other.zip/test/FAKE/b.png")  # no such archive
    direct = ImageStore(tmp_path / "set.zip")
    assert direct.contains("test/FAKE/b.png") and not direct.contains("real/a.png")


# --------------------------------------------------------------------------------------------
# build_manifest
# --------------------------------------------------------------------------------------------


def test_build_manifest_flat_layout(tiny_dataset: Path) -> None:
    discovery = build_manifest(tiny_dataset, progress=False)
    manifest = discovery.manifest
    # The scan also records each file's provenance claims: none for these plain images.
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, PROVENANCE_COLUMN]
    assert (manifest[PROVENANCE_COLUMN] == "").all()
    assert len(manifest) == 16 and discovery.skipped.empty
    assert not discovery.has_splits and manifest["split"].isna().all()
    for row in manifest.itertuples(index=False):
        assert not Path(row.path).is_absolute()
        data = (tiny_dataset / row.path).read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.label == (1 if row.path.startswith("fake/") else 0)
        assert (row.width, row.height, row.format) == (32, 32, "PNG")
    assert manifest["label"].tolist().count(0) == 8


def test_build_manifest_split_layout(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", per_class=2, size=16, splits=("train", "val", "test"))
    discovery = build_manifest(root, progress=False)
    assert discovery.has_splits
    counts = _per_class_counts(discovery.manifest)
    assert counts == {(s, label): 2 for s in ("train", "val", "test") for label in (0, 1)}


def test_build_manifest_cifake_layout_in_a_zip(tmp_path: Path) -> None:
    members = {}
    for split in ("train", "test"):
        for label in ("REAL", "FAKE"):
            for i in range(2):
                data = image_bytes(make_image(len(members), size=16), "JPEG")
                members[f"{split}/{label}/{i} (2).jpg"] = data
    _zip(tmp_path / "cifake.zip", members)
    manifest = build_manifest(tmp_path, progress=False).manifest
    assert all(p.startswith("cifake.zip/") for p in manifest["path"])
    assert set(manifest["format"]) == {"JPEG"}
    expected = {
        f"cifake.zip/{s}/{lab}/{i} (2).jpg": (s, int(lab == "FAKE"))
        for s in ("train", "test")
        for lab in ("REAL", "FAKE")
        for i in range(2)
    }
    got = {r.path: (r.split, r.label) for r in manifest.itertuples()}
    assert got == expected
    # The zip given directly as the root: same rows, paths relative to the archive.
    direct = build_manifest(tmp_path / "cifake.zip", progress=False).manifest
    assert sorted(direct["path"]) == sorted(p.removeprefix("cifake.zip/") for p in expected)
    assert sorted(direct["sha256"]) == sorted(manifest["sha256"])


def test_build_manifest_kaggle_140k_layout(tmp_path: Path) -> None:
    files = {}
    for split in ("train", "valid", "test"):
        for label in ("real", "fake"):
            files[f"real_vs_fake/real-vs-fake/{split}/{label}/{label}{split}.jpg"] = image_bytes(
                make_image(len(files), size=16), "JPEG"
            )
    _write(tmp_path, files)
    manifest = build_manifest(tmp_path, progress=False).manifest
    assert len(manifest) == 6
    assert set(manifest["split"]) == {"train", "val", "test"}
    for row in manifest.itertuples():
        assert row.label == int("/fake/" in row.path)


def _huge_png() -> bytes:
    import struct
    import zlib

    data = bytearray(image_bytes(Image.new("RGB", (4, 4)), "PNG"))
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_build_manifest_skips_bad_files_with_reasons(tmp_path: Path) -> None:
    good_jpeg = image_bytes(make_image(1, size=32), "JPEG")
    bad_header = bytearray(_png(5))
    bad_header[20] ^= 0xFF  # IHDR CRC no longer matches
    _write(
        tmp_path,
        {
            "real/good.png": _png(1),
            "fake/good.png": _png(2, fake=True),
            "real/corrupt.jpg": good_jpeg[: len(good_jpeg) // 2],
            "fake/text.png": b"this is a text file, not a PNG\n",
            "fake/empty.png": b"",
            "fake/bomb.png": _huge_png(),
            "real/bad_header.png": bytes(bad_header),
            "misc/unlabelled.png": _png(3),
            "loose.png": _png(4),
        },
    )
    discovery = build_manifest(tmp_path, progress=False)
    assert sorted(discovery.manifest["path"]) == ["fake/good.png", "real/good.png"]
    reasons = dict(zip(discovery.skipped["path"], discovery.skipped["reason"], strict=True))
    assert set(reasons) == {
        "real/corrupt.jpg",
        "fake/text.png",
        "fake/empty.png",
        "fake/bomb.png",
        "real/bad_header.png",
        "misc/unlabelled.png",
        "loose.png",
    }
    assert "truncated" in reasons["real/corrupt.jpg"]
    assert "not a recognised image" in reasons["fake/text.png"]
    assert "empty" in reasons["fake/empty.png"]
    assert "too large" in reasons["fake/bomb.png"]
    assert "real/fake" in reasons["misc/unlabelled.png"]
    assert "real/fake" in reasons["loose.png"]
    assert all(isinstance(r, str) and r for r in reasons.values())


def test_build_manifest_loose_files_beside_split_folders_are_skipped(tmp_path: Path) -> None:
    write_dataset(tmp_path, per_class=1, size=16, splits=("train", "test"))
    _write(tmp_path, {"real/extra.png": _png(50)})
    discovery = build_manifest(tmp_path, progress=False)
    assert "real/extra.png" not in set(discovery.manifest["path"])
    assert discovery.manifest["split"].notna().all() and len(discovery.manifest) == 4
    assert "real/extra.png" in set(discovery.skipped["path"])


def test_build_manifest_reports_progress(tiny_dataset: Path) -> None:
    calls = []
    build_manifest(
        tiny_dataset, progress=False, progress_callback=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 16) and calls[-1] == (16, 16)


def test_build_manifest_errors_on_nothing_usable(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        build_manifest(tmp_path / "empty", progress=False)
    _write(tmp_path / "bad", {"real/x.png": b"nope", "misc/y.png": _png(1)})
    with pytest.raises(ValueError, match="no readable images"):
        build_manifest(tmp_path / "bad", progress=False)


def test_summarize_manifest(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, per_class=2, size=16, splits=("train",))
    _write(root, {"test/fake/extra.png": _png(77)})
    summary = summarize_manifest(build_manifest(root, progress=False).manifest)
    assert summary.loc["train", "real"] == 2 and summary.loc["train", "fake"] == 2
    assert summary.loc["test", "fake"] == 1 and summary.loc["test", "real"] == 0


# --------------------------------------------------------------------------------------------
# assign_splits
# --------------------------------------------------------------------------------------------


def test_assign_splits_80_10_10_stratified() -> None:
    out = assign_splits(_synthetic_manifest(50), seed=0)
    assert _per_class_counts(out) == {
        ("train", 0): 40,
        ("train", 1): 40,
        ("val", 0): 5,
        ("val", 1): 5,
        ("test", 0): 5,
        ("test", 1): 5,
    }


def test_assign_splits_returns_a_copy() -> None:
    manifest = _synthetic_manifest(10)
    out = assign_splits(manifest)
    assert manifest["split"].isna().all()
    assert out["split"].notna().all()
    pd.testing.assert_frame_equal(out.drop(columns="split"), manifest.drop(columns="split"))


def test_assign_splits_is_seeded() -> None:
    manifest = _synthetic_manifest(50)
    first = assign_splits(manifest, seed=1)["split"].tolist()
    assert assign_splits(manifest, seed=1)["split"].tolist() == first
    assert assign_splits(manifest.sample(frac=1, random_state=3), seed=1).set_index("path")[
        "split"
    ].to_dict() == dict(zip(manifest["path"], first, strict=True))  # row order does not matter
    assert assign_splits(manifest, seed=2)["split"].tolist() != first


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicates_share_a_split(seed: int) -> None:
    manifest = _synthetic_manifest(20, duplicates=3)
    out = assign_splits(manifest, seed=seed)
    splits_per_hash = out.groupby("sha256")["split"].nunique()
    assert (splits_per_hash == 1).all()
    assert set(out["split"]) == {"train", "val", "test"}
    # Counted in unique files, the proportions still hold (16/2/2 per class).
    unique = out.drop_duplicates("sha256")
    assert _per_class_counts(unique)[("train", 0)] == 16


def test_existing_train_test_gets_val_carved_from_train() -> None:
    train = _synthetic_manifest(45, split="train")
    test = _synthetic_manifest(5, split="test").assign(path=lambda f: "test/" + f["path"])
    test["sha256"] = [hashlib.sha256(p.encode()).hexdigest() for p in test["path"]]
    manifest = pd.concat([train, test], ignore_index=True)
    out = assign_splits(manifest, seed=0)
    # Test rows are untouched.
    was_test = manifest["split"] == "test"
    assert (out.loc[was_test, "split"] == "test").all()
    # Val comes only from former train rows: 0.1 / (0.8 + 0.1) of the 90 train images = 10.
    former_train = out[~was_test]
    assert set(former_train["split"]) == {"train", "val"}
    counts = _per_class_counts(former_train)
    assert counts[("val", 0)] + counts[("val", 1)] in (9, 10)
    assert counts[("val", 0)] >= 4 and counts[("val", 1)] >= 4
    assert counts[("train", 0)] + counts[("train", 1)] + counts[("val", 0)] + counts[
        ("val", 1)
    ] == len(train)


def test_complete_splits_are_left_alone() -> None:
    manifest = _synthetic_manifest(6)
    manifest["split"] = ["train", "val", "test"] * (len(manifest) // 3)
    out = assign_splits(manifest, seed=5)
    pd.testing.assert_frame_equal(out, manifest)


def test_assign_splits_rejects_bad_input() -> None:
    manifest = _synthetic_manifest(5)
    for fractions in [(0.5, 0.5), (0.8, 0.1, 0.2), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            assign_splits(manifest, fractions=fractions)
    with pytest.raises(ValueError, match="no train"):
        assign_splits(_synthetic_manifest(5, split="test"))


def test_assign_splits_custom_fractions() -> None:
    out = assign_splits(_synthetic_manifest(10), fractions=(0.6, 0.2, 0.2), seed=0)
    assert Counter(out["split"]) == {"train": 12, "val": 4, "test": 4}


# --------------------------------------------------------------------------------------------
# save_splits / load_splits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["splits.csv", "splits.csv.gz"])
def test_split_file_round_trip(tmp_path: Path, name: str) -> None:
    manifest = _synthetic_manifest(10)
    split = assign_splits(manifest, seed=4)
    path = tmp_path / "sub" / name
    save_splits(split, path)
    assert path.exists()
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        header = gzip.decompress(path.read_bytes()).decode().splitlines()[0]
    else:
        header = path.read_text().splitlines()[0]
    assert header == "path,label,split,sha256"
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary files left behind
    restored = load_splits(manifest, path)
    assert dict(zip(restored["path"], restored["split"], strict=True)) == dict(
        zip(split["path"], split["split"], strict=True)
    )
    assert len(restored) == len(manifest)
    assert dataset_fingerprint(restored) == dataset_fingerprint(split)


def test_load_splits_drops_rows_not_in_file_and_rejects_foreign_files(tmp_path: Path) -> None:
    manifest = assign_splits(_synthetic_manifest(5))
    path = tmp_path / "splits.csv"
    save_splits(manifest.iloc[:4], path)
    assert len(load_splits(manifest, path)) == 4
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="not a split file"):
        load_splits(manifest, other)
    foreign = tmp_path / "foreign.csv"
    pd.DataFrame({"path": ["elsewhere.png"], "split": ["train"]}).to_csv(foreign, index=False)
    with pytest.raises(ValueError, match="none of the paths"):
        load_splits(manifest, foreign)


# --------------------------------------------------------------------------------------------
# find_duplicates and dataset_fingerprint
# --------------------------------------------------------------------------------------------


def test_find_duplicates_on_disk(tmp_path: Path) -> None:
    same_split, leaked, conflict = _png(1), _png(2), _png(3)
    _write(
        tmp_path,
        {
            "train/real/a.png": same_split,
            "train/real/a_copy.png": same_split,
            "train/fake/leak.png": leaked,
            "test/fake/leak.png": leaked,
            "test/real/c.png": conflict,
            "test/fake/c.png": conflict,
            "test/real/unique.png": _png(4),
        },
    )
    manifest = build_manifest(tmp_path, progress=False).manifest
    report = find_duplicates(manifest).set_index("sha256")
    assert len(report) == 3
    row = report.loc[hashlib.sha256(same_split).hexdigest()]
    assert row["count"] == 2 and not row["cross_split"] and not row["label_conflict"]
    assert sorted(row["paths"]) == ["train/real/a.png", "train/real/a_copy.png"]
    row = report.loc[hashlib.sha256(leaked).hexdigest()]
    assert row["cross_split"] and not row["label_conflict"] and row["splits"] == ["test", "train"]
    row = report.loc[hashlib.sha256(conflict).hexdigest()]
    assert row["label_conflict"] and not row["cross_split"] and row["labels"] == ["fake", "real"]


def test_find_duplicates_empty_when_unique() -> None:
    report = find_duplicates(_synthetic_manifest(5))
    assert report.empty
    assert {"sha256", "count", "cross_split", "label_conflict"} <= set(report.columns)


def test_dataset_fingerprint() -> None:
    manifest = assign_splits(_synthetic_manifest(10), seed=0)
    fingerprint = dataset_fingerprint(manifest)
    assert isinstance(fingerprint, str) and len(fingerprint) == 16
    assert dataset_fingerprint(manifest.iloc[::-1]) == fingerprint  # row order is irrelevant
    moved = manifest.copy()
    moved.loc[moved.index[0], "split"] = "test" if moved["split"].iloc[0] != "test" else "train"
    assert dataset_fingerprint(moved) != fingerprint
    assert dataset_fingerprint(assign_splits(_synthetic_manifest(10), seed=1)) != fingerprint
    changed = manifest.copy()
    changed.loc[changed.index[0], "sha256"] = "0" * 64
    assert dataset_fingerprint(changed) != fingerprint
    assert dataset_fingerprint(manifest.iloc[1:]) != fingerprint


# --------------------------------------------------------------------------------------------
# ManifestDataset
# --------------------------------------------------------------------------------------------


def test_manifest_dataset_items(tiny_dataset: Path) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    transform = build_eval_transform(SMALL)
    dataset = ManifestDataset(tiny_dataset, manifest, transform)
    assert len(dataset) == 16
    for i in (0, 5, 15):
        tensor, label = dataset[i]
        assert label == manifest["label"].iloc[i]
        assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
        expected = transform(Image.open(tiny_dataset / manifest["path"].iloc[i]).convert("RGB"))
        torch.testing.assert_close(tensor, expected)


def test_manifest_dataset_preload_serves_from_memory(tiny_dataset: Path) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    transform = build_eval_transform(SMALL)
    plain = ManifestDataset(tiny_dataset, manifest, transform)
    cached = ManifestDataset(tiny_dataset, manifest, transform, cache_decoded=True)
    cached.preload(progress=False)
    for image in list(tiny_dataset.rglob("*.png")):
        image.unlink()  # from now on only the cache can serve the images
    with pytest.raises(ImageLoadError):
        plain[0]
    for i in range(len(cached)):
        tensor, label = cached[i]
        assert label == manifest["label"].iloc[i]
        assert tensor.shape == (3, 16, 16)


def test_manifest_dataset_cache_gives_identical_tensors(tiny_dataset: Path) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    transform = build_eval_transform(SMALL)
    plain = ManifestDataset(tiny_dataset, manifest, transform)
    cached = ManifestDataset(tiny_dataset, manifest, transform, cache_decoded=True)
    for i in range(len(plain)):
        first, second = cached[i][0], cached[i][0]  # miss, then hit
        torch.testing.assert_close(first, plain[i][0], rtol=0, atol=0)
        torch.testing.assert_close(second, plain[i][0], rtol=0, atol=0)


def test_manifest_dataset_unreadable_row_raises(tiny_dataset: Path) -> None:
    manifest = build_manifest(tiny_dataset, progress=False).manifest
    (tiny_dataset / manifest["path"].iloc[0]).write_bytes(b"garbage")
    dataset = ManifestDataset(tiny_dataset, manifest, build_eval_transform(SMALL))
    with pytest.raises(ImageLoadError):
        dataset[0]


def test_manifest_dataset_on_zip_with_worker_processes(tmp_path: Path) -> None:
    members = {
        f"{label}/{i}.png": _png(i + 10 * (label == "FAKE"), fake=label == "FAKE")
        for label in ("REAL", "FAKE")
        for i in range(4)
    }
    archive = _zip(tmp_path / "data.zip", members)
    manifest = build_manifest(archive, progress=False).manifest
    dataset = ManifestDataset(archive, manifest, build_eval_transform(SMALL))
    expected = [dataset[i] for i in range(len(dataset))]  # opens a zip handle in this process
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    images, labels = zip(*loader, strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    assert images.shape == (8, 3, 16, 16)
    assert labels.tolist() == [label for _, label in expected]
    torch.testing.assert_close(images, torch.stack([t for t, _ in expected]), rtol=0, atol=0)
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4


def test_image_store_pickles_without_handles(tmp_path: Path) -> None:
    import pickle

    archive = _zip(tmp_path / "data.zip", {"REAL/a.png": _png(1)})
    store = ImageStore(archive)
    store.read_bytes("REAL/a.png")  # opens a handle that must not travel
    clone = pickle.loads(pickle.dumps(store))
    assert clone.read_bytes("REAL/a.png") == store.read_bytes("REAL/a.png")
    assert np.asarray(clone.load_image("REAL/a.png")).shape == (16, 16, 3)
