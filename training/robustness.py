"""A robustness sweep in a checkpoint: its key figures in the model card, its table beside it.

    python -m forensics robustness --data ../shared/data/cifake --split test \\
        --splits checkpoints/default/splits.csv.gz --checkpoint checkpoints/default \\
        --max-images 2000 --out /tmp/robustness_default
    python -m training.robustness checkpoints/default --sweep /tmp/robustness_default --store

writes the card's `robustness` section (training.card) from the finished sweep, and with
`--store` keeps its robustness.csv and robustness.json in CHECKPOINT/robustness/, where the
Model evaluation page shows them. `training.publish` does both for a new checkpoint; this
command does it for a shipped one whose training run is gone, without republishing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from functools import partial
from pathlib import Path

import pandas as pd

from forensics.atomic import write_atomic
from forensics.checkpoint import CheckpointError, read_metadata
from forensics.detector import load_detector
from forensics.robustness import (
    CLEAN,
    RECORD_FILE,
    STORED_FOLDER,
    SUMMARY_FILE,
    IncompleteSweepError,
    check_sweep_is_of,
    describe_row,
    parse_settings,
    read_sweep,
    run_sweep,
    select_rows,
    sweep_command,
)
from training.card import CARD_FILE, write_card_section

SECTION = "robustness"
DEFAULT_MAX_IMAGES = 2000
UNCAUGHT = 0.05  # a confident-wrong share above this is named in the card
# The settings the card names in its summary line: the ones a teacher would try first.
KEY_SETTINGS = (("jpeg", 70.0), ("scale", 0.5), ("blur", 1.0), ("noise", 5.0), ("crop", 0.75))


def _pct(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:.1%}"


def _decimal(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:.4f}"


def describe_robustness(summary: pd.DataFrame, record: dict) -> str:
    """The card section: the command, the key figures and the whole table."""
    clean = summary[summary["perturbation"] == CLEAN].iloc[0]
    key = [describe_row(row) for row in summary.to_dict("records")
           if (row["perturbation"], row["strength"]) in KEY_SETTINGS]  # fmt: skip
    checks = "with" if record.get("stability", True) else "without"
    lines = [
        "## Robustness: verdicts under re-saving, resizing, blur, noise and crops",
        "",
        "*Written by `python -m training.robustness` from the sweep's `robustness.csv`; "
        "reproduce the sweep with:*",
        "",
        "```",
        record.get("command", "(command not recorded)"),
        "```",
        "",
        f"Each of {int(clean['n']):,} images ({record.get('split', 'all')} split"
        + (", a seeded sample" if "--max-images" in record.get("command", "") else "")
        + ") is judged as stored, then as the file each change gives: a JPEG re-saved at that "
        "quality, or the changed picture saved again as the original was (same JPEG tables). "
        f"Decisions are made {checks} the stability check. *Flipped* is the share of images "
        "whose thresholded call differs from the call on the stored file; *answered* is the "
        "share that gets `real` or `fake` rather than `unsure`; *confident and wrong* is the "
        "share answered wrongly, over all images: where it is high, the trust checks do not see "
        "the change.",
        "",
        "Key figures: " + "; ".join(key) + ".",
        "",
        _uncaught(summary),
        "",
        "| change | accuracy | ROC-AUC | verdicts flipped | answered | accuracy on the answered "
        "| confident and wrong |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.setting} | {_pct(row.accuracy)} | {_decimal(row.roc_auc)} | "
            f"{_pct(row.share_flipped)} | {_pct(row.answered)} | {_pct(row.accuracy_answered)} | "
            f"{_pct(row.confident_wrong)} |"
        )
    return "\n".join(lines)


def _uncaught(summary: pd.DataFrame) -> str:
    """The changes after which more than UNCAUGHT of all images get a confident, wrong answer."""
    rows = summary[summary["confident_wrong"] > UNCAUGHT].sort_values("confident_wrong")[::-1]
    if rows.empty:
        return (
            f"No change here leaves more than {UNCAUGHT:.0%} of the images confidently wrong: "
            "where accuracy falls, the checks say `unsure` instead."
        )
    named = ", ".join(f"{r.setting} ({r.confident_wrong:.0%})" for r in rows.itertuples())
    return (
        f"**Not caught by the trust checks**: after these changes more than {UNCAUGHT:.0%} of "
        f"the images get a confident, wrong answer (share of all images): {named}. Do not trust "
        "a confident verdict on an image that may have been changed this way."
    )


def card_from_sweep(checkpoint: Path, sweep: Path, *, store: bool = True) -> pd.DataFrame:
    """Write the card section of the finished sweep in `sweep` into `checkpoint`'s card, and
    (`store`) copy its table and record into CHECKPOINT/robustness/. IncompleteSweepError for
    an unfinished sweep; ValueError for a sweep of other weights."""
    summary, record = read_sweep(sweep)
    weights = read_metadata(checkpoint)["weights_sha256"][:12]  # a Detector's checkpoint_id
    check_sweep_is_of(record, weights, sweep)
    if store:
        for name in (SUMMARY_FILE, RECORD_FILE):  # the record last: it marks a whole copy
            write_atomic(checkpoint / STORED_FOLDER / name, partial(shutil.copyfile, sweep / name))
    write_card_section(checkpoint / CARD_FILE, SECTION, describe_robustness(summary, record))
    return summary


def sweep_test_split(
    checkpoint: Path,
    root: Path,
    manifest: pd.DataFrame,
    work: Path,
    *,
    max_images: int = DEFAULT_MAX_IMAGES,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Run the sweep of `checkpoint` on (at most `max_images` of) the test rows of `manifest`
    in `work` (resumable), then store it and write the card section (`card_from_sweep`)."""
    rows = select_rows(manifest[manifest["split"] == "test"], max_images=max_images)
    command = sweep_command(
        root, checkpoint, work, split="test", splits=checkpoint / "splits.csv.gz",
        max_images=max_images,
    )  # fmt: skip
    run_sweep(
        load_detector(checkpoint), root, rows, work, settings=parse_settings(),
        batch_size=batch_size, record={"command": command, "data_root": str(root), "split": "test"},
    )  # fmt: skip
    return card_from_sweep(checkpoint, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="the checkpoint folder whose card to write")
    parser.add_argument(
        "--sweep", type=Path, required=True, help="a finished `python -m forensics robustness` OUT"
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help=f"also keep its {SUMMARY_FILE} and {RECORD_FILE} in CHECKPOINT/{STORED_FOLDER}/",
    )
    args = parser.parse_args(argv)
    try:
        summary = card_from_sweep(args.checkpoint, args.sweep, store=args.store)
    except (IncompleteSweepError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the {SECTION} section of {args.checkpoint / CARD_FILE}:")
    for row in summary.to_dict("records"):
        print(f"  {describe_row(row)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
