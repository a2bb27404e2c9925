"""Train a real-vs-fake classifier: `python -m training.train --config FILE [--key value ...]`.

A run folder holds the resolved `config.yaml`, `splits.csv.gz`, `history.csv` (one row per
epoch), `best/` (the checkpoint with the lowest validation loss), `state.pt` (everything needed
to resume: model, optimiser, scheduler, early-stopping state) and `eval/` (test metrics and
predictions of the best checkpoint). Every file is written atomically, so `--resume` after a
crash or `kill -9` continues from the last complete epoch and ends where an uninterrupted run
would: each epoch's randomness is seeded from (seed, epoch), not carried over. `last/` holds the
newest epoch's weights.

Strategies (scratch, feature_extraction, finetune_layer4, finetune_all), optimisers and schedules
are described in training/configs/defaults.yaml. Under `torchrun --nproc_per_node N` the run is
DistributedDataParallel (gloo on CPU, nccl on GPU); metrics are computed over every rank's
images and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from forensics.atomic import write_atomic, write_text_atomic
from forensics.checkpoint import load_checkpoint, save_checkpoint
from forensics.data import (
    ManifestDataset,
    assign_splits,
    dataset_fingerprint,
    find_duplicates,
    load_splits,
    save_splits,
    summarize_manifest,
)
from forensics.distributed import (
    Distributed,
    barrier,
    gather_arrays,
    init_distributed,
    shard_indices,
    shutdown_distributed,
    sum_across,
)
from forensics.evaluation import build_predictions_table, compute_metrics, write_evaluation
from forensics.models import build_model, count_parameters
from forensics.scan import load_or_build_manifest
from forensics.transforms import (
    AugmentConfig,
    DataConfig,
    build_batch_mix,
    build_eval_transform,
    build_train_transform,
)
from training.config import apply_overrides, dump_config, load_config
from training.optim import Schedule, make_optimizer
from training.strategies import apply_strategy, set_train_mode

HISTORY_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")


def resolve_device(setting: str | None) -> torch.device:
    """`auto`: the GPU where there is one, else the CPU."""
    if setting in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no GPU is available")
    return device


def resolve_amp(setting: Any, device: torch.device | None = None) -> torch.dtype | None:
    """Autocast dtype: on CPU bf16 where it helps (measured ~2x faster training here); on a GPU
    bf16 where supported, else fp16 (with a gradient scaler)."""
    device = device or torch.device("cpu")
    if setting in (False, None, "off"):
        return None
    if setting == "fp16":
        return torch.float16
    if setting in ("bf16", "auto"):
        if setting == "auto" and device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if setting == "auto" and not torch.cpu._is_avx512_bf16_supported():
            return None
        return torch.bfloat16
    raise ValueError(f"unknown amp setting {setting!r}; valid: auto, bf16, fp16, off")


def _autocast(device: torch.device, amp: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None)


class TrainingDiverged(ValueError):
    """The training loss stopped being a number: the run cannot go on from here."""


def train_one_epoch(
    model,
    loader,
    optimizer,
    criterion,
    *,
    amp,
    epoch,
    device: torch.device | None = None,
    schedule: Schedule | None = None,
    scaler: torch.amp.GradScaler | None = None,
    setup: Distributed | None = None,
    batch_mix=None,
) -> dict[str, float]:
    """One pass over `loader`; the returned metrics cover every rank's images. With
    `batch_mix` (see `build_batch_mix`) the loss is on mixed images and labels, while the
    metrics score those predictions against each batch's original labels."""
    device, setup = device or torch.device("cpu"), setup or Distributed()
    set_train_mode(model)
    total_loss, seen = 0.0, 0
    probs, labels = [], []
    bar = tqdm(
        loader, desc=f"epoch {epoch} train", unit="batch", leave=False, disable=not setup.is_main
    )
    for images, targets in bar:
        if batch_mix is not None:  # on the CPU batch; the soft labels travel with the images
            images, soft_targets = batch_mix(images, targets)
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        loss_targets = targets if batch_mix is None else soft_targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits = model(images)
            loss = criterion(logits, loss_targets)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if schedule is not None:
            schedule.after_batch()
        total_loss += loss.item() * len(targets)
        seen += len(targets)
        probs.append(torch.softmax(logits.detach().float(), 1)[:, 1].cpu())
        labels.append(targets.cpu())
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    total_loss, seen = sum_across(setup, total_loss, seen)
    if not math.isfinite(total_loss):  # every rank sees the same sum, so all stop together
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: the mean training loss is "
            f"{total_loss / seen}. The epochs finished before it are kept; resume with a lower "
            "learning rate (--optim.lr) or in float32 (--optim.amp off)"
        )
    y, p = gather_arrays(setup, torch.cat(labels).numpy(), torch.cat(probs).numpy())
    return _summarize(total_loss / seen, y, p)


