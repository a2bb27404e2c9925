"""Does a model judge the image or the way its dataset was made? Its accuracy on one split as the
files are, and after every image (both classes alike) went through the same change.

    python -m benchmarks.shortcut --checkpoint DIR --data ../shared/data/sdcoco \
        --splits DIR/splits.csv.gz [--split val] [--out OUT]

sdcoco's photographs were Lanczos-resampled to 512 px and most of its fakes were not
(shared/data/README.md): a model can learn "resampled means real". Resampling every image the
same way (512 -> 448 -> 512, Lanczos) removes that difference; a model that relied on it falls
towards chance there, while one that learnt the generator's traces keeps most of its accuracy.
A JPEG re-save at quality 75 is shown beside it for scale. Raw scores (no trust checks): this
measures the model, not its decisions. Run it on validation while choosing; test is read once.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from forensics.atomic import write_text_atomic
from forensics.data import ImageStore, load_splits
from forensics.detector import load_detector
from forensics.perturb import resample_roundtrip
from forensics.scan import load_or_build_manifest


def _jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


CHANGES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as the files are": lambda image: image,
    "every image resampled (x0.875 and back, Lanczos)": resample_roundtrip,
    "every image re-saved as JPEG q75": _jpeg,
}


def run(checkpoint: Path, data: Path, splits: Path | None, split: str) -> list[dict]:
    detector = load_detector(checkpoint)
    manifest = load_or_build_manifest(data, progress=False).manifest
    if splits is not None:
        manifest = load_splits(manifest, splits)
    rows = manifest[manifest["split"] == split] if split != "all" else manifest
    if rows.empty:
        raise SystemExit(f"no {split} images in {data}")
    store = ImageStore(data)
    images = [store.load_image(p) for p in tqdm(rows["path"], desc="reading", unit="img")]
    labels = rows["label"].to_numpy()
    results = []
    for name, change in CHANGES.items():
        verdicts = detector.predict_batch([change(im) for im in images], stability=False)
        probs = np.array([v.prob_fake_raw for v in verdicts])
        results.append(
            {
                "images": name,
                "n": len(labels),
                "accuracy": float(((probs >= detector.threshold) == (labels == 1)).mean()),
                "roc_auc": float(roc_auc_score(labels, probs)),
                "mean_prob_fake_real": float(probs[labels == 0].mean()),
                "mean_prob_fake_fake": float(probs[labels == 1].mean()),
            }
        )
    return results


def render(results: list[dict]) -> str:
    lines = [
        "| images | n | accuracy | ROC-AUC | mean P(fake) of reals | mean P(fake) of fakes |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['images']} | {r['n']} | {r['accuracy']:.1%} | {r['roc_auc']:.3f} | "
        f"{r['mean_prob_fake_real']:.2f} | {r['mean_prob_fake_fake']:.2f} |"
        for r in results
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shortcut", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--splits", type=Path, help="a split file (e.g. the run's splits.csv.gz)")
    parser.add_argument("--split", default="val", help="train, val, test or all (default val)")
    parser.add_argument("--out", type=Path, help="folder for shortcut.json")
    args = parser.parse_args(argv)
    results = run(args.checkpoint, args.data, args.splits, args.split)
    print(render(results))
    if args.out is not None:
        write_text_atomic(args.out / "shortcut.json", json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
