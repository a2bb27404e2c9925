"""Train a real-vs-fake classifier: `python -m training.train --config FILE [--key value ...]`.

A run folder holds the resolved `config.yaml`, `splits.csv.gz`, `history.csv` (one row per
epoch), `best/` (the checkpoint with the lowest validation loss), `state.pt` (everything needed
to resume: model, optimiser, scheduler, early-stopping state) and `eval/` (test metrics and
predictions of the best checkpoint). Every file is written atomically, so `--resume` after a
crash or `kill -9` continues from the last complete epoch and ends where an uninterrupted run
would: each epoch's randomness is seeded from (seed, epoch), not carried over.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
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
    build_manifest,
    dataset_fingerprint,
    find_duplicates,
    load_splits,
    save_splits,
    summarize_manifest,
)
from forensics.evaluation import build_predictions_table, compute_metrics, write_evaluation
from forensics.models import build_model, count_parameters
from forensics.transforms import (
    AugmentConfig,
    DataConfig,
    build_eval_transform,
    build_train_transform,
)
from training.config import apply_overrides, dump_config, load_config

HISTORY_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")


def resolve_amp(setting: Any) -> torch.dtype | None:
    """bf16 autocast where it helps: measured ~2x faster training on this project's CPU."""
    if setting in (False, None, "off"):
        return None
    if setting in ("bf16", "auto"):
        if setting == "auto" and not torch.cpu._is_avx512_bf16_supported():
            return None
        return torch.bfloat16
    raise ValueError(f"unknown amp setting {setting!r}; valid: auto, bf16, off")


