"""Run a named suite of training configs and compare them:
`python -m training.experiments SUITE --data DIR [--out DIR] [--key value ...]`.

Suites (the published comparisons this project comes from):
  strategies  ResNet50: feature extraction vs fine-tune layer4 vs fine-tune all
  epochs      the same layer4 fine-tuning for 5, 10 and 15 epochs (--epoch-list to change)
  baselines   ResNet18 vs ResNet50 vs the simple CNN, from scratch
  heads       ResNet18 with a linear, an MLP and a small head
  ideas       what each idea buys on a small high-resolution set (the faces model's ladder):
              the image downscaled to the input (the naive baseline); from there, a deeper
              network (ResNet50), or native-resolution crops instead of the downscale, then
              crops for training with the whole view at evaluation, that with a schedule
              twice as long (crops learn slowly), and that with MixUp/CutMix batch mixing;
              or, on the downscaled image, stronger augmentation (rotation, colour jitter,
              random resized crops), that with a schedule twice as long, and that with
              batch mixing;
              sizes come from the base config (input_size = the crop, resize = the native
              side), e.g. --config training/configs/faces_resnet18.yaml
  sources     which idea carries a photograph detector to other sources (the photos model's
              ladder, on sdcoco with --config training/configs/photos_resnet18.yaml): the whole
              image downscaled to the crop; native-resolution crops; those with blur and JPEG
              augmentation (Wang et al. 2020); the NPR residual in front (Tan et al. 2024); a
              fixed high-pass residual. With `--other NAME=PATH` (repeat), also NPR on all the
              sets together and leaving each set out in turn (trained on native crops of the
              smallest set's side, --mixed-crop, with as many training images per epoch as the
              main set: the same budget), from combinations made without any set's test images
              (training.combine_sources). `python -m training.cross_source` then scores every
              run on every set's test split

Each run is a normal training run folder under OUT/<run> (so `--resume` semantics apply: a
finished run is skipped, an interrupted one continues). The suite writes OUT/comparison.csv,
OUT/comparison.md and OUT/curves.html (validation curves overlaid); the Training runs page shows
them when pointed at OUT. Any `--section.key value` override applies to every run; `--runs A B`
trains and compares only those runs of the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import plotly.io as pio
from plotly.subplots import make_subplots

from forensics.data import assign_splits
from forensics.models import WeightsUnavailableError, build_model, count_parameters
from forensics.scan import load_or_build_manifest
from training.combine_sources import combine, held_in_rows, parse_sources
from training.config import CONFIG_DIR, apply_overrides, load_config
from training.strategies import apply_strategy
from training.train import resolve_run_config, run

DEFAULT_BASE = CONFIG_DIR / "experiments.yaml"
METRIC_COLUMNS = ["accuracy", "precision", "recall", "f1", "roc_auc"]
COMPARISON_COLUMNS = ["run", *METRIC_COLUMNS, "parameters", "trainable", "train_seconds", "epochs",
                      "best_epoch"]  # fmt: skip


def suite_runs(
    suite: str,
    *,
    weights: str | None,
    epoch_list: list[int],
    base: dict | None = None,
    mixed: dict[str, Path] | None = None,
    mixed_crop: int = 32,
    train_images: int | None = None,
) -> dict[str, list[str]]:
    """Run name -> the overrides that make it, for `suite` (`ideas` reads sizes and epochs from
    the resolved base config)."""
    pretrained = ["--model.weights", weights] if weights else ["--model.weights", "null"]
    if suite == "strategies":
        return {
            strategy: ["--model.architecture", "resnet50", *pretrained,
                       "--model.strategy", strategy]
            for strategy in ("feature_extraction", "finetune_layer4", "finetune_all")
        }  # fmt: skip
    if suite == "epochs":
        return {
            f"epochs_{n}": ["--model.architecture", "resnet50", *pretrained,
                            "--model.strategy", "finetune_layer4", "--optim.epochs", str(n)]
            for n in epoch_list
        }  # fmt: skip
    if suite == "baselines":
        return {
            name: ["--model.architecture", name, "--model.weights", "null",
                   "--model.strategy", "scratch"]
            for name in ("resnet18", "resnet50", "simple_cnn")
        }  # fmt: skip
    if suite == "heads":
        return {
            f"head_{head}": ["--model.architecture", "resnet18", "--model.head", head]
            for head in ("linear", "mlp", "small")
        }
    if suite == "ideas":
        return _ideas_runs(base or {})
    if suite == "sources":
        runs = _sources_runs(base or {})
        for name, root in (mixed or {}).items():
            runs[name] = _mixed_run(root, crop=mixed_crop, train_images=train_images)
        return runs
    raise ValueError(f"unknown suite {suite!r}; valid: {list(SUITES)}")


def _ideas_runs(base: dict) -> dict[str, list[str]]:
    """The naive baseline, then runs that each add one idea to an earlier run, so each row
    shows what that idea bought."""
    crop = int(base["input"]["input_size"])
    native = int(base["input"]["resize"])
    if native <= crop:
        raise ValueError(
            f"the ideas suite needs input.resize (the native side, {native}) larger than "
            f"input.input_size (the crop, {crop}); e.g. --input.resize 256 --input.input_size 128"
        )
    downscaled = ["--input.resize", str(crop)]
    whole_view = ["--input.input_size", str(native), "--augment.crop_size", str(crop)]
    longer = ["--optim.epochs", str(2 * int(base["optim"]["epochs"]))]
    augmented = [*downscaled, "--augment.preset", "flip_rotate_jitter",
                 "--augment.crop", "random_resized_crop"]  # fmt: skip
    return {
        "downscaled": downscaled,
        "downscaled_resnet50": [*downscaled, "--model.architecture", "resnet50"],
        "native_crops": [],
        "crops_whole_view": whole_view,
        "whole_view_longer": [*whole_view, *longer],
        "whole_view_mixed_longer": [*whole_view, *longer, "--augment.batch_mix", "mixup_or_cutmix"],
        "augmented": augmented,
        "augmented_longer": [*augmented, *longer],
        "augmented_mixed_longer": [*augmented, *longer, "--augment.batch_mix", "mixup_or_cutmix"],
    }  # fmt: skip


def _sources_runs(base: dict) -> dict[str, list[str]]:
    """Rungs that differ in one idea each from native crops with the whole view at evaluation
    (the base config's layout); every rung has the same budget (epochs, batch, schedule)."""
    crop = int(base["augment"].get("crop_size") or base["input"]["input_size"])
    plain = ["--model.input_filter", "none"]
    return {
        "downscaled": [*plain, "--input.resize", str(crop), "--input.input_size", str(crop)],
        "native_crops": plain,
        "native_crops_blur_jpeg": [*plain, "--augment.preset", "flip_jpeg_blur"],
        "npr": ["--model.input_filter", "npr"],
        "highpass": ["--model.input_filter", "highpass"],
    }


def _mixed_run(root: Path, *, crop: int, train_images: int | None) -> list[str]:
    """NPR on native crops of a combination of sets (never resized: their sizes differ)."""
    budget = ["--data.max_train_images", str(train_images)] if train_images else []
    return ["--data.root", str(root), "--model.input_filter", "npr", "--input.native", "true",
            "--input.input_size", str(crop), "--input.resize", str(crop),
            "--augment.crop_size", str(crop), "--augment.crop_padding", "0", *budget]  # fmt: skip


def prepare_mixed_sets(
    data: Path, others: dict[str, Path], out: Path, *, primary: str | None = None
) -> dict[str, Path]:
    """Run name -> combined set (made once under OUT/_data, reused after): all the sets
    together, and every set left out in turn; each set gives at most as many images as the
    main set has outside its test split (CIFAKE's 80,000 would drown the others)."""
    sets = {primary or data.name: data, **others}
    cap = len(held_in_rows(data, per_source=None))
    combos = {"all_sets": dict(sets)}
    for left_out in sets:
        combos[f"without_{left_out}"] = {k: v for k, v in sets.items() if k != left_out}
    roots = {}
    for run_name, members in combos.items():
        root = out / "_data" / run_name
        if not (root / "SOURCES.json").is_file():
            (out / "_data").mkdir(parents=True, exist_ok=True)
            combine(members, root, per_source=cap)
        roots[run_name] = root
    return roots


def train_count(data: Path, fractions: list[float], seed: int) -> int:
    """How many training images `data` has under the seeded split (a mixed run's budget)."""
    manifest = load_or_build_manifest(data, progress=False).manifest
    return int((assign_splits(manifest, fractions=fractions, seed=seed)["split"] == "train").sum())


SUITES = ("strategies", "epochs", "baselines", "heads", "ideas", "sources")


def resolve_weights(setting: str) -> str | None:
    """`auto`: ImageNet weights where torchvision has them on this machine, else none (with a
    one-sentence note: the suite then compares the strategies from random initial weights)."""
    if setting == "none":
        return None
    if setting == "auto":
        try:
            build_model("resnet50", weights="imagenet")
        except WeightsUnavailableError as exc:
            print(f"note: {exc} The suite runs from random initial weights instead.")
            return None
        return "imagenet"
    return setting  # "imagenet" (fails loudly if missing) or a weights file


def run_suite(
    suite: str,
    *,
    data: Path,
    out: Path,
    base: Path = DEFAULT_BASE,
    overrides: list[str] | None = None,
    weights: str = "auto",
    epoch_list: list[int] | None = None,
    only: list[str] | None = None,
    others: dict[str, Path] | None = None,
    mixed_crop: int = 32,
) -> pd.DataFrame:
    """Train (or resume, or skip when finished) every run of `suite`, or the runs named in
    `only`; returns the comparison of those runs. `others`: the sources suite's other sets."""
    if others and suite != "sources":
        raise ValueError("--other is for the sources suite")
    resolved = apply_overrides(load_config(base), overrides or [])
    mixed = prepare_mixed_sets(data, others, out) if others else None
    runs = suite_runs(
        suite,
        weights=resolve_weights(weights) if suite in ("strategies", "epochs") else None,
        epoch_list=epoch_list or [5, 10, 15],
        base=resolved,
        mixed=mixed,
        mixed_crop=mixed_crop,
        train_images=train_count(data, resolved["data"]["fractions"], resolved["seed"])
        if mixed
        else None,
    )
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise ValueError(f"the {suite} suite has no run {unknown}; its runs: {list(runs)}")
        runs = {name: argv for name, argv in runs.items() if name in only}
    for name, run_overrides in runs.items():
        folder = out / name
        if (folder / "eval" / "metrics.json").is_file():
            print(f"{name}: finished earlier, skipped")
            continue
        # The suite's own keys come last, so they win over the shared overrides (a mixed run's
        # --data.root over the main set's).
        argv = [*(overrides or []), "--data.root", str(data), "--out", str(folder), *run_overrides]
        resume = (folder / "state.pt").is_file()
        print(f"=== {suite}: {name}{' (resuming)' if resume else ''}", flush=True)
        run(resolve_run_config(base, argv, resume=resume), resume=resume)
    table = compare_runs({name: out / name for name in runs})
    write_comparison(table, out, title=f"{suite} on {data}")
    return table


def compare_runs(folders: dict[str, Path]) -> pd.DataFrame:
    """One row per finished run: test metrics, model size, training time, best epoch."""
    rows = []
    for name, folder in folders.items():
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        history = pd.read_csv(folder / "history.csv")
        config = load_config(folder / "config.yaml")
        model = build_model(**{k: v for k, v in config["model"].items() if k != "strategy"}
                            | {"weights": None})  # fmt: skip
        trainable = _trainable_count(model, config["model"]["strategy"])
        best = history.loc[history["best"].astype(bool), "epoch"]
        rows.append(
            {
                "run": name,
                **{k: metrics.get(k) for k in METRIC_COLUMNS},
                "parameters": count_parameters(model),
                "trainable": trainable,
                "train_seconds": float(history["seconds"].sum()),
                "epochs": len(history),
                "best_epoch": int(best.iloc[-1]) if len(best) else None,
            }
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _trainable_count(model, strategy: str) -> int:
    apply_strategy(model, strategy, lr=1.0)
    return count_parameters(model, trainable_only=True)


def write_comparison(table: pd.DataFrame, out: Path, *, title: str) -> None:
    """comparison.csv, comparison.md and curves.html (validation loss and accuracy per epoch,
    runs overlaid) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    shown = table.copy()
    for column in METRIC_COLUMNS:
        shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.4f}")
    shown["train_seconds"] = shown["train_seconds"].map(lambda v: f"{v:.0f}")
    (out / "comparison.md").write_text(f"# {title}\n\n{markdown_table(shown)}\n")
    figure = make_subplots(rows=1, cols=2, subplot_titles=("val loss", "val accuracy"))
    for name in table["run"]:
        history = pd.read_csv(out / name / "history.csv")
        for col, metric in enumerate(("val_loss", "val_accuracy"), start=1):
            figure.add_scatter(
                x=history["epoch"], y=history[metric], mode="lines+markers", name=name,
                legendgroup=name, showlegend=col == 1, row=1, col=col,
            )  # fmt: skip
    figure.update_layout(title=title, height=420)
    figure.update_xaxes(title_text="epoch")
    # plotly.js inside the file: it opens on a machine without internet.
    pio.write_html(figure, out / "curves.html", include_plotlyjs=True)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-style Markdown table of `table`'s values as strings."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or .zip")
    parser.add_argument("--out", type=Path, help="default: training/runs/experiments/SUITE")
    parser.add_argument("--config", type=Path, default=DEFAULT_BASE, help="base config of runs")
    parser.add_argument(
        "--weights",
        default="auto",
        help="strategies/epochs suites: auto (ImageNet where available), imagenet, none, or a "
        "backbone weights file",
    )
    parser.add_argument("--epoch-list", type=int, nargs="+", default=[5, 10, 15])
    parser.add_argument(
        "--runs", nargs="+", metavar="RUN", help="only these runs of the suite (default: all)"
    )
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="sources suite: another dataset for the all-sets and leave-one-out runs (repeat)",
    )
    parser.add_argument("--mixed-crop", type=int, default=32, help="sources suite: mixed crops")
    args, overrides = parser.parse_known_args(argv)
    out = args.out or Path("training/runs/experiments") / args.suite
    try:
        apply_overrides(load_config(args.config), overrides)  # typos fail before any training
        table = run_suite(
            args.suite,
            data=args.data,
            out=out,
            base=args.config,
            overrides=overrides,
            weights=args.weights,
            epoch_list=args.epoch_list,
            only=args.runs,
            others=parse_sources(args.other) if args.other else None,
            mixed_crop=args.mixed_crop,
        )
    except (ValueError, FileNotFoundError, WeightsUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.csv'} and {out / 'curves.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
