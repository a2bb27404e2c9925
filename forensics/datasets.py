"""Fetch the public datasets the project's studies used and lay them out for discovery.

    python -m forensics.datasets list
    python -m forensics.datasets download cifake|faces140k --to DIR [--force] [--copy]

Downloads go through `kagglehub` (optional: `pip install kagglehub`), which keeps its own cache
(`~/.cache/kagglehub`, or `$KAGGLEHUB_CACHE`). The dataset's split folders are then placed under
DIR as hard links into that cache where the filesystem allows (no second copy on disk), else as
copies, in a layout that `forensics.scan.build_manifest(DIR)` reads directly. The result is
checked with the discovery code and the image counts per split and class are printed.

Exit codes: 0 success; 1 any failure, with one sentence on stderr.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas (and torch, via forensics.data) load only when a download needs them
    import pandas as pd

PROG = "python -m forensics.datasets"


@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset: where it lives on Kaggle, which folder of the download to use, and what
    its licence asks of users."""

    name: str
    title: str
    kaggle_handle: str
    subfolder: str  # inside the download: the folder that holds the split folders
    required: tuple[str, ...]  # folders, relative to `subfolder`, that must exist
    splits: tuple[str, ...]  # split names discovery must find (forensics.data.SPLITS spelling)
    images: int  # image count the Kaggle page lists, to compare with what arrived
    size: str
    layout: str
    licence: str
    citation: str


# Read-only: the registry is a constant, never a mutable global.
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "cifake": DatasetSpec(
            name="cifake",
            title="CIFAKE: real and AI-generated synthetic images",
            kaggle_handle="birdy654/cifake-real-and-ai-generated-synthetic-images",
            subfolder=".",
            required=("train/REAL", "train/FAKE", "test/REAL", "test/FAKE"),
            splits=("train", "test"),
            images=120_000,
            size="about 100 MB; 120,000 32x32 JPEGs (train 50,000 + 50,000, test 10,000 + 10,000)",
            layout="train|test/REAL|FAKE, placed as is (no validation split: training carves one)",
            licence=(
                "CIFAKE is published for research use; its real images are CIFAR-10 "
                "(Krizhevsky & Hinton, 2009), whose terms also apply, and its fake images were "
                "made with Stable Diffusion 1.4"
            ),
            citation=(
                "J. J. Bird and A. Lotfi, 'CIFAKE: Image Classification and Explainable "
                "Identification of AI-Generated Synthetic Images', 2023 (arXiv:2303.14126; "
                "IEEE Access, 2024); cite CIFAR-10 too"
            ),
        ),
        "faces140k": DatasetSpec(
            name="faces140k",
            title="140k Real and Fake Faces",
            kaggle_handle="xhlulu/140k-real-and-fake-faces",
            subfolder="real_vs_fake/real-vs-fake",
            required=(
                "train/real",
                "train/fake",
                "valid/real",
                "valid/fake",
                "test/real",
                "test/fake",
            ),
            splits=("train", "val", "test"),
            images=140_000,
            size=(
                "about 4 GB; 140,000 256x256 JPEGs (train 100,000, valid 20,000, test 20,000, "
                "half real, half fake)"
            ),
            layout=(
                "real_vs_fake/real-vs-fake/train|valid|test/real|fake on Kaggle; placed as "
                "DIR/train|valid|test/real|fake"
            ),
            licence=(
                "real faces are FFHQ (NVIDIA), distributed under CC BY-NC-SA 4.0: research, "
                "training and evaluation use only, no commercial use; fake faces are StyleGAN "
                "output"
            ),
            citation=(
                "T. Karras, S. Laine and T. Aila, 'A Style-Based Generator Architecture for "
                "Generative Adversarial Networks', CVPR 2019 (FFHQ and StyleGAN); Kaggle "
                "dataset by xhlulu"
            ),
        ),
    }
)


class DatasetError(Exception):
    """A failure the user can act on; its message is one sentence, printed without a traceback."""


@dataclass
class Placed:
    """What `download_dataset` did: where the files are and, if checked, their manifest."""

    spec: DatasetSpec
    target: Path
    source: Path  # the folder of kagglehub's download that was placed
    files: int
    linked: bool  # True when at least one file is a hard link into kagglehub's cache
    manifest: pd.DataFrame | None  # None when the check was skipped


