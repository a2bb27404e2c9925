"""Command line: `python -m forensics predict IMG...`, `evidence IMG...`, `evaluate --data DIR`,
`robustness --data DIR --out OUT`, and (in `forensics.report.commands`) `report IMG --out FILE`
and `audit DIR --out OUT`.

`predict` also takes folders: their image files, recursively (see expand_image_paths).

Exit codes: 0 success; 1 some images could not be read (the others are still reported);
2 bad arguments (a path that does not exist), a bad dataset or a bad checkpoint, with a one-line
message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

PROGRESS_BAR_ABOVE = 5  # predict shows a progress bar on stderr for more images than this


class UsageError(Exception):
    """A problem the user can fix by changing the command; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from forensics.data import IMAGE_EXTENSIONS

    parser = argparse.ArgumentParser(
        prog="python -m forensics",
        description="Real-vs-AI-generated image forensics with explainable verdicts.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser(
        "predict",
        help="give a verdict for each image",
        description="Give a verdict for each image. A folder stands for every image file in it "
        f"and its subfolders ({', '.join(sorted(IMAGE_EXTENSIONS))}; hidden folders skipped), "
        "in sorted order; symbolic links that lead out of the folder are skipped. A progress "
        f"bar goes to stderr for more than {PROGRESS_BAR_ABOVE} images.",
        epilog="Exit codes: 0 every image judged; 1 some files could not be read (the others "
        "are still reported); 2 a path that does not exist (nothing is judged), bad arguments "
        "or a bad checkpoint.",
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files or folders")
    add_checkpoint_option(predict)
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    add_unsigned_metadata_option(predict)
    _add_engine_option(predict)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on a dataset folder")
    _add_dataset_options(evaluate)
    add_checkpoint_option(evaluate)
    evaluate.add_argument(
        "--out", type=Path, required=True, help="folder for metrics.json and predictions.csv"
    )
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    evaluate.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the stability check (five times less work; decisions then ignore it)",
    )
    add_unsigned_metadata_option(evaluate)
    _add_engine_option(evaluate)
    _add_robustness_command(commands)

    evidence = commands.add_parser(
        "evidence",
        help="what each file says about its origin (metadata, C2PA) and its classic views",
        description="Provenance metadata (EXIF, XMP, IPTC, PNG text), the C2PA content "
        "credential and classic forensic views (error levels, noise, spectrum, JPEG history) "
        "of each image, independent of any model. Folders as for predict.",
        epilog="Exit codes: 0 every image read; 1 some files could not be read (the others are "
        "still reported); 2 a path that does not exist.",
    )
    evidence.add_argument("images", nargs="+", type=Path, help="image files or folders")
    evidence.add_argument("--json", action="store_true", help="one JSON object per line")
    from forensics.report.commands import add_commands

    add_commands(commands)  # report IMG, audit DIR
    return parser


def _add_dataset_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data", type=Path, required=True, help="dataset folder or .zip")
    command.add_argument(
        "--split",
        default="all",
        help="train, val, test or all (default: all); needs split folders or --splits",
    )
    command.add_argument(
        "--splits",
        type=Path,
        default=None,
        help="a split file (CSV, as saved by training) to apply to the data",
    )


def _add_robustness_command(commands) -> None:
    from forensics.perturb import PERTURBATIONS

    sweep = ", ".join(
        f"{k.name} ({k.title}: {', '.join(f'{s:g}' for s in k.sweep)})"
        for k in PERTURBATIONS.values()
    )
    robustness = commands.add_parser(
        "robustness",
        help="accuracy, ROC-AUC and flipped verdicts under JPEG, resizing, blur, noise, crops",
        description="Judge the images clean and under each perturbation as the file a user "
        "would get, and write OUT/robustness.csv, OUT/robustness.html (the curves) and "
        "OUT/robustness.json (how it was made). Run the same command again after a crash or "
        f"kill: finished settings are kept (OUT/parts/). Perturbations and strengths: {sweep}.",
        epilog="Exit codes: 0 done; 2 bad arguments, dataset or checkpoint.",
    )
    _add_dataset_options(robustness)
    add_checkpoint_option(robustness)
    robustness.add_argument("--out", type=Path, required=True, help="folder for the sweep")
    robustness.add_argument(
        "--max-images",
        type=int,
        default=None,
        metavar="N",
        help="judge at most N images of the selection (a seeded sample)",
    )
    robustness.add_argument(
        "--perturbation",
        action="append",
        default=None,
        metavar="NAME[=S1,S2]",
        help="only this perturbation, at its sweep strengths or at those given (repeat for "
        "several); default: all of them",
    )
    robustness.add_argument("--batch-size", type=int, default=64)
    robustness.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the stability check (five times less work; decisions then ignore it)",
    )
    _add_engine_option(robustness)


