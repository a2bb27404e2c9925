"""Scanning a dataset root into a manifest, and the on-disk cache of scans.

A scan reads every image file once, hashes it (SHA-256) and fully decodes it through the same
checks as `forensics.images.load_image`, so a truncated, corrupt or oversized file is listed in
`skipped` with its reason now, not met halfway through a training run. From the same bytes it
records what the file claims about its origin (metadata, a content credential), which a
decision weighs (`forensics.decision`). Large roots are scanned by
a pool of processes, one per core, over chunks of files; the result is the same, in the same
order, as a scan in one process.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import multiprocessing
import os
import signal
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from forensics.atomic import write_atomic
from forensics.data import (
    LABELS,
    MANIFEST_COLUMNS,
    PROVENANCE_COLUMN,
    Discovery,
    ImageStore,
    infer_label_and_split,
)
from forensics.evidence.board import read_provenance
from forensics.images import ImageLoadError, inspect_image

# A pool costs tens of milliseconds to start: below this many files one process is as fast.
PARALLEL_MIN_FILES = 256
# Files per task, at most: enough that sending a task costs little against decoding its files,
# few enough that the progress bar moves and a stop is quick. Smaller roots get smaller tasks,
# so that every worker has some.
CHUNK_FILES = 500

SCAN_COLUMNS = [*MANIFEST_COLUMNS, PROVENANCE_COLUMN]
Row = tuple  # SCAN_COLUMNS' values
Outcome = tuple[Row | None, tuple[str, str] | None]  # (manifest row, None) or (None, skipped)


def build_manifest(
    root: str | Path,
    *,
    progress: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Discovery:
    """Scan `root`, decode every image once, and return its manifest and the skipped files.

    Files outside any real/fake folder, and files that do not decode, are listed in `skipped`
    with the reason; they never stop the scan. `workers` processes share the work (default: one
    per available core, or one for a small root); `progress_callback(done, total)` is called as
    files are done.
    """
    store = ImageStore(root)
    paths = store.list_files()
    if not paths:
        raise ValueError(f"no image files found under {root}")
    rows, skipped = [], []
    with tqdm(total=len(paths), desc="scanning", unit="img", disable=not progress) as bar:
        done = 0
        if progress_callback is not None:
            progress_callback(0, len(paths))
        for chunk in _scanned_chunks(store, paths, _worker_count(workers, len(paths))):
            for row, skip in chunk:
                if row is not None:
                    rows.append(row)
                else:
                    skipped.append(skip)
            done += len(chunk)
            bar.update(len(chunk))
            if progress_callback is not None:
                progress_callback(done, len(paths))
    manifest = pd.DataFrame(rows, columns=SCAN_COLUMNS)
    if manifest.empty:
        raise ValueError(f"no readable images inside real/fake folders under {root}")
    split_found = manifest["split"].notna()
    if split_found.any() and not split_found.all():
        # Mixing split folders with loose files is ambiguous; keep the split ones.
        for rel in manifest.loc[~split_found, "path"]:
            skipped.append((rel, "outside the train/val/test folders used by the rest"))
        manifest = manifest[split_found].reset_index(drop=True)
    manifest["label"] = manifest["label"].astype(int)
    manifest["jpeg_quality"] = manifest["jpeg_quality"].astype("Int64")  # missing for non-JPEGs
    return Discovery(manifest, pd.DataFrame(skipped, columns=["path", "reason"]))


def _worker_count(requested: int | None, files: int) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be at least 1, got {requested}")
        return requested
    if files < PARALLEL_MIN_FILES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def _scanned_chunks(
    store: ImageStore, paths: Sequence[str], workers: int
) -> Iterator[list[Outcome]]:
    """Each chunk's outcomes, in the order of `paths`."""
    size = max(1, min(CHUNK_FILES, math.ceil(len(paths) / (4 * workers))))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    if workers == 1:
        yield from (scan_files(store, chunk) for chunk in chunks)
        return
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_pool_context(),
        initializer=_start_worker,
        initargs=(store.root,),
    )
    try:
        yield from pool.map(_scan_in_worker, chunks)
    finally:
        # On Ctrl-C, a stopped Streamlit run or any error: drop the chunks not started yet
        # instead of decoding the rest of the dataset before giving up.
        pool.shutdown(wait=True, cancel_futures=True)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork where there is one: the workers only read files and run Pillow, and a fork starts
    # them in milliseconds (a fresh interpreter would import the whole library first).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


