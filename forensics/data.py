"""Datasets: discovery in the known layouts, seeded splits, duplicate/leakage reports and a
torch Dataset over a manifest. Scanning a root into its manifest (content hashes, sizes) is in
`forensics.scan`.

A dataset root is a folder or a `.zip` archive; `.zip` archives inside a folder are read in
place too (their members appear as `archive.zip/member/path`). Paths in a manifest are relative
to the root, and labels come from folder names, never from sort order or file names.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from forensics.atomic import write_atomic
from forensics.images import ImageLoadError, load_image
from forensics.labels import CLASS_INDEX, LABEL_NAMES

LABELS = CLASS_INDEX  # label name -> index, as manifests store it
LABEL_ALIASES = {
    **dict.fromkeys(("real", "genuine", "authentic", "training_real"), "real"),
    **dict.fromkeys(("fake", "ai", "synthetic", "generated", "training_fake"), "fake"),
}
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MANIFEST_COLUMNS = ["path", "label", "split", "sha256", "width", "height", "format", "jpeg_quality"]
# A scan also records what each file claims about its origin (`forensics.evidence.Evidence.
# to_record` as JSON, empty where it claims nothing), read from the bytes it hashes: a decision
# over a dataset weighs it without reading any file again. Manifests made otherwise may lack it.
PROVENANCE_COLUMN = "provenance"


# --------------------------------------------------------------------------------------------
# Reading files from a folder and from zip archives in place
# --------------------------------------------------------------------------------------------


class ImageStore:
    """Lists and reads the image files under a dataset root (folder, zip, or folder with zips).

    Safe to use from several threads and from forked DataLoader workers: each process and
    thread opens its own zip handles.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"dataset root not found: {self.root}")
        if self.root.is_file() and not zipfile.is_zipfile(self.root):
            raise ValueError(f"dataset root {self.root} is a file but not a .zip archive")
        self._local = threading.local()

    def list_files(self) -> list[str]:
        """Sorted relative paths (POSIX style) of every file with an image extension."""
        if self.root.is_file():
            return sorted(_zip_image_members(self.root))
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(self.root)
            for name in filenames:
                rel = (rel_dir / name).as_posix()
                suffix = Path(name).suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    found.append(rel)
                elif suffix == ".zip" and zipfile.is_zipfile(Path(dirpath) / name):
                    found += [f"{rel}/{m}" for m in _zip_image_members(Path(dirpath) / name)]
        return sorted(found)

    def read_bytes(self, rel_path: str) -> bytes:
        if self.root.is_file():
            return self._zip(self.root).read(rel_path)
        archive, member = _split_archive_path(rel_path)
        if archive is not None:
            return self._zip(self.root / archive).read(member)
        return (self.root / rel_path).read_bytes()

    def contains(self, rel_path: str) -> bool:
        """Whether `rel_path` is a file under the root (a member, for paths inside a zip)."""
        archive, member = (None, rel_path) if self.root.is_file() else _split_archive_path(rel_path)
        if archive is None and not self.root.is_file():
            return (self.root / rel_path).is_file()
        try:
            self._zip(self.root if archive is None else self.root / archive).getinfo(member)
        except (OSError, KeyError, zipfile.BadZipFile):  # no such member, or no such archive
            return False
        return True

    def load_image(self, rel_path: str) -> Image.Image:
        """Decoded RGB image; ImageLoadError if unreadable or missing."""
        try:
            data = self.read_bytes(rel_path)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ImageLoadError(f"cannot read {rel_path}: {exc}") from None
        return load_image(data)

    def _zip(self, path: Path) -> zipfile.ZipFile:
        handles = getattr(self._local, "handles", None)
        if handles is None or self._local.pid != os.getpid():
            handles = self._local.handles = {}
            self._local.pid = os.getpid()
        if path not in handles:
            handles[path] = zipfile.ZipFile(path)
        return handles[path]

    def __getstate__(self) -> dict:
        return {"root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.root = state["root"]
        self._local = threading.local()


def _zip_image_members(path: Path) -> Iterator[str]:
    # Plain string operations, not a PurePosixPath per member: this runs for each of the 89,080
    # members of CIFAKE whenever the dataset is listed.
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if (
                not info.is_dir()
                and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                and not any(part.startswith((".", "__MACOSX")) for part in name.split("/"))
            ):
                yield name


def _split_archive_path(rel_path: str) -> tuple[str | None, str]:
    parts = rel_path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower().endswith(".zip"):
            return "/".join(parts[: i + 1]), "/".join(parts[i + 1 :])
    return None, rel_path


# --------------------------------------------------------------------------------------------
# Discovery and manifests
# --------------------------------------------------------------------------------------------


def infer_label_and_split(rel_path: str) -> tuple[str | None, str | None]:
    """Label ('real'|'fake'|None) from the innermost folder alias, split from any split folder."""
    folders = [p.lower() for p in PurePosixPath(rel_path).parts[:-1]]
    label = next((LABEL_ALIASES[f] for f in reversed(folders) if f in LABEL_ALIASES), None)
    split = next((SPLIT_ALIASES[f] for f in reversed(folders) if f in SPLIT_ALIASES), None)
    return label, split


@dataclass
class Discovery:
    """Result of scanning a root: a manifest of readable images and a table of skipped files."""

    manifest: pd.DataFrame  # MANIFEST_COLUMNS; label is 0/1; split may be None
    skipped: pd.DataFrame  # path, reason

    @property
    def has_splits(self) -> bool:
        return bool(self.manifest["split"].notna().any())


def assign_splits(
    manifest: pd.DataFrame,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> pd.DataFrame:
    """Stratified, seeded train/val/test split; identical files (same sha256) share a split.

    If the manifest already has train and test but no val, val is carved from train with the
    val fraction relative to train+val. Returns a copy with the `split` column filled.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    out = manifest.copy()
    present = set(out["split"].dropna())
    if present and "val" in present:
        return out
    if present:
        if "train" not in present:
            raise ValueError(f"dataset has splits {sorted(present)} but no train split")
        train_rows = out["split"] == "train"
        val_share = fractions[1] / (fractions[0] + fractions[1])
        out.loc[train_rows, "split"] = _grouped_split(
            out[train_rows], [1 - val_share, val_share], ["train", "val"], seed
        )
        return out
    out["split"] = _grouped_split(out, list(fractions), list(SPLITS), seed)
    return out


def _grouped_split(
    frame: pd.DataFrame, fractions: list[float], names: list[str], seed: int
) -> np.ndarray:
    """Split the unique hashes of `frame` by label, then give every row its hash's split."""
    groups = frame.drop_duplicates("sha256").sort_values("path")
    keys, labels = groups["sha256"].to_numpy(), groups["label"].to_numpy()
    assignment: dict[str, str] = {}
    remaining = 1.0
    for name, share in zip(names[:-1], fractions[:-1], strict=True):
        take = share / remaining if remaining > 0 else 0.0
        if take <= 0 or len(keys) == 0:
            chosen = keys[:0]
        elif take >= 1 or len(keys) == 1:
            chosen, keys, labels = keys, keys[:0], labels[:0]
        else:
            chosen, keys, labels = _take_share(keys, labels, take, seed)
        assignment.update(dict.fromkeys(chosen, name))
        remaining -= share
    assignment.update(dict.fromkeys(keys, names[-1]))
    return frame["sha256"].map(assignment).to_numpy()


def _take_share(keys: np.ndarray, labels: np.ndarray, share: float, seed: int):
    """(chosen keys, rest keys, rest labels): stratified by label where the counts allow it."""
    from sklearn.model_selection import train_test_split  # 1 s to import: not at load time

    try:
        chosen, rest, _, rest_labels = train_test_split(
            keys, labels, train_size=share, random_state=seed, stratify=labels
        )
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        chosen, rest, _, rest_labels = train_test_split(
            keys, labels, train_size=share, random_state=seed
        )
    return chosen, rest, rest_labels


def save_splits(manifest: pd.DataFrame, path: str | Path) -> None:
    """Write path, label, split, sha256 so a split can be reproduced and audited exactly."""
    columns = ["path", "label", "split", "sha256"]
    write_atomic(
        Path(path),
        lambda tmp: manifest[columns].to_csv(tmp, index=False, compression=_compression(path)),
    )


def load_splits(manifest: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Apply a saved split file to `manifest`; rows missing from the file are dropped, loudly."""
    saved = pd.read_csv(path, compression=_compression(path))
    if not {"path", "split"} <= set(saved.columns):
        raise ValueError(f"{path} is not a split file (needs path and split columns)")
    out = manifest.drop(columns="split").merge(saved[["path", "split"]], on="path", how="inner")
    if out.empty:
        raise ValueError(f"none of the paths in {path} are in this dataset")
    return out.reset_index(drop=True)


def _compression(path: str | Path) -> str | None:
    return "gzip" if str(path).endswith(".gz") else None


def find_duplicates(manifest: pd.DataFrame) -> pd.DataFrame:
    """Groups of byte-identical files: sha256, count, paths, labels, splits, and flags for
    cross-split leakage and conflicting labels. Empty when every file is unique."""
    columns = ["sha256", "count", "paths", "labels", "splits", "cross_split", "label_conflict"]
    dup = manifest[manifest.duplicated("sha256", keep=False)]
    if dup.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for sha, group in dup.groupby("sha256", sort=True):
        splits = sorted({str(s) for s in group["split"]})
        labels = sorted({LABEL_NAMES[int(v)] for v in group["label"]})
        rows.append(
            (sha, len(group), list(group["path"]), labels, splits, len(splits) > 1, len(labels) > 1)
        )
    return pd.DataFrame(rows, columns=columns)


def dataset_fingerprint(manifest: pd.DataFrame) -> str:
    """Short hash of the (path, sha256, split) rows: same data and same split, same id."""
    digest = hashlib.sha256()
    for row in manifest.sort_values("path")[["path", "sha256", "split"]].itertuples(index=False):
        digest.update(f"{row[0]}\t{row[1]}\t{row[2]}\n".encode())
    return digest.hexdigest()[:16]


def find_shortcuts(
    manifest: pd.DataFrame, *, share_gap: float = 0.1, quality_gap: float = 5.0
) -> list[str]:
    """Sentences naming ways the classes differ other than by content: file format, image size
    or JPEG quality. A model can learn such a difference instead of the generator's traces."""
    real, fake = (manifest[manifest["label"] == v] for v in (0, 1))
    if real.empty or fake.empty:
        return []
    found = []
    size = manifest["width"].astype(str) + "x" + manifest["height"].astype(str)
    for what, values in (("file format", manifest["format"].astype(str)), ("image size", size)):
        value, real_share, fake_share = _largest_share_gap(values[real.index], values[fake.index])
        if abs(real_share - fake_share) > share_gap:
            found.append(
                f"{what.capitalize()} differs by class: {real_share:.0%} of real and "
                f"{fake_share:.0%} of fake images are {value}."
            )
    quality = pd.to_numeric(manifest["jpeg_quality"], errors="coerce")
    real_q, fake_q = quality[real.index].median(), quality[fake.index].median()
    if pd.notna(real_q) and pd.notna(fake_q) and abs(real_q - fake_q) > quality_gap:
        found.append(
            f"JPEG quality differs by class: median {real_q:.0f} for real and {fake_q:.0f} for "
            "fake images."
        )
    return found


def _largest_share_gap(a: pd.Series, b: pd.Series) -> tuple[str, float, float]:
    """The value whose share differs most between `a` and `b`, with its two shares."""
    shares = pd.concat(
        [a.value_counts(normalize=True), b.value_counts(normalize=True)], axis=1, keys=["a", "b"]
    ).fillna(0.0)
    value = (shares["a"] - shares["b"]).abs().idxmax()
    return value, float(shares.loc[value, "a"]), float(shares.loc[value, "b"])


def summarize_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """Image counts per split and class."""
    table = manifest.assign(label=manifest["label"].map(dict(enumerate(LABEL_NAMES))))
    return table.groupby(["split", "label"], dropna=False).size().unstack(fill_value=0)


# --------------------------------------------------------------------------------------------
# Torch Dataset
# --------------------------------------------------------------------------------------------


class ManifestDataset(torch.utils.data.Dataset):
    """(tensor, label) pairs for the rows of a manifest, decoded through `forensics.images`.

    `cache_decoded=True` keeps decoded images in memory after first use, which pays off for
    small images read every epoch (CIFAKE's 32x32 JPEGs: ~3 KB each). Unreadable files raise
    ImageLoadError; build the manifest first, which skips them.
    """

    def __init__(
        self,
        root: str | Path,
        manifest: pd.DataFrame,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        cache_decoded: bool = False,
    ) -> None:
        self.store = ImageStore(root)
        self.paths = manifest["path"].tolist()
        self.labels = manifest["label"].astype(int).tolist()
        self.transform = transform
        self._cache: list[np.ndarray | None] | None = (
            [None] * len(self.paths) if cache_decoded else None
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(index)), self.labels[index]

    def load(self, index: int) -> Image.Image:
        if self._cache is None:
            return self.store.load_image(self.paths[index])
        pixels = self._cache[index]
        if pixels is None:
            pixels = self._cache[index] = np.asarray(self.store.load_image(self.paths[index]))
        return Image.fromarray(pixels)

    def preload(self, *, progress: bool = True) -> None:
        """Decode every image now (in this process, before DataLoader workers fork)."""
        if self._cache is None:
            self._cache = [None] * len(self.paths)
        for i in tqdm(range(len(self)), desc="decoding", unit="img", disable=not progress):
            self.load(i)


def images_in_folder(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, as dataset discovery finds them (by extension, hidden folders
    skipped), never leaving it: folder links are not followed, file links only to inside it."""
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS and _stays_inside(path, root):
                yield path


def _stays_inside(path: Path, root: Path) -> bool:
    return not path.is_symlink() or path.resolve().is_relative_to(root)