def add_checkpoint_option(command: argparse.ArgumentParser) -> None:
    """--checkpoint, as every command that judges images takes it."""
    command.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint directory (default: the shipped model), or auto: per image, the "
        "shipped model whose training domain fits it",
    )


def add_unsigned_metadata_option(command: argparse.ArgumentParser) -> None:
    """--ignore-unsigned-metadata, as every command that decides on files takes it."""
    command.add_argument(
        "--ignore-unsigned-metadata",
        action="store_true",
        help="decide only by the pixels and signed content credentials: a generator's "
        "unsigned metadata (a Stable Diffusion parameters chunk, an XMP CreatorTool, ...) is "
        "reported but decides nothing (by default it decides 'fake', saying it is unsigned)",
    )


def _add_engine_option(command: argparse.ArgumentParser) -> None:
    from forensics.inference import ENGINES

    command.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="how verdicts are computed (default: $FORENSICS_ENGINE or fast; "
        "python -m benchmarks.bench compares them)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            return run_predict(args)
        if args.command == "evidence":
            return run_evidence(args)
        if args.command == "robustness":
            return run_robustness(args)
        if args.command in ("report", "audit"):
            from forensics.report import commands

            return (
                commands.run_report(args) if args.command == "report" else commands.run_audit(args)
            )
        return run_evaluate(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _load(checkpoint: Path | None, engine: str | None = None):
    from forensics.checkpoint import CheckpointError
    from forensics.router import load_detector

    try:
        return load_detector(checkpoint, engine=engine)
    except CheckpointError as exc:
        raise UsageError(f"bad checkpoint: {exc}") from None
    except (RuntimeError, ValueError) as exc:  # an unknown engine, or one not installed
        raise UsageError(str(exc)) from None


def run_predict(args: argparse.Namespace) -> int:
    from forensics.decision import predict

    paths = expand_image_paths(args.images)
    detector = _load(args.checkpoint, args.engine)
    trust_unsigned = not args.ignore_unsigned_metadata

    def decide(path: Path):
        return predict(detector, path, trust_unsigned_metadata=trust_unsigned)

    def describe(path: Path, verdict) -> None:
        _emit(describe_verdict(path, verdict))

    return _for_each_image(paths, decide, describe, as_json=args.json,
                           progress=len(paths) > PROGRESS_BAR_ABOVE)  # fmt: skip


def run_evidence(args: argparse.Namespace) -> int:
    """Evidence for each image: one JSON object per line with --json, else a few lines each."""
    from forensics.evidence import gather_evidence

    def describe(path: Path, evidence) -> None:
        _emit(f"{path}: {evidence.provenance}: {evidence.summary}")
        for finding in evidence.findings:
            _emit(f"  {finding.source}: {finding.claim}")
        for view in evidence.views:
            _emit(f"  {view.title}: {view.reading}")

    return _for_each_image(expand_image_paths(args.images), gather_evidence, describe,
                           as_json=args.json)  # fmt: skip


def _for_each_image(paths, work, describe, *, as_json: bool, progress: bool = False) -> int:
    """`work(path)` for each image, in order: its result as one JSON line (`as_json`, from its
    to_dict()) or as `describe` writes it. A file that cannot be read as an image is reported
    (an error line) and skipped; the exit status is then 1."""
    from tqdm import tqdm

    from forensics.images import ImageLoadError

    failures = 0
    for path in tqdm(paths, unit="image", file=sys.stderr, disable=not progress):
        try:
            result = work(path)
        except ImageLoadError as exc:
            failures += 1
            if as_json:
                _emit(json.dumps({"path": str(path), "error": str(exc)}))
            else:
                _emit(f"{path}: error: {exc}", sys.stderr)
            continue
        if as_json:
            _emit(json.dumps({"path": str(path), **result.to_dict()}))
        else:
            describe(path, result)
    return 1 if failures else 0


def _emit(line: str, stream: TextIO | None = None) -> None:
    """Print one line without breaking a progress bar on stderr (tqdm lifts it, then redraws)."""
    from tqdm import tqdm

    tqdm.write(line, file=stream or sys.stdout)


def expand_image_paths(paths: list[Path]) -> list[Path]:
    """Files as given and, in their place, each folder's image files; UsageError names any path
    that does not exist, before anything is judged."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    from forensics.data import images_in_folder

    expanded: list[Path] = []
    for path in paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        found = sorted(images_in_folder(path))
        if not found:
            print(f"{path}: no image files in this folder", file=sys.stderr)
        expanded += found
    return expanded


def describe_verdict(path: Path, verdict) -> str:
    """One line: the decision, what decided it, the model's scores and the first reason."""
    decision = "fake (partly AI-generated)" if verdict.partly_generated else verdict.decision
    by = "" if verdict.decided_by == "model" else f" by its {verdict.decided_by}"
    line = (
        f"{path}: {decision}{by} (model: P(fake) {verdict.prob_fake:.4f}, raw "
        f"{verdict.prob_fake_raw:.4f}, threshold {verdict.threshold:.2f}, "
        f"checkpoint {verdict.checkpoint or '?'})"
    )
    if verdict.reasons:
        line += f": {verdict.reasons[0]}"
        more = len(verdict.reasons) - 1
        if more:
            line += f" (and {more} more: --json lists them)"
    return line


def _evaluate_routed(args: argparse.Namespace, detector, manifest, discovery) -> int:
    """`evaluate --checkpoint auto`: one process (torchrun shards single checkpoints only); the
    predictions name the checkpoint that judged each image."""

    from forensics.evaluation import predict_rows, summarize_verdicts, write_evaluation

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("evaluate --checkpoint auto runs in one process, not under torchrun")
    try:
        threshold = detector.threshold
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    verdicts = predict_rows(detector, args.data, manifest, stability=not args.no_stability)
    table, metrics = summarize_verdicts(
        detector, manifest, verdicts, trust_unsigned_metadata=not args.ignore_unsigned_metadata
    )
    table["checkpoint"] = [v.checkpoint for v in verdicts]
    metrics.update(split=args.split, threshold=threshold,
                   routed_to=table["checkpoint"].value_counts().to_dict())  # fmt: skip
    write_evaluation(args.out, table, metrics)
    return _report_evaluation(args, metrics, discovery)


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from forensics.distributed import (
        gather_arrays,
        init_distributed,
        shard_indices,
        shutdown_distributed,
    )
    from forensics.evaluation import (
        manifest_infos,
        routes_each_image,
        score_rows,
        summarize_verdicts,
        write_evaluation,
    )

    detector, manifest, discovery = _judge_selection(args)
    if routes_each_image(detector):  # auto: each image judged by the model it chose
        return _evaluate_routed(args, detector, manifest, discovery)
    # Under torchrun each process predicts every WORLD_SIZE-th image; rank 0 puts them back in
    # manifest order, so the merged predictions.csv is the single-process one.
    setup = init_distributed(torch.device("cpu"))
    try:
        mine = shard_indices(len(manifest), setup)
        margins, features = score_rows(
            detector,
            args.data,
            manifest.iloc[mine],
            batch_size=args.batch_size,
            num_workers=args.workers,
            stability=not args.no_stability,
            progress=setup.is_main,
        )
        order, margins, features = gather_arrays(
            setup, np.asarray(mine, dtype=np.int64), margins, features
        )
    finally:
        shutdown_distributed(setup)
    if not setup.is_main:
        return 0
    merged_margins = np.empty_like(margins)
    merged_margins[order] = margins
    merged_features = np.empty_like(features)
    merged_features[order] = features
    verdicts = detector.verdicts_from_scores(
        merged_margins, merged_features, manifest_infos(manifest)
    )
    table, metrics = summarize_verdicts(
        detector, manifest, verdicts, trust_unsigned_metadata=not args.ignore_unsigned_metadata
    )
    metrics["split"] = args.split
    write_evaluation(args.out, table, metrics)
    return _report_evaluation(args, metrics, discovery)


def _report_evaluation(args: argparse.Namespace, metrics: dict, discovery) -> int:
    """The files the scan skipped beside the evaluation, and its one-line summary."""
    if not discovery.skipped.empty:
        discovery.skipped.to_csv(args.out / "skipped.csv", index=False)
    auc, answered = metrics["roc_auc"], metrics["selective_accuracy"]
    print(
        f"{metrics['n']} images: accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
        f"ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}; answered "
        f"{metrics['coverage']:.1%}, accuracy on the answered "
        f"{'n/a' if answered is None else f'{answered:.4f}'}, confident-wrong "
        f"{metrics['confident_wrong_rate']:.1%}; decided by {describe_deciders(metrics)} -> "
        f"{args.out}"
    )
    return 0


def describe_deciders(metrics: dict) -> str:
    """'the model 118, credential 2': a dataset's decisions counted by what decided them."""
    counts = metrics.get("decided_by") or {}
    parts = [f"{'the model' if by == 'model' else by} {n}" for by, n in counts.items() if n]
    return ", ".join(parts) or "nothing"


def _judge_selection(args: argparse.Namespace):
    """(detector, the manifest rows of --data/--splits/--split, the discovery) for evaluate
    and robustness; UsageError for anything the user can fix."""
    from forensics.data import SPLITS, load_splits
    from forensics.scan import load_or_build_manifest

    if args.split != "all" and args.split not in SPLITS:
        raise UsageError(f"--split must be one of {[*SPLITS, 'all']}, got {args.split!r}")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    detector = _load(args.checkpoint, args.engine)
    try:
        discovery = load_or_build_manifest(args.data)
        manifest = discovery.manifest
        if args.splits is not None:
            manifest = load_splits(manifest, args.splits)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not discovery.skipped.empty:
        print(
            f"skipped {len(discovery.skipped)} unreadable or unlabelled files "
            f"(listed in {args.out / 'skipped.csv'})",
            file=sys.stderr,
        )
    if args.split != "all":
        if manifest["split"].isna().all():
            raise UsageError(f"{args.data} has no split folders; use --split all or --splits FILE")
        manifest = manifest[manifest["split"] == args.split].reset_index(drop=True)
        if manifest.empty:
            raise UsageError(f"the {args.split} split is empty")
    return detector, manifest, discovery


def run_robustness(args: argparse.Namespace) -> int:
    from forensics.robustness import (
        describe_row,
        parse_settings,
        run_sweep,
        select_rows,
        sweep_command,
    )

    try:  # the arguments first: a typo must not wait for a dataset scan
        settings = parse_settings(args.perturbation)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_images is not None and args.max_images < 1:
        raise UsageError(f"--max-images must be at least 1, got {args.max_images}")
    detector, manifest, discovery = _judge_selection(args)
    rows = select_rows(manifest, max_images=args.max_images)
    command = sweep_command(
        args.data, args.checkpoint, args.out, split=args.split,
        splits=args.splits, max_images=args.max_images, stability=not args.no_stability,
        perturbations=args.perturbation or (),
    )  # fmt: skip
    record = {"command": command, "data_root": str(args.data), "split": args.split}
    summary = run_sweep(
        detector, args.data, rows, args.out, settings=settings,
        stability=not args.no_stability, batch_size=args.batch_size, record=record,
    )  # fmt: skip
    if not discovery.skipped.empty:
        discovery.skipped.to_csv(args.out / "skipped.csv", index=False)
    for row in summary.to_dict("records"):
        print(describe_row(row))
    print(f"-> {args.out / 'robustness.csv'}, {args.out / 'robustness.html'}")
    return 0
