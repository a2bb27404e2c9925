"""One training set made of several datasets, without their test images:

    python -m training.combine_sources --to DIR NAME=PATH [NAME=PATH ...] [--per-source N]

Each source is split the way training and `training.cross_source` split it (seeded 80/10/10,
seed 0; byte-identical files kept together) and only its train and val rows are taken, at most
`--per-source` of them (a seeded sample, both classes in proportion): a model trained on the
combination can then be tested on every source's test split without having seen any of it.
DIR/real and DIR/fake hold links to the files of folder sources and copies of the members of
.zip sources, named SOURCE__path (so a file's source is in its name, never fed to a model: the
name is not a feature). DIR/SOURCES.json records what went in. DIR must not exist yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from forensics.atomic import write_text_atomic
from forensics.data import ImageStore, assign_splits
from forensics.labels import LABEL_NAMES
from forensics.scan import load_or_build_manifest

SPLIT_SEED = 0
FRACTIONS = (0.8, 0.1, 0.1)
MANIFEST_FILE = "SOURCES.json"


def held_in_rows(root: Path, *, per_source: int | None, seed: int = SPLIT_SEED) -> pd.DataFrame:
    """`root`'s train and val rows under the seeded split, at most `per_source` of them."""
    manifest = load_or_build_manifest(root, progress=False).manifest
    manifest = assign_splits(manifest, fractions=list(FRACTIONS), seed=seed)
    rows = manifest[manifest["split"] != "test"]
    if per_source and len(rows) > per_source:
        rows = rows.groupby("label", group_keys=False).sample(
            frac=per_source / len(rows), random_state=seed
        )
    return rows.reset_index(drop=True)


def combine(sources: dict[str, Path], target: Path, *, per_source: int | None) -> dict:
    """Write the combination of `sources` (name -> dataset folder or .zip) into `target`."""
    if target.exists():
        raise ValueError(f"{target} exists: choose a new folder")
    staging = target.with_name(target.name + ".partial")
    if staging.exists():
        raise ValueError(f"{staging} is left from an interrupted run: remove it first")
    record = {"seed": SPLIT_SEED, "fractions": list(FRACTIONS), "excluded": "test", "sources": {}}
    for name, root in sources.items():
        rows = held_in_rows(root, per_source=per_source)
        store = ImageStore(root)
        for path, label in zip(rows["path"], rows["label"], strict=True):
            folder = staging / LABEL_NAMES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            destination = folder / f"{name}__{path.replace('/', '__')}"
            source_file = Path(root) / path
            if Path(root).is_dir() and source_file.is_file():
                os.symlink(source_file.resolve(), destination)
            else:  # a member of an archive: small files (CIFAKE's are under 2 KB)
                destination.write_bytes(store.read_bytes(path))
        counts = rows.groupby("label").size()
        record["sources"][name] = {
            "path": str(root),
            "images": len(rows),
            "real": int(counts.get(0, 0)),
            "fake": int(counts.get(1, 0)),
        }
    write_text_atomic(staging / MANIFEST_FILE, json.dumps(record, indent=2))
    staging.rename(target)
    return record


def sources_of(root: Path) -> list[str]:
    """The sources a combined set was made of (empty for an ordinary dataset)."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["sources"])


def parse_sources(values: list[str]) -> dict[str, Path]:
    sources = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"a source is NAME=PATH, got {value!r}")
        if "__" in name or "/" in name:
            raise ValueError(f"a source name may not contain '__' or '/': {name!r}")
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        sources[name] = Path(path)
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.combine_sources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--to", type=Path, required=True)
    parser.add_argument("--per-source", type=int, help="at most this many images of each")
    args = parser.parse_args(argv)
    try:
        record = combine(parse_sources(args.sources), args.to, per_source=args.per_source)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, figures in record["sources"].items():
        print(
            f"{name}: {figures['images']} images ({figures['real']} real, {figures['fake']} fake)"
        )
    print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
