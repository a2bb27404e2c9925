"""What the faithfulness check adds to one explanation, per shipped model, warm.

    python -m benchmarks.explain_cost [--checkpoint checkpoints/default ...] [--repeats 5]

Each checkpoint explains the same upload (a 1024x768 photograph-like JPEG: the default and faces
models see it resized, the photos model explains one 128 px native patch of it) with the
faithfulness check and without it; the first call of each warms up and is not counted, the
median of `--repeats` is. Printed as a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.photo_verdict import synthetic_photograph
from forensics.checkpoint import shipped_checkpoints
from forensics.detector import load_detector
from forensics.measure import median_seconds

UPLOAD_MEGAPIXELS = 1024 * 768 / 1e6


def explain_costs(checkpoint: Path, upload: bytes, *, repeats: int) -> dict[str, float]:
    """Median seconds of `explain` with and without the faithfulness check."""
    detector = load_detector(checkpoint)
    figures = {}
    for name, faithfulness in (("with", True), ("without", False)):
        figures[name] = median_seconds(  # after one untimed warm-up call
            lambda f=faithfulness: detector.explain(upload, faithfulness=f), repeats=repeats
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain_cost", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    upload = synthetic_photograph(UPLOAD_MEGAPIXELS)
    print("| model | explain with faithfulness | without |")
    print("|---|---|---|")
    for checkpoint in args.checkpoint or shipped_checkpoints():
        figures = explain_costs(checkpoint, upload, repeats=args.repeats)
        print(f"| {checkpoint.name} | {figures['with']:.3f} s | {figures['without']:.3f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
