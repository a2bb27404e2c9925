"""The automatic choice of model on one mixed folder: which checkpoint each source's images go
to, and what the decisions are worth there.

    python -m benchmarks.routing --data ../shared/data [--per-source 1000] [--out DIR]

The images are the shared sets' held-out ones, mixed as an analyst's folder would be: CIFAKE's
test split (the default model's `splits.csv.gz`), the faces' test split (the faces model's), and
sdcoco's (the photos model's, or all of sdcoco where that model is not shipped). At most
`--per-source` of each (seeded sample; 0 for all). Each image is judged by `load_detector("auto")`
with every check. Prints a Markdown table and writes OUT/routing.json. The target: each source's
images go to its own model at least 95% of the time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from forensics.atomic import write_text_atomic
from forensics.checkpoint import SHIPPED_CHECKPOINTS
from forensics.data import ImageStore, load_splits
from forensics.evaluation import compute_selective_metrics
from forensics.router import load_detector
from forensics.scan import load_or_build_manifest

TARGET_SHARE = 0.95
# source folder under --data -> (the checkpoint whose split file says which images are held
# out, or None to take all, and the checkpoint that should judge them, or None for none)
SOURCES = {
    "cifake": ("default", "default"),
    "faces": ("faces", "faces"),
    "sdcoco": ("photos", "photos"),
}


def held_out(data: Path, source: str, split_from: str | None, limit: int) -> pd.DataFrame:
    manifest = load_or_build_manifest(data / source, progress=False).manifest
    if split_from is not None and not (SHIPPED_CHECKPOINTS / split_from).is_dir():
        split_from = None  # that model is not shipped here: every image is held out from all
    if split_from is not None:
        manifest = load_splits(manifest, SHIPPED_CHECKPOINTS / split_from / "splits.csv.gz")
        manifest = manifest[manifest["split"] == "test"]
    if limit and len(manifest) > limit:
        manifest = manifest.sample(limit, random_state=0)
    return manifest.reset_index(drop=True)


def run(data: Path, per_source: int, *, batch_size: int = 64) -> list[dict]:
    auto = load_detector("auto")
    rows = []
    for source, (split_from, expected) in SOURCES.items():
        if not (data / source).exists():
            continue
        manifest = held_out(data, source, split_from, per_source)
        if not (SHIPPED_CHECKPOINTS / str(expected)).is_dir():
            expected = None
        store = ImageStore(data / source)
        verdicts = []
        for start in tqdm(range(0, len(manifest), batch_size), desc=source, unit="batch"):
            paths = manifest["path"].iloc[start : start + batch_size]
            verdicts += auto.predict_batch([store.read_bytes(p) for p in paths])
        chosen = pd.Series([v.checkpoint if v.routing == "chosen" else "none" for v in verdicts])
        decisions = compute_selective_metrics(manifest["label"], [v.decision for v in verdicts])
        rows.append(
            {
                "source": source,
                "images": len(manifest),
                "expected": expected or "none",
                "right_model": float((chosen == (expected or "none")).mean()),
                "chosen": chosen.value_counts(normalize=True).round(4).to_dict(),
                **decisions,
            }
        )
    return rows


def render(rows: list[dict]) -> str:
    lines = [
        "| source | images | should go to | went there | routed to | answered | "
        "accuracy on the answered | confident and wrong |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        routed = ", ".join(f"{name} {share:.1%}" for name, share in row["chosen"].items())
        accuracy = row["selective_accuracy"]
        lines.append(
            f"| {row['source']} | {row['images']:,} | {row['expected']} | "
            f"{row['right_model']:.1%} | {routed} | {row['coverage']:.1%} | "
            f"{'n/a' if accuracy is None else f'{accuracy:.2%}'} | "
            f"{row['confident_wrong_rate']:.2%} |"
        )
    judged = [r for r in rows if r["expected"] != "none"]
    met = all(r["right_model"] >= TARGET_SHARE for r in judged)
    names = ", ".join(r["source"] for r in judged)
    lines += ["", f"Target: the right model for >= {TARGET_SHARE:.0%} of the images of "
              f"{names}: {'met' if met else 'MISSED'}."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.routing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder holding the sources")
    parser.add_argument("--per-source", type=int, default=1000, help="0: every image")
    parser.add_argument("--out", type=Path, help="folder for routing.json")
    args = parser.parse_args(argv)
    rows = run(args.data, args.per_source)
    if not rows:
        parser.error(f"none of {sorted(SOURCES)} is under {args.data}")
    print(render(rows))
    if args.out is not None:
        write_text_atomic(args.out / "routing.json", json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