@torch.inference_mode()
def predict_loader(
    model,
    loader,
    criterion,
    *,
    amp,
    desc,
    device: torch.device | None = None,
    setup: Distributed | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, labels (N,) and prob_fake (N,) over a loader, in eval mode; under DDP each
    rank passes its shard and the results are concatenated across ranks."""
    device, setup = device or torch.device("cpu"), setup or Distributed()
    model.eval()
    total_loss, probs, labels = 0.0, [], []
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not setup.is_main)
    for images, targets in bar:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        total_loss += criterion(logits, targets).item() * len(targets)
        probs.append(torch.softmax(logits, 1)[:, 1].cpu())
        labels.append(targets.cpu())
    y = torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64)
    p = torch.cat(probs).numpy() if probs else np.zeros(0, dtype=np.float32)
    (total_loss,) = sum_across(setup, total_loss)
    y, p = gather_arrays(setup, y, p)
    return total_loss / len(y), y, p


def _summarize(loss: float, labels, probs) -> dict[str, float]:
    metrics = compute_metrics(np.asarray(labels), np.asarray(probs, dtype=float))
    return {"loss": loss, **{k: metrics[k] for k in HISTORY_METRICS if k != "loss"}}


def prepare_data(config: dict[str, Any], run_dir: Path, *, write: bool = True) -> pd.DataFrame:
    """Manifest with splits: reused from the run folder or a split file, else made (seeded, so
    every rank makes the same one) and saved. Only a `write`r saves files and prints."""
    data = config["data"]
    if not data.get("root"):
        raise ValueError("no dataset: set data.root in the config or pass --data.root DIR")
    # The disk-cached scan (keyed by every file's name, size and time): on CIFAKE a fresh scan
    # of 89,080 files takes minutes, longer than a short experiment's training.
    discovery = load_or_build_manifest(data["root"], progress=write)
    if not discovery.skipped.empty and write:
        print(f"skipped {len(discovery.skipped)} files (see {run_dir / 'skipped.csv'})")
        discovery.skipped.to_csv(run_dir / "skipped.csv", index=False)
    saved = run_dir / "splits.csv.gz"
    split_source = saved if saved.is_file() else data.get("splits_file")
    if split_source:
        manifest = load_splits(discovery.manifest, split_source)
    else:
        manifest = assign_splits(
            discovery.manifest, fractions=data["fractions"], seed=config["seed"]
        )
    if write:
        if not saved.is_file():
            save_splits(manifest, saved)
        leaks = find_duplicates(manifest)
        if not leaks.empty and leaks["cross_split"].any():
            print(f"warning: {int(leaks['cross_split'].sum())} duplicate groups cross splits")
        print(summarize_manifest(manifest).to_string())
    return manifest


def build_loaders(config, manifest, data_config, *, train_seed, setup: Distributed | None = None):
    """Train and validation loaders; under DDP each rank gets a disjoint share of both."""
    setup = setup or Distributed()
    data, optim = config["data"], config["optim"]
    root = data["root"]
    augment = AugmentConfig(**config["augment"])
    train_rows = manifest[manifest["split"] == "train"]
    if data.get("max_train_images"):
        train_rows = train_rows.sample(
            n=min(len(train_rows), int(data["max_train_images"])), random_state=config["seed"]
        )
    val_rows = manifest[manifest["split"] == "val"].reset_index(drop=True)
    if setup.enabled:
        val_rows = val_rows.iloc[shard_indices(len(val_rows), setup)]
    sets = {
        "train": ManifestDataset(
            root,
            train_rows,
            build_train_transform(data_config, augment),
            cache_decoded=data["cache_decoded"],
        ),
        "val": ManifestDataset(
            root, val_rows, build_eval_transform(data_config), cache_decoded=data["cache_decoded"]
        ),
    }
    for name, dataset in sets.items():
        if len(dataset) == 0:
            raise ValueError(f"the {name} split is empty")
        if data["cache_decoded"]:
            dataset.preload()
    common = {
        "batch_size": optim["batch_size"],
        "num_workers": data["num_workers"],
        "persistent_workers": False,
        "pin_memory": torch.cuda.is_available(),
    }
    # A last training batch of one image breaks batch norm on a 1x1 feature map: drop the
    # remainder (a different one each epoch) whenever there is more than one batch.
    drop_last = len(sets["train"]) // setup.world_size > optim["batch_size"]
    if setup.enabled:
        # Each rank draws its share of a permutation seeded by (seed, epoch): set_epoch below.
        sampler = torch.utils.data.DistributedSampler(
            sets["train"], num_replicas=setup.world_size, rank=setup.rank, seed=train_seed
        )
        train_loader = torch.utils.data.DataLoader(
            sets["train"], sampler=sampler, drop_last=drop_last, **common
        )
    else:
        generator = torch.Generator().manual_seed(train_seed)
        train_loader = torch.utils.data.DataLoader(
            sets["train"], shuffle=True, generator=generator, drop_last=drop_last, **common
        )
    return train_loader, torch.utils.data.DataLoader(sets["val"], shuffle=False, **common)


def checkpoint_metadata(config, data_config, manifest, metrics=None) -> dict[str, Any]:
    model_cfg = config["model"]
    return {
        "architecture": model_cfg["architecture"],
        "head": model_cfg["head"],
        "stem": model_cfg["stem"],
        "layer4_stride": model_cfg["layer4_stride"],
        "input_filter": model_cfg["input_filter"],
        "data": data_config.to_dict(),
        "training": config,
        "dataset": {
            "root": str(config["data"]["root"]),
            "fingerprint": dataset_fingerprint(manifest),
            "counts": {
                split: {"real": int((g["label"] == 0).sum()), "fake": int((g["label"] == 1).sum())}
                for split, g in manifest.groupby("split")
            },
        },
        "metrics": metrics or {},
    }


def resolve_run_config(
    config_file: Path | None, overrides: list[str], *, resume: bool
) -> dict[str, Any]:
    """The config a run uses: the file plus overrides, or, when resuming, the run's own saved
    config plus overrides (e.g. --optim.epochs 20 to train a finished run for longer)."""
    config = apply_overrides(load_config(config_file), overrides)
    saved = Path(config["out"]) / "config.yaml"
    if resume and saved.is_file():
        config = apply_overrides(load_config(saved), overrides)
        print(
            f"resuming {config['out']} with its saved config"
            + (f" and overrides {' '.join(overrides)}" if overrides else "")
        )
    return config


EpochCallback = Callable[[int, dict[str, Any]], None]


def run(
    config: dict[str, Any], *, resume: bool = False, epoch_callback: EpochCallback | None = None
) -> dict[str, Any]:
    """Train according to `config`; returns the test metrics of the best checkpoint.

    `epoch_callback(epoch, history_row)` is called after each epoch's files are written (an
    Optuna trial reports and may raise to prune there)."""
    device = resolve_device(config.get("device"))
    setup = init_distributed(device)
    if setup.enabled and device.type == "cuda":
        device = torch.device("cuda", setup.local_rank)
    try:
        return _run(config, resume=resume, callback=epoch_callback, device=device, setup=setup)
    finally:
        shutdown_distributed(setup)


def _run(config, *, resume, callback, device, setup: Distributed) -> dict[str, Any]:
    run_dir = Path(config["out"])
    state_path = run_dir / "state.pt"
    if state_path.exists() and not resume:
        raise ValueError(f"{run_dir} already holds a run; pass --resume or choose another --out")
    saved_config = run_dir / "config.yaml"
    previous_optim = (
        load_config(saved_config)["optim"] if resume and saved_config.is_file() else None
    )
    barrier(setup)  # every rank has read the old config before rank 0 rewrites it
    if setup.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(saved_config, dump_config(config))

    seed, optim = int(config["seed"]), config["optim"]
    torch.manual_seed(seed)
    data_config = DataConfig(**config["input"])
    amp = resolve_amp(optim["amp"], device)
    manifest = prepare_data(config, run_dir, write=setup.is_main)
    model = build_model(**_model_options(config["model"]))
    groups = apply_strategy(
        model, config["model"]["strategy"], lr=optim["lr"], backbone_lr=optim.get("backbone_lr")
    )
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(groups, optim)
    criterion = nn.CrossEntropyLoss(label_smoothing=optim["label_smoothing"])
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    train_loader, val_loader = build_loaders(
        config, manifest, data_config, train_seed=seed, setup=setup
    )
    schedule = Schedule(optimizer, optim, steps_per_epoch=len(train_loader))
    batch_mix = build_batch_mix(AugmentConfig(**config["augment"]))

    start_epoch, history, best_loss, bad_epochs = 1, [], math.inf, 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_loss, bad_epochs = state["best_loss"], state["bad_epochs"]
        _log(setup, f"resumed after epoch {state['epoch']} (best val loss {best_loss:.4f})")
        _apply_new_learning_rates(optimizer, optim, previous_optim, setup)

    trained = model
    if setup.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    _log(
        setup,
        f"{config['model']['architecture']} ({config['model']['strategy']}): "
        f"{count_parameters(model):,} parameters, "
        f"{count_parameters(model, trainable_only=True):,} trainable; "
        f"{len(train_loader.dataset)} train / "
        f"{len(manifest[manifest['split'] == 'val'])} val images; device {device}, amp={amp}"
        + (_share_of_each_process(train_loader, setup) if setup.enabled else ""),
    )
    started_run = time.time()
    stopped_early = bad_epochs >= optim["early_stopping_patience"]
    for epoch in range(start_epoch, optim["epochs"] + 1):
        if stopped_early:
            break
        # Seeding per epoch makes a resumed run draw exactly what an uninterrupted one would.
        torch.manual_seed(seed * 1000 + epoch)
        if setup.enabled:
            train_loader.sampler.set_epoch(epoch)
        else:
            train_loader.generator.manual_seed(seed * 1000 + epoch)
        started = time.time()
        lrs = {group.get("name", "all"): group["lr"] for group in optimizer.param_groups}
        train_stats = train_one_epoch(
            trained, train_loader, optimizer, criterion,
            amp=amp, epoch=epoch, device=device, schedule=schedule, scaler=scaler, setup=setup,
            batch_mix=batch_mix,
        )  # fmt: skip
        val_loss, y, p = predict_loader(
            model, val_loader, criterion, amp=amp, desc="val", device=device, setup=setup
        )
        val_stats = _summarize(val_loss, y, p)
        schedule.after_epoch(val_loss)
        improved = val_loss < best_loss
        if improved:
            best_loss, bad_epochs = val_loss, 0
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= optim["early_stopping_patience"]
        history.append(
            {
                "epoch": epoch,
                **_lr_columns(lrs),
                "seconds": round(time.time() - started, 1),
                **{f"train_{k}": v for k, v in train_stats.items()},
                **{f"val_{k}": v for k, v in val_stats.items()},
                "best": improved,
            }
        )
        if setup.is_main:
            metadata = checkpoint_metadata(
                config, data_config, manifest, {"val": val_stats, "epoch": epoch}
            )
            if improved:
                save_checkpoint(run_dir / "best", model, metadata)
            save_checkpoint(run_dir / "last", model, metadata)
            resume_state = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "history": history,
                "best_loss": best_loss,
                "bad_epochs": bad_epochs,
            }
            # History first, state last: a crash in between only repeats this epoch on resume.
            write_atomic(
                run_dir / "history.csv", partial(pd.DataFrame(history).to_csv, index=False)
            )
            write_atomic(state_path, partial(torch.save, resume_state))
        barrier(setup)
        _log(
            setup,
            f"epoch {epoch}: train loss {train_stats['loss']:.4f} acc {train_stats['accuracy']:.4f}"
            f" | val loss {val_loss:.4f} acc {val_stats['accuracy']:.4f} auc {val_stats['roc_auc']}"
            f" | {history[-1]['seconds']}s{' *best' if improved else ''}",
        )
        if callback is not None:
            callback(epoch, history[-1])

    if not setup.is_main:
        return {}
    evaluate = config.get("evaluate_test", True)
    metrics = (
        evaluate_best(config, run_dir, manifest, data_config, device=device) if evaluate else {}
    )
    best_epoch = next((row["epoch"] for row in reversed(history) if row["best"]), None)
    summary = (
        f"done in {time.time() - started_run:.0f} s: best epoch {best_epoch}"
        f"{' (stopped early)' if stopped_early else ''}"
    )
    if metrics:
        summary += (
            f"; test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
            f"AUC {metrics['roc_auc']:.4f} on {metrics['n']} images"
        )
    print(f"{summary} -> {run_dir}", flush=True)
    return metrics


def _model_options(model: dict[str, Any]) -> dict[str, Any]:
    """build_model's arguments (the strategy is applied afterwards)."""
    return {k: v for k, v in model.items() if k != "strategy"}


