"""Leave one source out: what each shipped model's decisions are worth on images from a source it
never saw, made to look like its training data (same size, same JPEG quality), so that the input
gate cannot tell them apart by their file and only the feature gate, the band and the stability
check can.

    python -m benchmarks.lookalikes --data ../shared/data [--per-source 300] [--models M ...]
        [--out DIR]

For the default model (32 px JPEGs at quality 75) the faces and sdcoco images are resized to
32x32; for the faces model (256 px, quality 75) the CIFAKE images are resized up to 256x256 and
the sdcoco images centre-cropped to 256x256 at their own resolution (no resampling); for the
photos model (native-resolution patches, quality 95) the faces images are kept as they are and
the CIFAKE images resized up to 512x512, the least that gives it patches to judge. Each is
saved as a JPEG at the training quality and judged with every check. This is the proxy for an
unseen generator that shared/docs/HONEST-VERDICTS.md describes: the confident-wrong rate here is
what a user meeting a new source should expect, and it is reported, never tuned on.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from forensics.atomic import write_text_atomic
from forensics.checkpoint import SHIPPED_CHECKPOINTS
from forensics.data import ImageStore
from forensics.detector import load_detector
from forensics.evaluation import compute_selective_metrics
from forensics.scan import load_or_build_manifest


def _resized(size: int) -> Callable[[Image.Image], Image.Image]:
    return lambda image: ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)


def _cropped(size: int) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return image.crop((left, top, left + size, top + size))

    return crop


def _as_it_is(image: Image.Image) -> Image.Image:
    return image


# checkpoint -> [(other source, how its images are made to look like the training data)]
CASES = {
    "default": [("faces", "resized to 32x32", _resized(32)),
                ("sdcoco", "resized to 32x32", _resized(32))],
    "faces": [("cifake", "resized up to 256x256", _resized(256)),
              ("sdcoco", "centre 256x256 crop, not resampled", _cropped(256))],
    # The photos model judges any image of at least one patch at its own scale: the faces are
    # shown as they are; CIFAKE's 32 px images must be enlarged to reach a patch at all.
    "photos": [("faces", "as they are (256 px, not resampled)", _as_it_is),
               ("cifake", "resized up to 512x512", _resized(512))],
}  # fmt: skip
# The JPEG quality of each model's training images, at which its look-alikes are saved.
QUALITY = {"default": 75, "faces": 75, "photos": 95}


def lookalike(data: bytes, make: Callable[[Image.Image], Image.Image], quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        changed = make(image.convert("RGB"))
    buffer = io.BytesIO()
    changed.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def run(
    data: Path, per_source: int, *, models: list[str] | None = None, batch_size: int = 32
) -> list[dict]:
    rows = []
    for checkpoint in models or list(CASES):
        detector = load_detector(SHIPPED_CHECKPOINTS / checkpoint)
        for source, how, make in CASES[checkpoint]:
            manifest = load_or_build_manifest(data / source, progress=False).manifest
            if per_source and len(manifest) > per_source:
                manifest = manifest.sample(per_source, random_state=0)
            store = ImageStore(data / source)
            verdicts = []
            for start in tqdm(range(0, len(manifest), batch_size), desc=f"{checkpoint}/{source}"):
                paths = manifest["path"].iloc[start : start + batch_size]
                images = [lookalike(store.read_bytes(p), make, QUALITY[checkpoint]) for p in paths]
                verdicts += detector.predict_batch(images)
            labels = manifest["label"].to_numpy()
            decisions = [v.decision for v in verdicts]
            calls = pd.Series([v.label for v in verdicts])
            threshold = detector.trust.feature_domain.threshold
            refused = [v.feature_distance > threshold for v in verdicts]
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "source": source,
                    "made_like_training": f"{how}, JPEG q{QUALITY[checkpoint]}",
                    "images": len(manifest),
                    "call_accuracy": float(
                        (calls == pd.Series(labels).map({0: "real", 1: "fake"})).mean()
                    ),
                    "feature_gate": sum(refused) / len(refused),
                    **compute_selective_metrics(labels, decisions),
                }
            )
    return rows


def render(rows: list[dict]) -> str:
    lines = [
        "| model | source (never seen) | made like its training data | images | raw calls "
        "right | feature gate refused | answered | accuracy on the answered | confident and "
        "wrong |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        answered = r["selective_accuracy"]
        lines.append(
            f"| {r['checkpoint']} | {r['source']} | {r['made_like_training']} | {r['images']:,} | "
            f"{r['call_accuracy']:.1%} | {r['feature_gate']:.1%} | {r['coverage']:.1%} | "
            f"{'n/a' if answered is None else f'{answered:.1%}'} | "
            f"{r['confident_wrong_rate']:.1%} |"
        )
    return "\n".join(lines)


def merged(previous: list[dict], rows: list[dict]) -> list[dict]:
    """The rows of an earlier run with those of the models just measured replaced, in CASES
    order, so one model can be measured again without the others."""
    measured = {row["checkpoint"] for row in rows}
    kept = [row for row in previous if row["checkpoint"] not in measured]
    order = list(CASES)
    return sorted(kept + rows, key=lambda row: order.index(row["checkpoint"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lookalikes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder holding the sources")
    parser.add_argument("--per-source", type=int, default=300, help="0: every image")
    parser.add_argument(
        "--models", nargs="+", choices=list(CASES), help="shipped models to measure (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, help="folder for lookalikes.json (rows of other models are kept)"
    )
    args = parser.parse_args(argv)
    rows = run(args.data, args.per_source, models=args.models)
    if args.out is not None:
        target = args.out / "lookalikes.json"
        previous = json.loads(target.read_text()) if target.is_file() else []
        rows = merged(previous, rows)
        write_text_atomic(target, json.dumps(rows, indent=2))
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