def make_optimizer(model: nn.Module, optim: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kinds = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
    if optim["optimizer"] not in kinds:
        raise ValueError(f"unknown optimizer {optim['optimizer']!r}; valid: {sorted(kinds)}")
    return kinds[optim["optimizer"]](params, lr=optim["lr"], weight_decay=optim["weight_decay"])


def make_scheduler(optimizer: torch.optim.Optimizer, optim: dict[str, Any]):
    if optim["scheduler"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=optim["plateau_factor"], patience=optim["plateau_patience"]
        )
    if optim["scheduler"] in ("none", None):
        return None
    raise ValueError(f"unknown scheduler {optim['scheduler']!r}; valid: plateau, none")


def train_one_epoch(model, loader, optimizer, criterion, *, amp, epoch) -> dict[str, float]:
    model.train()
    total_loss, seen = 0.0, 0
    probs, labels = [], []
    bar = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", leave=False)
    for images, targets in bar:
        images = images.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(images)
            loss = criterion(logits, targets)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(targets)
        seen += len(targets)
        probs.append(torch.softmax(logits.detach().float(), 1)[:, 1])
        labels.append(targets)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
    return _summarize(total_loss / seen, torch.cat(labels), torch.cat(probs))


@torch.inference_mode()
def predict_loader(model, loader, criterion, *, amp, desc) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, labels (N,) and prob_fake (N,) over a loader, in eval mode."""
    model.eval()
    total_loss, probs, labels = 0.0, [], []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False):
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(images)
        logits = logits.float()
        total_loss += criterion(logits, targets).item() * len(targets)
        probs.append(torch.softmax(logits, 1)[:, 1])
        labels.append(targets)
    y, p = torch.cat(labels), torch.cat(probs)
    return total_loss / len(y), y.numpy(), p.numpy()


def _summarize(loss: float, labels, probs) -> dict[str, float]:
    metrics = compute_metrics(np.asarray(labels), np.asarray(probs, dtype=float))
    return {"loss": loss, **{k: metrics[k] for k in HISTORY_METRICS if k != "loss"}}


def prepare_data(config: dict[str, Any], run_dir: Path) -> pd.DataFrame:
    """Manifest with splits: reused from the run folder or a split file, else made and saved."""
    data = config["data"]
    if not data.get("root"):
        raise ValueError("no dataset: set data.root in the config or pass --data.root DIR")
    discovery = build_manifest(data["root"])
    if not discovery.skipped.empty:
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
    if not saved.is_file():
        save_splits(manifest, saved)
    leaks = find_duplicates(manifest)
    if not leaks.empty and leaks["cross_split"].any():
        print(f"warning: {int(leaks['cross_split'].sum())} duplicate groups cross splits")
    print(summarize_manifest(manifest).to_string())
    return manifest


def build_loaders(config, manifest, data_config, *, train_seed):
    data, optim = config["data"], config["optim"]
    root = data["root"]
    augment = AugmentConfig(**config["augment"])
    train_rows = manifest[manifest["split"] == "train"]
    if data.get("max_train_images"):
        train_rows = train_rows.sample(
            n=min(len(train_rows), int(data["max_train_images"])), random_state=config["seed"]
        )
    sets = {
        "train": ManifestDataset(
            root,
            train_rows,
            build_train_transform(data_config, augment),
            cache_decoded=data["cache_decoded"],
        ),
        "val": ManifestDataset(
            root,
            manifest[manifest["split"] == "val"],
            build_eval_transform(data_config),
            cache_decoded=data["cache_decoded"],
        ),
    }
    for name, dataset in sets.items():
        if len(dataset) == 0:
            raise ValueError(f"the {name} split is empty")
        if data["cache_decoded"]:
            dataset.preload()
    generator = torch.Generator().manual_seed(train_seed)
    common = {
        "batch_size": optim["batch_size"],
        "num_workers": data["num_workers"],
        "persistent_workers": False,
    }
    return (
        torch.utils.data.DataLoader(sets["train"], shuffle=True, generator=generator, **common),
        torch.utils.data.DataLoader(sets["val"], shuffle=False, **common),
    )


def checkpoint_metadata(config, data_config, manifest, metrics=None) -> dict[str, Any]:
    model_cfg = config["model"]
    return {
        "architecture": model_cfg["architecture"],
        "head": model_cfg["head"],
        "stem": model_cfg["stem"],
        "layer4_stride": model_cfg["layer4_stride"],
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


def run(config: dict[str, Any], *, resume: bool = False) -> dict[str, Any]:
    """Train according to `config`; returns the test metrics of the best checkpoint."""
    run_dir = Path(config["out"])
    state_path = run_dir / "state.pt"
    if state_path.exists() and not resume:
        raise ValueError(f"{run_dir} already holds a run; pass --resume or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_config = run_dir / "config.yaml"
    previous_lr = (
        load_config(saved_config)["optim"]["lr"] if resume and saved_config.is_file() else None
    )
    write_text_atomic(saved_config, dump_config(config))

    seed, optim = int(config["seed"]), config["optim"]
    torch.manual_seed(seed)
    data_config = DataConfig(**config["input"])
    amp = resolve_amp(optim["amp"])
    manifest = prepare_data(config, run_dir)
    model = build_model(**config["model"]).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, optim)
    scheduler = make_scheduler(optimizer, optim)
    criterion = nn.CrossEntropyLoss(label_smoothing=optim["label_smoothing"])

    start_epoch, history, best_loss, bad_epochs = 1, [], math.inf, 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_loss, bad_epochs = state["best_loss"], state["bad_epochs"]
        print(f"resumed after epoch {state['epoch']} (best val loss {best_loss:.4f})")
        if previous_lr is not None and float(optim["lr"]) != float(previous_lr):
            # The optimiser's saved state carries the old rate; an explicit new one wins (the
            # history's lr column records the change).
            was = optimizer.param_groups[0]["lr"]
            for group in optimizer.param_groups:
                group["lr"] = float(optim["lr"])
            print(f"learning rate set to {optim['lr']} (the optimiser was at {was:g})")

    train_loader, val_loader = build_loaders(config, manifest, data_config, train_seed=seed)
    print(
        f"{config['model']['architecture']}: {count_parameters(model):,} parameters, "
        f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val images, amp={amp}"
    )
    stopped_early = bad_epochs >= optim["early_stopping_patience"]
    for epoch in range(start_epoch, optim["epochs"] + 1):
        if stopped_early:
            break
        # Seeding per epoch makes a resumed run draw exactly what an uninterrupted one would.
        torch.manual_seed(seed * 1000 + epoch)
        train_loader.generator.manual_seed(seed * 1000 + epoch)
        started = time.time()
        train_stats = train_one_epoch(
            model, train_loader, optimizer, criterion, amp=amp, epoch=epoch
        )
        val_loss, y, p = predict_loader(model, val_loader, criterion, amp=amp, desc="val")
        val_stats = _summarize(val_loss, y, p)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step(val_loss)
        improved = val_loss < best_loss
        if improved:
            best_loss, bad_epochs = val_loss, 0
            save_checkpoint(
                run_dir / "best",
                model,
                checkpoint_metadata(
                    config, data_config, manifest, {"val": val_stats, "epoch": epoch}
                ),
            )
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= optim["early_stopping_patience"]
        history.append(
            {
                "epoch": epoch,
                "lr": lr,
                "seconds": round(time.time() - started, 1),
                **{f"train_{k}": v for k, v in train_stats.items()},
                **{f"val_{k}": v for k, v in val_stats.items()},
                "best": improved,
            }
        )
        resume_state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "history": history,
            "best_loss": best_loss,
            "bad_epochs": bad_epochs,
        }
        # History first, state last: a crash in between only repeats this epoch on resume.
        write_atomic(run_dir / "history.csv", partial(pd.DataFrame(history).to_csv, index=False))
        write_atomic(state_path, partial(torch.save, resume_state))
        print(
            f"epoch {epoch}: train loss {train_stats['loss']:.4f} acc {train_stats['accuracy']:.4f}"
            f" | val loss {val_loss:.4f} acc {val_stats['accuracy']:.4f} auc {val_stats['roc_auc']}"
            f" | {history[-1]['seconds']}s{' *best' if improved else ''}",
            flush=True,
        )

    return evaluate_best(
        config, run_dir, manifest, data_config, amp=amp, stopped_early=stopped_early
    )


def evaluate_best(config, run_dir, manifest, data_config, *, amp, stopped_early) -> dict[str, Any]:
    """Test-set evaluation of the best checkpoint, written to eval/ and into the checkpoint."""
    model, meta = load_checkpoint(run_dir / "best")
    model = model.to(memory_format=torch.channels_last)
    test_rows = manifest[manifest["split"] == "test"]
    if test_rows.empty:
        print("no test split: skipping test evaluation")
        return {}
    dataset = ManifestDataset(config["data"]["root"], test_rows, build_eval_transform(data_config))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=256, num_workers=config["data"]["num_workers"]
    )
    _, y, p = predict_loader(model, loader, nn.CrossEntropyLoss(), amp=None, desc="test")
    threshold = meta.get("threshold", 0.5)
    metrics = compute_metrics(y, p, threshold=threshold)
    table = build_predictions_table(
        test_rows["path"], y, p, threshold=threshold, splits=test_rows["split"]
    )
    write_evaluation(run_dir / "eval", table, metrics)
    meta["metrics"]["test"] = metrics
    save_checkpoint(run_dir / "best", model.to(memory_format=torch.contiguous_format), meta)
    best_epoch = meta["metrics"].get("epoch")
    print(
        f"done: best epoch {best_epoch}{' (stopped early)' if stopped_early else ''}; "
        f"test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
        f"AUC {metrics['roc_auc']:.4f} on {metrics['n']} images -> {run_dir}"
    )
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
