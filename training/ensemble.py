"""Join training runs of one configuration, trained from different seeds, into one seed-ensemble
run (`forensics.ensemble.SeedEnsemble`: the mean of the members' logits).

    python -m training.train --config training/configs/photos_resnet18.yaml \
        --data.splits_file checkpoints/photos/splits.csv.gz --seed 1 --out RUNS/photos_seed1
    python -m training.ensemble RUNS/photos_seed0 RUNS/photos_seed1 RUNS/photos_seed2 \
        --out RUNS/photos_ensemble3

Each member is a run folder (its `best/` weights) or a published checkpoint folder. The members
must be one model (architecture, head, stem, input filter, preprocessing) trained on one split:
a member that trained on another split could have trained on the others' test images. The
output is a run folder like any other (best/, config.yaml, history.csv and splits.csv.gz of the
first member), with members.csv giving each member's best validation epoch, so that
`training.cross_source` scores it and `training.publish` ships it as it does a single run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from forensics.atomic import write_text_atomic
from forensics.checkpoint import (
    CheckpointError,
    data_config_from_metadata,
    load_checkpoint,
    save_checkpoint,
)
from forensics.ensemble import SeedEnsemble, check_member_count

# What makes two runs the same model (with the preprocessing, compared as read, so that a field
# added since with its default changes nothing); everything else (seed, history) may differ.
SAME_MODEL_FIELDS = ("architecture", "head", "stem", "layer4_stride", "input_filter")
MEMBERS_FILE = "members.csv"


def weights_folder(member: Path) -> Path:
    """A run's `best/` checkpoint, or the folder itself where it is a published checkpoint."""
    return member / "best" if (member / "best" / "model.json").is_file() else member


def member_summary(member: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The member's seed and its best validation epoch, from its history."""
    row: dict[str, Any] = {"member": str(member), "seed": meta.get("training", {}).get("seed")}
    history_file = member / "history.csv"
    if history_file.is_file():
        history = pd.read_csv(history_file)
        best = history[history["best"].astype(bool)].iloc[-1]
        row.update(
            best_epoch=int(best["epoch"]),
            val_loss=float(best["val_loss"]),
            val_accuracy=float(best["val_accuracy"]),
            val_roc_auc=float(best.get("val_roc_auc", float("nan"))),
        )
    return row


def _split_of(member: Path) -> pd.DataFrame:
    path = member / "splits.csv.gz"
    if not path.is_file():
        raise ValueError(f"{member} has no splits.csv.gz: its split cannot be checked")
    split = pd.read_csv(path)[["path", "split"]]
    return split.sort_values("path").reset_index(drop=True)


def join_runs(members: list[Path], out: Path) -> Path:
    """Write the ensemble of `members` as the run folder `out`; returns `out`."""
    check_member_count(len(members))
    if len({member.resolve() for member in members}) != len(members):
        raise ValueError("a member is named twice")
    loaded = [load_checkpoint(weights_folder(member)) for member in members]
    first_meta = loaded[0][1]
    first_split = _split_of(members[0])
    for member, (_, meta) in zip(members[1:], loaded[1:], strict=True):
        if meta.get("members", 1) != 1:
            raise ValueError(f"{member} is an ensemble already; join its members instead")
        differing = [f for f in SAME_MODEL_FIELDS if meta.get(f) != first_meta.get(f)]
        if data_config_from_metadata(meta) != data_config_from_metadata(first_meta):
            differing.append("data")
        if differing:
            raise ValueError(f"{member} is not the same model as {members[0]}: {differing} differ")
        if not _split_of(member).equals(first_split):
            raise ValueError(
                f"{member} was trained on another split than {members[0]}: one member could "
                "have trained on another's test images (train each with --data.splits_file)"
            )
    summaries = [
        member_summary(member, meta) for member, (_, meta) in zip(members, loaded, strict=True)
    ]
    meta = {
        key: value
        for key, value in first_meta.items()
        if key not in ("weights_sha256", "trust", "metrics", "weights_dtype")
    }
    meta["members"] = len(members)
    out.mkdir(parents=True, exist_ok=True)
    meta["training"] = {**first_meta.get("training", {}), "ensemble_of": summaries}
    save_checkpoint(out / "best", SeedEnsemble([model for model, _ in loaded]), meta)
    for name in ("config.yaml", "history.csv", "splits.csv.gz"):
        shutil.copyfile(members[0] / name, out / name)
    write_text_atomic(out / MEMBERS_FILE, pd.DataFrame(summaries).to_csv(index=False))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("members", type=Path, nargs="+", help="run or checkpoint folders")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's run folder")
    args = parser.parse_args(argv)
    try:
        out = join_runs(args.members, args.out)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"joined {len(args.members)} runs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
