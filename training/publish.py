"""Turn a finished training run into a shipped checkpoint with its evaluation and model card.

    python -m training.publish training/runs/cifake_resnet18 --to checkpoints/default \
        --ood ../shared/data/faces

Copies the best checkpoint as float16 (small file, upcast on load), its history and split,
re-evaluates the *shipped* weights on the run's test split (so every figure describes exactly
the file that ships), optionally measures out-of-domain folders, writes MODEL_CARD.md from
those figures, and runs the robustness sweep on the test split (`training.robustness`).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from forensics.atomic import write_atomic, write_text_atomic
from forensics.checkpoint import load_checkpoint, save_checkpoint
from forensics.data import load_splits
from forensics.detector import load_detector
from forensics.evaluation import calibrated_ece_floor, run_evaluation, write_evaluation
from forensics.patches import PatchSpec
from forensics.robustness import STORED_FOLDER
from forensics.scan import load_or_build_manifest
from forensics.trust import save_trust_profile
from training.bench_stems import recorded_throughput
from training.card import CARD_FILE, write_card_section, write_decision_section
from training.cross_source import card_table
from training.fit_trust import TRUST_SECTION, describe_dataset, describe_trust, fit_trust_profile
from training.robustness import DEFAULT_MAX_IMAGES, sweep_test_split

DEFAULT_CONFIG_NAME = "training/configs/cifake_resnet18.yaml"
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "model_card_cifake.md"


def publish(
    run_dir: Path,
    dest: Path,
    *,
    ood: list[Path],
    template: Path = DEFAULT_TEMPLATE,
    training_notes: str = "",
    train_commands: tuple[str, ...] = (),
    batch_size: int = 256,
    max_selective_risk: float = 0.01,
    patches: PatchSpec | None = None,
    cross_source: Path | None = None,
    robustness_max_images: int | None = DEFAULT_MAX_IMAGES,
) -> dict[str, Any]:
    """`patches`: the shipped model judges native-resolution patches of that size (its
    combining rule is then chosen on validation by the trust fit). `robustness_max_images`:
    the robustness sweep's bound on the test images (None: no sweep); it runs in
    RUN_DIR/robustness, so a publish killed during it resumes there."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    model, meta = load_checkpoint(run_dir / "best")
    if patches is not None:
        meta["patches"] = patches.to_dict()
    dest.mkdir(parents=True, exist_ok=True)
    # A sweep stored with the weights being replaced says nothing about the new ones.
    shutil.rmtree(dest / STORED_FOLDER, ignore_errors=True)
    save_checkpoint(dest, model, meta, half=True)
    for name in ("history.csv", "config.yaml"):
        shutil.copyfile(run_dir / name, dest / name)
    # The shipped split keeps path, label and split; the content hashes (incompressible, most of
    # the run's file) stay in the run folder and are summed up by model.json's fingerprint.
    splits = pd.read_csv(run_dir / "splits.csv.gz")[["path", "label", "split"]]
    write_atomic(dest / "splits.csv.gz", partial(splits.to_csv, index=False, compression="gzip"))

    detector = load_detector(dest)
    root = Path(config["data"]["root"])
    manifest = load_splits(load_or_build_manifest(root).manifest, dest / "splits.csv.gz")
    # What a verdict is worth, fitted on the train and val splits of the shipped weights; the
    # evaluation below then judges the test split with it, exactly as users will.
    profile, figures = fit_trust_profile(
        detector, root, manifest, batch_size=batch_size, max_selective_risk=max_selective_risk
    )
    meta = save_trust_profile(dest, detector.metadata, profile, figures)  # with the patch rule
    save_checkpoint(dest, detector.model, meta, half=True)
    detector = load_detector(dest)
    test_rows = manifest[manifest["split"] == "test"].reset_index(drop=True)
    table, metrics = run_evaluation(detector, root, test_rows, batch_size=batch_size)
    metrics.update(
        split="test",
        dataset=describe_dataset(root, manifest),
        ece_floor=calibrated_ece_floor(table["prob_fake"]),
    )
    write_evaluation(dest / "eval", table, metrics)

    ood_results = {}
    for folder in ood:
        ood_manifest = load_or_build_manifest(folder).manifest
        ood_table, ood_metrics = run_evaluation(
            detector, folder, ood_manifest, batch_size=batch_size
        )
        ood_metrics.update(split="all", dataset=describe_dataset(folder, ood_manifest))
        write_evaluation(dest / "eval" / f"ood_{folder.name}", ood_table, ood_metrics)
        ood_results[folder.name] = ood_metrics

    # Record the shipped weights' own figures in model.json (the run's were for float32).
    meta["metrics"] = {**meta.get("metrics", {}), "test": metrics, "out_of_domain": ood_results}
    save_checkpoint(dest, detector.model, meta, half=True)
    history = pd.read_csv(dest / "history.csv")
    card = render_card(
        template,
        meta,
        config,
        manifest,
        metrics,
        ood_results,
        history,
        run_dir,
        training_notes,
        train_commands,
        cross_source=card_table(cross_source) if cross_source else "",
    )
    write_text_atomic(dest / CARD_FILE, card)
    write_card_section(dest / CARD_FILE, TRUST_SECTION, describe_trust(meta["trust"], metrics))
    write_decision_section(dest / CARD_FILE)
    if robustness_max_images is not None:
        sweep_test_split(
            dest, root, manifest, run_dir / "robustness", max_images=robustness_max_images
        )
    print(
        f"published {run_dir} -> {dest}: test accuracy {metrics['accuracy']:.4f} "
        f"on {metrics['n']} images"
    )
    return metrics


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _lr_schedule(history: pd.DataFrame, *, max_spans: int = 8) -> str:
    """'epochs 1-6 at 0.001, 7-11 at 0.0003, ...' from history.csv's lr column; a schedule that
    changes nearly every epoch (cosine, one-cycle) is summed up by its start, peak and end."""
    spans, start = [], 0
    lrs = history["lr"].tolist()
    epochs = history["epoch"].astype(int).tolist()
    for i in range(1, len(lrs) + 1):
        if i == len(lrs) or lrs[i] != lrs[start]:
            first, last = epochs[start], epochs[i - 1]
            span = f"{first}" if first == last else f"{first}-{last}"
            spans.append(f"epochs {span} at {lrs[start]:g}")
            start = i
    if len(spans) <= max_spans:
        return ", ".join(spans)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    return (
        f"changed every epoch: {lrs[0]:g} at epoch {epochs[0]}, rising to {lrs[peak]:g} at "
        f"epoch {epochs[peak]}, then down to {lrs[-1]:g} at epoch {epochs[-1]} (each epoch's "
        "rate is in `history.csv`)"
    )


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def _decimal(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_card(
    template: Path,
    meta,
    config,
    manifest,
    metrics,
    ood_results,
    history,
    run_dir,
    training_notes: str = "",
    train_commands: tuple[str, ...] = (),
    cross_source: str = "",
) -> str:
    """The template filled with this run's figures (str.format fields)."""
    counts = manifest.groupby(["split", "label"]).size().unstack(fill_value=0)
    split_rows = "\n".join(
        f"| {split} | {int(row.get(0, 0)):,} | {int(row.get(1, 0)):,} |"
        for split, row in counts.iterrows()
    )
    best = history.loc[history["val_loss"].idxmin()]
    ood_rows = (
        "\n".join(
            f"| {name} | {m['n']:,} | {_pct(m['accuracy'])} | {_pct(m['recall'])} | "
            f"{_pct(m['specificity'])} | {_decimal(m['roc_auc'])} |"
            for name, m in ood_results.items()
        )
        or "| (none measured) | | | | | |"
    )
    data_cfg = meta["data"]
    values = {
        "architecture": meta["architecture"],
        "stem": meta.get("stem"),
        "layer4_stride": meta.get("layer4_stride"),
        "input_size": data_cfg["input_size"],
        "resize": data_cfg["resize"],
        "threshold": meta.get("threshold", 0.5),
        "seed": config["seed"],
        "fractions": "/".join(f"{round(100 * f)}" for f in config["data"]["fractions"]),
        "split_rows": split_rows,
        "fingerprint": meta.get("dataset", {}).get("fingerprint", "n/a"),
        "epochs_run": len(history),
        "best_epoch": int(best["epoch"]),
        "train_minutes": round(history["seconds"].sum() / 60),
        # lr and epochs changed during a resumed run: the schedule line below has the truth.
        "optim": _describe({k: v for k, v in config["optim"].items() if k not in ("lr", "epochs")}),
        "lr_schedule": _lr_schedule(history),
        "training_notes": training_notes,
        "commands": "\n".join(train_commands),
        "augment": _describe(config["augment"]),
        "run_dir": run_dir.as_posix(),
        "n_test": metrics["n"],
        "one_image_pct": _pct(1 / metrics["n"]),
        "accuracy": _pct(metrics["accuracy"]),
        "precision": _pct(metrics["precision"]),
        "recall": _pct(metrics["recall"]),
        "f1": _pct(metrics["f1"]),
        "specificity": _pct(metrics["specificity"]),
        "balanced_accuracy": _pct(metrics["balanced_accuracy"]),
        "roc_auc": _decimal(metrics["roc_auc"]),
        "average_precision": _decimal(metrics["average_precision"]),
        "ece": _decimal(metrics["ece"]),
        "tp": metrics["tp"],
        "fp": metrics["fp"],
        "tn": metrics["tn"],
        "fn": metrics["fn"],
        "ood_rows": ood_rows,
        "torch": meta.get("versions", {}).get("torch", "n/a"),
        "input_filter": meta.get("input_filter", "none"),
        "patch_size": (meta.get("patches") or {}).get("size", "n/a"),
        "max_patches": (meta.get("patches") or {}).get("max_patches", "n/a"),
        "patch_rule": (meta.get("patches") or {}).get("aggregate", "n/a"),
        "patch_stride": _patch_stride(meta.get("patches")),
        "cross_source": cross_source or "(not measured)",
        "ensemble": _ensemble_line(meta),
        # The CIFAKE card's stem comparison, from the benchmark record it cites.
        "cifar_stem_img_s": recorded_throughput("cifar", 2, 32),
        "compact_stem_img_s": recorded_throughput("compact", 1, 32),
    }
    return template.read_text(encoding="utf-8").format(**values)


def _patch_stride(record: dict | None) -> int | str:
    """How far apart a patch model's patches start (the patch side where none was chosen)."""
    if not record:
        return "n/a"
    return PatchSpec.from_dict(record).step


def _ensemble_line(meta) -> str:
    """A card line naming a seed ensemble's members and their own validation figures (as
    `training.ensemble` recorded them in model.json); empty for a single network."""
    members = meta.get("training", {}).get("ensemble_of", [])
    if meta.get("members", 1) == 1 or not members:
        return ""
    each = "; ".join(
        f"seed {m['seed']}: best epoch {m['best_epoch']}, val loss {m['val_loss']:.3f}, "
        f"accuracy {_pct(m['val_accuracy'])}"
        if "best_epoch" in m
        else f"seed {m['seed']}: no training history"
        for m in members
    )
    return (
        f"- **A seed ensemble of {len(members)} such networks** (`forensics.ensemble`, joined by "
        "`python -m training.ensemble`): the same configuration trained from different seeds "
        "on the same split; a verdict is the mean of their logits. The schedule and epochs "
        f"below are the first member's. Each member's own best validation epoch: {each}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.publish",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", type=Path, help="a finished run folder (python -m training.train)"
    )
    parser.add_argument("--to", type=Path, required=True, help="destination checkpoint folder")
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="model card template (str.format fields; default: the CIFAKE card; "
        "training/model_card_faces.md for the faces model)",
    )
    parser.add_argument(
        "--training-notes",
        default="",
        help="a sentence for the card about how the run went (e.g. a resume with a new rate)",
    )
    parser.add_argument(
        "--train-command",
        action="append",
        default=[],
        help="a command that produced the run, shown in the card (repeat for several)",
    )
    parser.add_argument(
        "--ood",
        type=Path,
        nargs="*",
        default=[],
        help="out-of-domain dataset folders to measure and report",
    )
    parser.add_argument(
        "--max-selective-risk",
        type=float,
        default=0.01,
        help="the abstain band is the narrowest whose answered validation images are wrong at "
        "most this often (default 0.01)",
    )
    parser.add_argument(
        "--cross-source",
        type=Path,
        help="a training.cross_source table (cross_source.md) to include in the card",
    )
    parser.add_argument(
        "--patches",
        type=int,
        metavar="SIZE",
        help="judge images by native-resolution patches of SIZE px (a model trained on crops of "
        "that size), combined by the rule that fits validation best",
    )
    parser.add_argument(
        "--max-patches", type=int, default=64, help="with --patches: at most this many per image"
    )
    parser.add_argument(
        "--robustness-max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        metavar="N",
        help="the robustness sweep judges at most N test images, a seeded sample "
        f"(default {DEFAULT_MAX_IMAGES})",
    )
    parser.add_argument(
        "--no-robustness", action="store_true", help="skip the robustness sweep and its section"
    )
    args = parser.parse_args(argv)
    if args.robustness_max_images < 1:
        parser.error("--robustness-max-images must be at least 1")
    this_command = shlex.join(["python", "-m", "training.publish", *(argv or sys.argv[1:])])
    if not (args.run_dir / "best" / "model.json").is_file():
        print(f"error: {args.run_dir} holds no finished run (no best/model.json)", file=sys.stderr)
        return 2
    publish(
        args.run_dir,
        args.to,
        ood=args.ood,
        template=args.template,
        training_notes=args.training_notes,
        train_commands=(
            *(args.train_command or [f"python -m training.train --config {DEFAULT_CONFIG_NAME}"]),
            this_command,
        ),
        max_selective_risk=args.max_selective_risk,
        patches=PatchSpec(args.patches, args.max_patches) if args.patches else None,
        cross_source=args.cross_source,
        robustness_max_images=None if args.no_robustness else args.robustness_max_images,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
