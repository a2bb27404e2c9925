"""Dataset scan speed: `forensics.scan.build_manifest` against the plainest loop that reads,
SHA-256-hashes and fully decodes the same files, side by side in one run.

    python -m benchmarks.scan --data ../shared/data/cifake [--files 10000] [--out DIR]

The first `--files` image files of the dataset (in path order) are copied into one stored
(uncompressed) zip in a temporary folder, as CIFAKE itself is stored, so both contenders read
exactly the same bytes the same way. Each is timed in interleaved rounds (median of three), and
the scan also in one process, to show what the process pool buys; then the whole dataset is
scanned once. Prints a Markdown table and writes OUT/scan_bench.json. The target (issue 13) is a
ratio of at least 1.0: the scan, with all its checks, no slower than the bare loop.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

from forensics.atomic import write_text_atomic
from forensics.data import ImageStore
from forensics.measure import cpu_name, interleaved_seconds
from forensics.scan import build_manifest

TARGET_RATIO = 1.0


def sample_archive(root: Path, files: int, folder: Path) -> Path:
    """The first `files` images under `root`, copied into folder/sample.zip (stored)."""
    store = ImageStore(root)
    paths = store.list_files()[:files]
    if not paths:
        raise SystemExit(f"no image files under {root}")
    archive = folder / "sample.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        for rel in paths:
            out.writestr(rel, store.read_bytes(rel))
    return archive


def plain_loop(root: Path) -> int:
    """Read, hash and fully decode every image file: the floor any scan must pay."""
    store = ImageStore(root)
    paths = store.list_files()
    for rel in paths:
        data = store.read_bytes(rel)
        hashlib.sha256(data).hexdigest()
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except (OSError, SyntaxError, ValueError):  # a bad file costs its read, as in the scan
            continue
    return len(paths)


def run(data: Path, files: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as tmp:
        archive = sample_archive(data, files, Path(tmp))
        count = len(ImageStore(archive).list_files())
        seconds = interleaved_seconds(
            {
                "plain loop (read + sha256 + decode)": lambda: plain_loop(archive),
                "build_manifest": lambda: build_manifest(archive, progress=False),
                "build_manifest, one process": lambda: build_manifest(
                    archive, progress=False, workers=1
                ),
            },
            rounds=3,
            seconds_per_round=0.0,  # one call per round: each call is a whole scan
        )
    started = time.perf_counter()
    whole = len(build_manifest(data, progress=False).manifest)  # the whole dataset, once
    whole_seconds = time.perf_counter() - started
    rates = {name: count / value for name, value in seconds.items()}
    plain = rates["plain loop (read + sha256 + decode)"]
    return {
        "data": str(data),
        "files": count,
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "files_per_s": rates,
        "ratio": rates["build_manifest"] / plain,
        "ratio_one_process": rates["build_manifest, one process"] / plain,
        "target_ratio": TARGET_RATIO,
        "whole_dataset": {"images": whole, "seconds": whole_seconds},
    }


def render(result: dict) -> str:
    lines = [
        f"Scan of {result['files']:,} files from {result['data']} on {result['cores']} cores "
        f"({result['cpu']}), median of 3 interleaved rounds:",
        "",
        "| contender | files/s | vs plain loop |",
        "|---|---|---|",
    ]
    plain = result["files_per_s"]["plain loop (read + sha256 + decode)"]
    for name, rate in result["files_per_s"].items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / plain:.2f}x |")
    met = "met" if result["ratio"] >= result["target_ratio"] else "MISSED"
    whole = result["whole_dataset"]
    lines += [
        "",
        f"Target: build_manifest >= {result['target_ratio']:.1f}x the plain loop: {met}.",
        f"The whole dataset: {whole['images']:,} images scanned in {whole['seconds']:.1f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or .zip")
    parser.add_argument("--files", type=int, default=10_000, help="how many files to scan")
    parser.add_argument("--out", type=Path, help="folder for scan_bench.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"dataset not found: {args.data}")
    if args.files < 1:
        parser.error("--files must be at least 1")
    result = run(args.data, args.files)
    print(render(result))
    if args.out is not None:
        write_text_atomic(args.out / "scan_bench.json", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