def _lr_columns(lrs: dict[str, float]) -> dict[str, float]:
    """`lr` is the head's (or the only) rate; other groups get `lr_<group>` columns."""
    names = list(lrs)
    return {"lr": lrs[names[0]], **{f"lr_{name}": lrs[name] for name in names[1:]}}


def _apply_new_learning_rates(optimizer, optim, previous_optim, setup) -> None:
    """On --resume, a learning rate given anew wins over the one the optimiser saved (the
    history's lr columns record the change)."""
    if previous_optim is None:
        return
    for key, group_names in (("lr", ("all", "head")), ("backbone_lr", ("last_stage", "backbone"))):
        new, old = optim.get(key), previous_optim.get(key)
        if new is None or old is None or float(new) == float(old):
            continue
        for group in optimizer.param_groups:
            if group.get("name", "all") in group_names:
                was, group["lr"] = group["lr"], float(new)
                _log(setup, f"{key} set to {new} for {group.get('name', 'all')} (was {was:g})")


def _share_of_each_process(train_loader, setup: Distributed) -> str:
    """Under DDP every process holds the whole training set but draws only its sampler's share
    (rounded up: DistributedSampler repeats an image or two when the count does not divide)."""
    return f", {setup.world_size} processes of {len(train_loader.sampler)} training images each"


