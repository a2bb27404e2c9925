"""How long a photograph's verdict and patch map take, warm, on this machine.

    python -m benchmarks.photo_verdict [--checkpoint checkpoints/photos] \
        [--megapixels 12 48] [--repeats 3] [--out DIR]

For each size, a photograph-like JPEG (quality 92, 4:3) is made in memory, and the checkpoint
gives its verdict and patch map in one call (decode, the native patches, the stability check on
a spread subset of them, the overlay), as the Classify page asks for them the first time (the
detector's memory of recent maps is bypassed). The first call warms up and is not counted;
the median of `--repeats` is. Also shown: the same without the stability check, the decode
alone, and the process's peak resident memory so far. The target (photos issue): a 12 MP JPEG
in under 3 s warm on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from forensics.atomic import write_text_atomic
from forensics.checkpoint import SHIPPED_CHECKPOINTS
from forensics.detector import load_detector
from forensics.images import read_image

TARGET_SECONDS = 3.0
TARGET_MEGAPIXELS = 12


def synthetic_photograph(megapixels: float, *, seed: int = 0, quality: int = 92) -> bytes:
    """A 4:3 JPEG of about `megapixels`: smooth shapes with fine sensor-like noise."""
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(width * 3 / 4)
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _verdict_and_map(detector, data: bytes, *, stability: bool = True):
    # map_patches, not patch_map: the detector remembers recent maps of the same bytes, and a
    # remembered one measures nothing. Decoding is part of the figure.
    return detector.map_patches(*read_image(data), stability=stability)


def measure(detector, data: bytes, repeats: int) -> dict:
    """One photograph's figures (see the module's docstring)."""
    patch_map = _verdict_and_map(detector, data)  # warm-up, not counted
    _, info = read_image(data)
    return {
        "image": f"{info.width}x{info.height}",
        "megapixels": info.width * info.height / 1e6,
        "file_mb": len(data) / 2**20,
        "patches": len(patch_map.boxes),
        "verdict_and_map_s": _median_seconds(lambda: _verdict_and_map(detector, data), repeats),
        "without_stability_s": _median_seconds(
            lambda: _verdict_and_map(detector, data, stability=False), repeats
        ),
        "decode_s": _median_seconds(lambda: read_image(data), repeats),
        "peak_rss_mb": peak_rss_mb(),
    }


def run(checkpoint: Path, sizes: list[float], repeats: int) -> list[dict]:
    detector = load_detector(checkpoint)
    if detector.patch_spec is None:
        raise ValueError(f"{checkpoint} judges whole views, not native patches (no 'patches')")
    rows = []
    for megapixels in sizes:
        rows.append(measure(detector, synthetic_photograph(megapixels), repeats))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| image | MP | file | patches | verdict + patch map | without stability | decode | "
        "peak RSS so far |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['megapixels']:.1f} | {r['file_mb']:.1f} MB | {r['patches']} | "
            f"{r['verdict_and_map_s']:.2f} s | {r['without_stability_s']:.2f} s | "
            f"{r['decode_s']:.2f} s | {r['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.photo_verdict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINTS / "photos")
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 48])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = run(args.checkpoint, args.megapixels, args.repeats)
    print(markdown(rows))
    for row in rows:
        if round(row["megapixels"]) == TARGET_MEGAPIXELS:
            met = "met" if row["verdict_and_map_s"] < TARGET_SECONDS else "MISSED"
            print(
                f"target: a {TARGET_MEGAPIXELS} MP verdict and patch map under "
                f"{TARGET_SECONDS:.0f} s warm: {met} ({row['verdict_and_map_s']:.2f} s)"
            )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "photo_verdict.json", json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