# Each worker process's own store, opened once: reopening a zip per task would reread its
# central directory (89,080 entries for CIFAKE) every few hundred files.
_worker_store: ImageStore | None = None


def _start_worker(root: Path) -> None:
    global _worker_store
    _worker_store = ImageStore(root)
    # Ctrl-C reaches the whole process group; the parent alone decides to stop the scan.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker shares the parent's memory until it writes to it. Left alone, its garbage
    # collector walks every object inherited from the parent (all of torch, in the app) and so
    # copies their pages: measured here, that made each file 40% slower to scan.
    gc.freeze()


def _scan_in_worker(paths: Sequence[str]) -> list[Outcome]:
    assert _worker_store is not None, "started without _start_worker"
    return scan_files(_worker_store, paths)


def scan_files(store: ImageStore, paths: Sequence[str]) -> list[Outcome]:
    """(manifest row, None) for each readable image under a real/fake folder, else
    (None, (path, reason))."""
    outcomes: list[Outcome] = []
    for rel in paths:
        label, split = infer_label_and_split(rel)
        if label is None:
            outcomes.append((None, (rel, "not inside a real/fake folder")))
            continue
        try:
            data = store.read_bytes(rel)
            info = inspect_image(data)
        except (ImageLoadError, OSError, KeyError, zipfile.BadZipFile) as exc:
            outcomes.append((None, (rel, str(exc))))
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        row = (rel, LABELS[label], split, sha256, info.width, info.height, info.format,
               info.jpeg_quality, provenance_record(data))  # fmt: skip
        outcomes.append((row, None))
    return outcomes


def provenance_record(data: bytes) -> str:
    """What a file claims about its origin, as a manifest cell: JSON, or "" for nothing."""
    evidence = read_provenance(data)
    if evidence.provenance == "none" and evidence.content_credential is None:
        return ""
    return json.dumps(evidence.to_record(), separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# The on-disk cache of scans
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where scans are cached: $FORENSICS_CACHE, else ~/.cache/forensics."""
    return Path(os.environ.get("FORENSICS_CACHE", Path.home() / ".cache" / "forensics"))


def _root_signature(root: Path) -> str:
    """Changes whenever a file under `root` is added, removed, resized or rewritten."""
    # The column list is part of the key: a cache written by older code is never reused.
    digest = hashlib.sha256(f"{root.resolve()}|{','.join(SCAN_COLUMNS)}".encode())
    entries = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in entries:
        stat = path.stat()
        # Relative names: the same folder reached by another path gives the same signature.
        name = path.relative_to(root).as_posix() if path != root else ""
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def manifest_cache_folder(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where `load_or_build_manifest` keeps the scan of `root`. The folder is named by the root's
    signature, so a changed dataset gets a new folder and a stale scan is never read."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "manifests" / _root_signature(root)


def read_cached_manifest(folder: str | Path) -> Discovery:
    """The scan stored in `folder` (see `manifest_cache_folder`); FileNotFoundError if none is."""
    manifest_file, skipped_file = Path(folder) / "manifest.csv.gz", Path(folder) / "skipped.csv"
    if not (manifest_file.is_file() and skipped_file.is_file()):
        raise FileNotFoundError(f"no cached scan in {folder}")
    # Paths stay strings even when named "NA" or "null"; only empty cells are missing.
    manifest = pd.read_csv(
        manifest_file,
        keep_default_na=False,
        na_values={"split": [""], "jpeg_quality": [""]},
    )
    manifest["split"] = manifest["split"].astype(object).where(manifest["split"].notna(), None)
    manifest["jpeg_quality"] = manifest["jpeg_quality"].astype("Int64")
    return Discovery(manifest, pd.read_csv(skipped_file, keep_default_na=False))


def load_or_build_manifest(
    root: str | Path,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
) -> Discovery:
    """`build_manifest`, cached on disk and keyed by the root's path and file sizes and times,
    so a second look at an unchanged dataset costs a directory listing, not a full decode.
    The cache is written only once the scan is complete, each file atomically."""
    folder = manifest_cache_folder(root, cache_dir)
    try:
        return read_cached_manifest(folder)
    except FileNotFoundError:
        pass
    discovery = build_manifest(
        Path(root).expanduser(), progress=progress, progress_callback=progress_callback
    )
    write_atomic(
        folder / "manifest.csv.gz",
        partial(discovery.manifest.to_csv, index=False, compression="gzip"),
    )
    write_atomic(folder / "skipped.csv", partial(discovery.skipped.to_csv, index=False))
    return discovery