def _log(setup: Distributed, message: str) -> None:
    if setup.is_main:
        print(message, flush=True)


def evaluate_best(config, run_dir, manifest, data_config, *, device=None) -> dict[str, Any]:
    """Test-set evaluation of the best checkpoint, written to eval/ and into the checkpoint."""
    device = device or torch.device("cpu")
    model, meta = load_checkpoint(run_dir / "best")
    model = model.to(device, memory_format=torch.channels_last)
    test_rows = manifest[manifest["split"] == "test"]
    if test_rows.empty:
        print("no test split: skipping test evaluation")
        return {}
    dataset = ManifestDataset(config["data"]["root"], test_rows, build_eval_transform(data_config))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=256, num_workers=config["data"]["num_workers"]
    )
    _, y, p = predict_loader(
        model, loader, nn.CrossEntropyLoss(), amp=None, desc="test", device=device
    )
    threshold = meta.get("threshold", 0.5)
    metrics = compute_metrics(y, p, threshold=threshold)
    table = build_predictions_table(
        test_rows["path"], y, p, threshold=threshold, splits=test_rows["split"]
    )
    write_evaluation(run_dir / "eval", table, metrics)
    meta["metrics"]["test"] = metrics
    model = model.to("cpu", memory_format=torch.contiguous_format)
    save_checkpoint(run_dir / "best", model, meta)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a real-vs-fake classifier. Any config key can be overridden as "
        "--section.key value (e.g. --optim.epochs 3 --data.root ../shared/data/cifake).",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: CIFAKE ResNet18)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last complete epoch (its saved config, plus "
        "any overrides given)",
    )
    args, overrides = parser.parse_known_args(argv)
    try:
        run(resolve_run_config(args.config, overrides, resume=args.resume), resume=args.resume)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
