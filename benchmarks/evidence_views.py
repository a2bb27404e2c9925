"""Speed of the evidence board's classic views on a large photograph (the target: the four
views of a 4000x3000 JPEG in under 2 s warm on the project's 2-core machine).

    python -m benchmarks.evidence_views [--width 4000] [--height 3000] [--rounds 5]

A photograph-like JPEG (smooth shapes with grain, quality 90, with camera EXIF) is made in
memory. Each step runs once untimed (warm), then `--rounds` times, and the median is printed:
the decode (`read_image`), each view, the four views together, and the whole
`gather_evidence` (decode, metadata, C2PA check and views).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from forensics.evidence import gather_evidence
from forensics.evidence.ela import error_level_view
from forensics.evidence.jpeg import jpeg_history_view
from forensics.evidence.noise import noise_residual_view
from forensics.evidence.spectrum import spectrum_view
from forensics.images import read_image
from forensics.measure import median_seconds

TARGET_S = 2.0


def photograph(width: int, height: int, *, seed: int = 0) -> bytes:
    """A JPEG with a photograph's structure: smooth shapes, fine grain, camera EXIF."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(1, height // 37), max(1, width // 37), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    grain = rng.normal(0, 4, (height, width, 1)).astype(np.float32)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    data = photograph(args.width, args.height)
    rgb, info = read_image(data)
    pixels = np.asarray(rgb)

    def all_views() -> list:
        return [
            error_level_view(pixels),
            noise_residual_view(pixels),
            spectrum_view(pixels),
            jpeg_history_view(pixels, quality=info.jpeg_quality),
        ]

    steps = {
        "decode (read_image)": lambda: read_image(data),
        "error level analysis": lambda: error_level_view(pixels),
        "noise residual": lambda: noise_residual_view(pixels),
        "Fourier spectrum": lambda: spectrum_view(pixels),
        "JPEG history": lambda: jpeg_history_view(pixels, quality=info.jpeg_quality),
        "four views": all_views,
        "gather_evidence (all)": lambda: gather_evidence(data),
    }
    print(f"{args.width}x{args.height} JPEG, {len(data) / 2**20:.1f} MB, median of {args.rounds}")
    # median_seconds warms each step first: OpenCV's and NumPy's first calls allocate.
    figures = {name: median_seconds(step, repeats=args.rounds) for name, step in steps.items()}
    for name, seconds in figures.items():
        print(f"  {name:24s} {seconds:6.3f} s")
    views = figures["four views"]
    verdict = "met" if views < TARGET_S else "missed"
    print(f"four views: {views:.2f} s (target under {TARGET_S:.0f} s: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