def get_dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`; ValueError naming the valid names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}"
        ) from None


# --------------------------------------------------------------------------------------------
# Steps: check the target, fetch, find the layout, place, verify
# --------------------------------------------------------------------------------------------


def check_target(target: Path, *, force: bool = False) -> None:
    """DatasetError if `target` is a file, or a non-empty folder and `force` is off.

    Called before downloading, so a refused target never costs a multi-GB download.
    """
    if target.exists() and not target.is_dir():
        raise DatasetError(f"{target} exists and is not a folder")
    if target.is_dir() and not force and any(target.iterdir()):
        raise DatasetError(
            f"{target} is not empty; choose an empty or new folder, or pass --force to add "
            "the dataset's files to it (files with the same names are replaced)"
        )


def fetch_from_kaggle(spec: DatasetSpec) -> Path:
    """Download `spec` with kagglehub (or reuse its cache) and return the local folder."""
    try:
        import kagglehub  # optional dependency: only this command needs it
    except ImportError:
        raise DatasetError(
            "downloading needs the kagglehub package, which is not installed: pip install kagglehub"
        ) from None
    try:
        path = kagglehub.dataset_download(spec.kaggle_handle)
    except Exception as exc:  # any failure of a third-party client becomes one sentence
        raise DatasetError(describe_kaggle_failure(exc, spec.kaggle_handle)) from None
    return Path(path)


def describe_kaggle_failure(exc: BaseException, handle: str) -> str:
    """One sentence saying what went wrong in kagglehub and what to do about it.

    Matches kagglehub's exceptions by class name and HTTP status rather than importing them:
    their module layout has changed between kagglehub versions.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = _one_line(exc)
    if names & {"UnauthenticatedError", "CredentialError"} or status in (401, 403):
        return (
            f"Kaggle refused to send {handle} ({detail}); set up Kaggle credentials "
            "(KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json from "
            "https://www.kaggle.com/settings) and try again"
        )
    if "NotFoundError" in names or status == 404:
        return f"Kaggle has no dataset {handle} ({detail}); it may have been renamed or removed"
    if status is not None:
        return f"Kaggle answered HTTP {status} for {handle} ({detail}); try again later"
    disk_errors = {errno.ENOSPC, errno.EACCES, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}
    if isinstance(exc, OSError) and exc.errno in disk_errors:
        return (
            f"kagglehub could not write {handle} to its download cache ({detail}); free some "
            "space or point KAGGLEHUB_CACHE at another folder"
        )
    # requests' exceptions derive from OSError, as do ConnectionError, TimeoutError and DNS
    # failures: at this point an OSError means Kaggle could not be reached.
    if isinstance(exc, OSError) or names & {"ConnectionError", "Timeout"}:
        return (
            f"could not reach Kaggle to download {handle} ({detail}); check the network "
            "connection and try again"
        )
    return f"kagglehub failed to download {handle} ({type(exc).__name__}: {detail})"


def _one_line(exc: BaseException, *, limit: int = 240) -> str:
    """The exception's text on one line (kagglehub's messages span several), shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_layout_root(download: Path, spec: DatasetSpec) -> Path:
    """The folder inside `download` that holds `spec.required`: `spec.subfolder` as Kaggle
    publishes it, else the shallowest folder that has them (a new dataset version may nest
    differently). DatasetError if none does."""
    if not download.is_dir():
        raise DatasetError(f"kagglehub returned {download} for {spec.kaggle_handle}, not a folder")
    expected = download / spec.subfolder
    if _has_required(expected, spec):
        return expected.resolve()
    level = [download]
    for _ in range(4):  # a few levels: the known layouts are at most two deep
        for folder in level:
            if _has_required(folder, spec):
                return folder.resolve()
        level = [child for folder in level for child in _subfolders(folder)]
    raise DatasetError(
        f"the download of {spec.kaggle_handle} in {download} has no folder holding "
        f"{', '.join(spec.required)}; the dataset's layout may have changed on Kaggle"
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError:  # an unreadable folder cannot hold the layout; keep looking elsewhere
        return []
    return [child for child in children if child.is_dir() and not child.name.startswith(".")]


def _has_required(folder: Path, spec: DatasetSpec) -> bool:
    return all((folder / rel).is_dir() for rel in spec.required)


def place_tree(
    source: Path, target: Path, *, copy: bool = False, progress: bool = True
) -> tuple[int, bool]:
    """Put every file under `source` at the same relative path under `target`.

    Files are hard links into `source` (kagglehub's cache) unless `copy` is set or the
    filesystem refuses one (another device, no link support); then they are copied. The tree is
    built in a hidden folder beside `target` and moved in at the end, so an interrupted run never
    leaves a half-placed dataset that discovery would take for a whole one. Returns the number
    of files and whether at least one of them is a hard link.
    """
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling: same filesystem as `target`, so the final rename is cheap.
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    linked = False
    try:
        files = _list_files(source)
        for rel in tqdm(files, desc="placing", unit="file", disable=not progress):
            destination = staging / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not copy:
                try:
                    os.link(source / rel, destination)
                    linked = True
                    continue
                except OSError:
                    copy = True  # one refusal means they all will be: stop trying
            shutil.copy2(source / rel, destination)
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(files), linked


def _list_files(source: Path) -> list[Path]:
    """Relative paths of the files under `source`, skipping hidden files and folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(source)
        found += [rel_dir / name for name in sorted(filenames) if not name.startswith(".")]
    return found


def _move_into(staging: Path, target: Path) -> None:
    """Move the staged tree to `target`: one rename when `target` is new, else file by file
    (an existing folder keeps its owner and mode, and may be a mount point that cannot be
    replaced), replacing files with the same relative path."""
    if not target.exists():
        os.replace(staging, target)
        return
    for rel in _list_files(staging):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target / rel)


def verify_layout(target: Path, spec: DatasetSpec, *, progress: bool = True) -> pd.DataFrame:
    """Scan `target` with the discovery code and return the manifest; DatasetError unless every
    split of `spec` has both real and fake images.

    Uses the cached scan (`load_or_build_manifest`), so the app and CLI later open the dataset
    without decoding every image a second time.
    """
    from forensics.data import LABELS
    from forensics.scan import load_or_build_manifest

    try:
        manifest = load_or_build_manifest(target, progress=progress).manifest
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"discovery found no usable images: {exc}") from None
    found = set(zip(manifest["split"], manifest["label"], strict=True))
    missing = [
        f"{label} images in {split}"
        for split in spec.splits
        for label, value in LABELS.items()
        if (split, value) not in found
    ]
    if missing:
        raise DatasetError(
            f"discovery in {target} found no {', no '.join(missing)}; the download looks "
            "incomplete, or the dataset has changed on Kaggle"
        )
    return manifest


def download_dataset(
    name: str,
    *,
    to: str | Path,
    force: bool = False,
    copy: bool = False,
    verify: bool = True,
    progress: bool = True,
) -> Placed:
    """Download dataset `name` (see DATASETS) and place it under `to` for discovery.

    Raises ValueError for an unknown name and DatasetError (one sentence) for every other
    failure: target not empty without `force`, kagglehub missing, no credentials, no network,
    an unexpected layout, or files that discovery cannot read.
    """
    spec = get_dataset_spec(name)
    target = Path(to).expanduser()
    check_target(target, force=force)
    source = find_layout_root(fetch_from_kaggle(spec), spec)
    try:
        files, linked = place_tree(source, target, copy=copy, progress=progress)
    except OSError as exc:
        raise DatasetError(f"could not write the dataset into {target}: {_one_line(exc)}") from None
    manifest = verify_layout(target, spec, progress=progress) if verify else None
    return Placed(spec, target, source, files, linked, manifest)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class _UsageError(Exception):
    """Raised by the parser instead of printing usage and exiting, so main() reports it in one
    line with the same exit code as every other failure."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fetch the public datasets the studies used.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the known datasets with handle, size and licence")
    download = commands.add_parser(
        "download", help="download a dataset with kagglehub and lay it out for discovery"
    )
    download.add_argument("name", choices=sorted(DATASETS), help="dataset name")
    download.add_argument("--to", type=Path, required=True, help="folder to put the dataset in")
    download.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder (files with the same names are replaced, "
        "nothing else is deleted)",
    )
    download.add_argument(
        "--copy",
        action="store_true",
        help="copy files instead of hard-linking them to kagglehub's cache",
    )
    download.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the discovery scan that checks and counts the images (it decodes each one)",
    )
    return parser


def format_registry() -> str:
    """The `list` output: one block per dataset."""
    blocks = []
    for spec in DATASETS.values():
        blocks.append(
            "\n".join(
                [
                    f"{spec.name}: {spec.title}",
                    f"  kaggle:   {spec.kaggle_handle}",
                    f"  size:     {spec.size}",
                    f"  layout:   {spec.layout}",
                    f"  licence:  {spec.licence}",
                    f"  cite:     {spec.citation}",
                ]
            )
        )
    return "\n\n".join(blocks)


def format_counts(manifest: pd.DataFrame) -> str:
    """Image counts per split (rows, in train/val/test order) and class (columns)."""
    from forensics.data import LABEL_NAMES, SPLITS, summarize_manifest

    table = summarize_manifest(manifest).reindex(columns=list(LABEL_NAMES), fill_value=0)
    order = [s for s in SPLITS if s in table.index] + [s for s in table.index if s not in SPLITS]
    table = table.reindex(order)
    table["total"] = table.sum(axis=1)
    table.index = [str(s) for s in table.index]  # a missing split prints as "None"
    counts = {c: "{:,}".format for c in table.columns}
    return (
        table.rename_axis(index="split", columns=None)
        .reset_index()
        .to_string(index=False, formatters=counts)
    )


def print_placed(placed: Placed) -> None:
    spec = placed.spec
    # Say which: hard links share disk space with kagglehub's cache, copies do not.
    how = "hard-linked from kagglehub's cache at" if placed.linked else "copied from"
    print(f"{spec.name}: {placed.files:,} files placed in {placed.target}")
    print(f"  ({how} {placed.source})")
    if placed.manifest is not None:
        total = len(placed.manifest)
        print(f"discovery finds {total:,} images (the Kaggle page lists {spec.images:,}):")
        print(format_counts(placed.manifest))
    print(f"licence: {spec.licence}.")
    print(f"cite: {spec.citation}.")
    print(f"use it: python -m forensics evaluate --data {placed.target} --split test --out OUT")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            print(format_registry())
            return 0
        placed = download_dataset(
            args.name, to=args.to, force=args.force, copy=args.copy, verify=args.verify
        )
    except (_UsageError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print_placed(placed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
