"""Leave one source out: what each shipped model's decisions are worth on images from a source it
never saw, made to look like its training data (same size, same JPEG quality), so that the input
gate cannot tell them apart by their file and only the feature gate, the band and the stability
check can.

    python -m benchmarks.lookalikes --data ../shared/data [--per-source 300] [--out DIR]

For the default model (32 px JPEGs at quality 75) the faces and sdcoco images are resized to
32x32; for the faces model (256 px, quality 75) the CIFAKE images are resized up to 256x256 and
the sdcoco images centre-cropped to 256x256 at their own resolution (no resampling). Each is
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


# checkpoint -> [(other source, how its images are made to look like the training data)]
CASES = {
    "default": [("faces", "resized to 32x32", _resized(32)),
                ("sdcoco", "resized to 32x32", _resized(32))],
    "faces": [("cifake", "resized up to 256x256", _resized(256)),
              ("sdcoco", "centre 256x256 crop, not resampled", _cropped(256))],
}  # fmt: skip
QUALITY = 75  # both shipped models were trained on JPEGs at quality 75


def lookalike(data: bytes, make: Callable[[Image.Image], Image.Image]) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        changed = make(image.convert("RGB"))
    buffer = io.BytesIO()
    changed.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def run(data: Path, per_source: int, *, batch_size: int = 32) -> list[dict]:
    rows = []
    for checkpoint, cases in CASES.items():
        detector = load_detector(SHIPPED_CHECKPOINTS / checkpoint)
        for source, how, make in cases:
            manifest = load_or_build_manifest(data / source, progress=False).manifest
            if per_source and len(manifest) > per_source:
                manifest = manifest.sample(per_source, random_state=0)
            store = ImageStore(data / source)
            verdicts = []
            for start in tqdm(range(0, len(manifest), batch_size), desc=f"{checkpoint}/{source}"):
                paths = manifest["path"].iloc[start : start + batch_size]
                images = [lookalike(store.read_bytes(p), make) for p in paths]
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
                    "made_like_training": how,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lookalikes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder holding the sources")
    parser.add_argument("--per-source", type=int, default=300, help="0: every image")
    parser.add_argument("--out", type=Path, help="folder for lookalikes.json")
    args = parser.parse_args(argv)
    rows = run(args.data, args.per_source)
    print(render(rows))
    if args.out is not None:
        write_text_atomic(args.out / "lookalikes.json", json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
