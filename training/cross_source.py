"""How far each run of a suite carries beyond its own data: its test ROC-AUC and accuracy on its
own test split and on the test splits of other datasets it never saw.

    python -m training.cross_source training/runs/experiments/sources \
        --set sdcoco=../shared/data/sdcoco --set faces=../shared/data/faces \
        --set cifake=../shared/data/cifake/cifake-train.zip [--max-images 1000] [--out DIR] \
        [--runs A B] [--update]

The folder holds training runs (RUN/best/model.json) or published checkpoints (checkpoints/:
CHECKPOINT/model.json, judged exactly as they ship, with their stored patch rule). `--update`
keeps the rows of runs not scored this time from OUT/cross_source.csv, so that a suite trained
over several sessions (whose run folders do not all survive) builds one table.

Each run is judged the way it would ship: a run trained on native-resolution crops smaller than
its images (or on a combination of sets of mixed sizes, `input.native`) judges any image by its
native patches (the crop size, scores averaged as logits); one trained on whole images resized to
its input resizes every image. A single-set run's own set is found by its `data.root` and judged
on the run's own test split; every other set on the seeded 80/10/10 split training makes (seed
0), at its test rows only, at most `--max-images` of them (a seeded sample). A run trained on a
combination (`training.combine_sources`, which leaves out every set's test rows) names its sets in
the "trained on" column; a set missing there is one it never saw. Raw scores, no trust checks:
this measures models, not decisions. For a single-set run, `shipped val_*` judge its own
validation split as the run would ship (patch verdicts), and `shipped val_auc resampled` does so
with every image resampled alike (x0.875 and back): a shortcut in how the set's classes were
resampled is gone there (sdcoco has one). The run to ship is the one with the lowest `shipped
val_logloss`; `val_accuracy` and `val_auc` are the training's own whole-view validation figures
at its best epoch. No test column is used to choose. Writes OUT/cross_source.md and .csv
(default: the suite folder). `--card CHECKPOINT ...` also rewrites the table where those
checkpoints' model cards quote it (their `cross_source` section).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import log_loss, roc_auc_score

from forensics.atomic import write_text_atomic
from forensics.checkpoint import CheckpointError, load_checkpoint
from forensics.data import ImageStore, assign_splits, load_splits
from forensics.detector import Detector
from forensics.evaluation import score_rows
from forensics.patches import PatchSpec
from forensics.perturb import resample_roundtrip
from forensics.scan import load_or_build_manifest
from training.card import CARD_FILE, read_card_section, write_card_section
from training.combine_sources import parse_sources, sources_of
from training.experiments import markdown_table

SPLIT_SEED = 0
CROSS_SOURCE_SECTION = "cross_source"
FRACTIONS = (0.8, 0.1, 0.1)


def find_runs(folder: Path) -> list[Path]:
    """The finished training runs and the published checkpoints in `folder`, by name."""
    runs = {p.parent.parent for p in folder.glob("*/best/model.json")}
    runs |= {p.parent for p in folder.glob("*/model.json") if (p.parent / "config.yaml").is_file()}
    return sorted(runs, key=lambda run: run.name)


def run_detector(run_dir: Path, *, engine: str = "fast") -> Detector:
    """The run's best weights, judging as they would ship (native patches where the run
    trained on native crops smaller than its evaluation view); a published checkpoint exactly
    as it ships."""
    if not (run_dir / "best").is_dir():
        model, meta = load_checkpoint(run_dir)
        return Detector(model, meta, checkpoint_dir=run_dir, engine=engine)
    model, meta = load_checkpoint(run_dir / "best")
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    crop = int(config["augment"].get("crop_size") or config["input"]["input_size"])
    if config["input"].get("native") or crop < int(config["input"]["input_size"]):
        meta["patches"] = PatchSpec(size=crop).to_dict()
    return Detector(model, meta, checkpoint_dir=run_dir, engine=engine)


def test_rows(root: Path, *, splits: Path | None, max_images: int) -> pd.DataFrame:
    """The test rows of `root` (from `splits`, else the seeded split), at most `max_images`."""
    manifest = load_or_build_manifest(root, progress=False).manifest
    if splits is not None:
        manifest = load_splits(manifest, splits)
    else:
        manifest = assign_splits(manifest, fractions=list(FRACTIONS), seed=SPLIT_SEED)
    rows = manifest[manifest["split"] == "test"]
    if len(rows) > max_images:
        rows = rows.sample(max_images, random_state=SPLIT_SEED)
    return rows.reset_index(drop=True)


def score_set(detector: Detector, root: Path, rows: pd.DataFrame) -> dict[str, float]:
    margins, _ = score_rows(detector, root, rows, stability=False, progress=False)
    labels = rows["label"].to_numpy()
    margin = margins[:, 0]
    return {
        "auc": float(roc_auc_score(labels, margin)),
        "accuracy": float(np.mean((margin >= 0) == (labels == 1))),
        "n": len(rows),
    }


def shipped_val_figures(detector: Detector, root: Path, run_dir: Path) -> dict[str, float]:
    """On the run's own validation split, judged as the run would ship (native patches where it
    trained on them): the log loss and ROC-AUC of its raw scores, and the ROC-AUC with every
    image resampled alike (x0.875 and back), where a difference in how the set's classes were
    resampled is gone. The first is what the shipped run is chosen by."""
    manifest = load_splits(load_or_build_manifest(root, progress=False).manifest,
                           run_dir / "splits.csv.gz")  # fmt: skip
    val = manifest[manifest["split"] == "val"]
    labels = val["label"].to_numpy()
    store = ImageStore(root)
    images = [store.load_image(path) for path in val["path"]]
    figures = {}
    for name, change in (("", lambda image: image), (" resampled", resample_roundtrip)):
        verdicts = detector.predict_batch([change(im) for im in images], stability=False)
        probs = np.clip([v.prob_fake_raw for v in verdicts], 1e-7, 1 - 1e-7)
        figures[f"shipped val_auc{name}"] = float(roc_auc_score(labels, probs))
        if not name:
            figures["shipped val_logloss"] = float(log_loss(labels, probs, labels=[0, 1]))
    return figures


def best_val(run_dir: Path, *, members: int = 1) -> dict[str, float]:
    """The training's own validation figures at its best epoch; none for a seed ensemble, whose
    history is its first member's (its members' own are in its model.json and card)."""
    if members != 1:
        return {"val_accuracy": float("nan"), "val_auc": float("nan")}
    history = pd.read_csv(run_dir / "history.csv")
    best = history[history["best"].astype(bool)].iloc[-1]
    auc = best["val_roc_auc"] if "val_roc_auc" in best else float("nan")
    return {"val_accuracy": float(best["val_accuracy"]), "val_auc": float(auc)}


def cross_source_table(
    runs: list[Path], sets: dict[str, Path], *, max_images: int, progress: bool = True
) -> pd.DataFrame:
    """One row per run: the sets it was trained on, its validation figures, then AUC and
    accuracy per set (a single-set run's own set on the run's own test split; every other set,
    and every set of a combination, on its seeded test split, which the run never saw)."""
    resolved = {name: path.resolve() for name, path in sets.items()}
    rows = []
    for run_dir in runs:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        own_root = Path(config["data"]["root"]).resolve()
        detector = run_detector(run_dir)
        seen = sources_of(own_root) or [n for n, root in resolved.items() if root == own_root]
        members = detector.metadata.get("members", 1)
        row: dict = {"run": run_dir.name, "trained on": ", ".join(seen),
                     **best_val(run_dir, members=members)}  # fmt: skip
        if own_root in resolved.values():
            row.update(shipped_val_figures(detector, own_root, run_dir))
        for name, root in resolved.items():
            own = root == own_root
            splits = run_dir / "splits.csv.gz" if own else None
            rows_of_set = test_rows(root, splits=splits, max_images=max_images)
            figures = score_set(detector, root, rows_of_set)
            row[f"{name} AUC"] = figures["auc"]
            row[f"{name} acc"] = figures["accuracy"]
            if progress:
                print(
                    f"{run_dir.name} on {name}: AUC {figures['auc']:.3f}, accuracy "
                    f"{figures['accuracy']:.3f} ({figures['n']} images)",
                    flush=True,
                )
        rows.append(row)
    return pd.DataFrame(rows)


def merged_with_earlier(table: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, list[str]]:
    """`table` with the rows of OUT/cross_source.csv whose runs it does not score again (theirs
    first, in their order), and the commands that made those rows."""
    earlier_csv = out / "cross_source.csv"
    if not earlier_csv.is_file():
        return table, []
    earlier = pd.read_csv(earlier_csv)
    kept = earlier[~earlier["run"].isin(table["run"])]
    commands = commands_of(out / "cross_source.md") if len(kept) else []
    return pd.concat([kept, table], ignore_index=True), commands


def commands_of(markdown: Path) -> list[str]:
    """The commands a cross_source.md names at its top (each in backquotes), in order."""
    if not markdown.is_file():
        return []
    lines = markdown.read_text(encoding="utf-8").splitlines()
    return [line.strip("`") for line in lines if line.startswith("`python -m")]


def card_table(markdown: Path) -> str:
    """The table lines of a cross_source.md, with the commands above them, for a model card."""
    commands = [f"`{command}`" for command in commands_of(markdown)]
    table = [
        line for line in markdown.read_text(encoding="utf-8").splitlines() if line.startswith("|")
    ]
    return "\n".join(["\n\n".join(commands), "", *table]).strip()


def update_cards(cards: list[Path], markdown: Path) -> None:
    """Rewrite the `cross_source` section of each model card from the table just written (a
    card that quotes the table would otherwise go stale when a run's row changes)."""
    for card in cards:
        write_card_section(card, CROSS_SOURCE_SECTION, card_table(markdown))


def write_table(table: pd.DataFrame, out: Path, *, commands: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cross_source.csv", table.to_csv(index=False))
    shown = table.copy()
    for column in shown.columns[2:]:
        shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3f}")
    listed = "\n\n".join(f"`{command}`" for command in dict.fromkeys(commands))
    text = (
        "# Across sources: test ROC-AUC and accuracy on each set\n\n"
        f"{listed}\n\n{markdown_table(shown)}\n\n"
        "val_* come from each run's own validation split (the only figures used to choose); "
        "the other columns are test splits, read once.\n"
    )
    path = out / "cross_source.md"
    write_text_atomic(path, text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.cross_source",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "suite", type=Path, help="a suite folder (one run per rung) or a folder of checkpoints"
    )
    parser.add_argument("--set", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--runs", nargs="+", help="only these runs (default: every finished one)")
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="default: the suite folder")
    parser.add_argument(
        "--update", action="store_true", help="keep the earlier table's rows of other runs"
    )
    parser.add_argument(
        "--card",
        type=Path,
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help="also rewrite the table in these checkpoints' model cards (their cross_source "
        "section)",
    )
    args = parser.parse_args(argv)
    cards = [folder / CARD_FILE for folder in args.card]
    try:
        for card in cards:  # before the scoring, which takes long
            if read_card_section(card, CROSS_SOURCE_SECTION) is None:
                raise ValueError(f"{card} has no {CROSS_SOURCE_SECTION} section to rewrite")
        sets = parse_sources(args.set)
        runs = find_runs(args.suite)
        if args.runs:
            runs = [r for r in runs if r.name in args.runs]
        if not runs:
            raise ValueError(
                f"{args.suite} holds no finished runs (*/best/model.json) or checkpoints"
            )
        table = cross_source_table(runs, sets, max_images=args.max_images)
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.suite
    commands = []
    if args.update:
        table, commands = merged_with_earlier(table, out)
    commands.append(" ".join(["python -m training.cross_source", *(argv or sys.argv[1:])]))
    path = write_table(table, out, commands=commands)
    update_cards(cards, path)
    print(table.to_string(index=False))
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
