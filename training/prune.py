"""Prune a trained checkpoint and measure what it buys:

    python -m training.prune --checkpoint DIR --amount 0.1 0.2 0.3 0.4 \
        --method l1_unstructured|ln_structured [--data DIR] [--finetune-epochs N] [--out DIR]

For each amount the checkpoint's model is pruned with `torch.nn.utils.prune` (global L1 over every
Conv2d and Linear weight, or per-layer L2 structured pruning of whole output channels), fine-tuned
on the run's train split with the masks in place (pruned weights stay zero), picked by validation
loss, made permanent (`prune.remove`) and saved to OUT/amount_<a>/. The unpruned checkpoint is the
0.0 row. Per amount the table gives sparsity, non-zero parameters, the saved file's size, CPU
latency and the test metrics; it is written to OUT/pruning.csv and OUT/pruning.md and printed.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune
from tqdm.auto import tqdm

from forensics.atomic import write_atomic, write_text_atomic
from forensics.checkpoint import (
    WEIGHTS_FILE,
    CheckpointError,
    data_config_from_metadata,
    load_checkpoint,
    save_checkpoint,
)
from forensics.data import (
    ManifestDataset,
    assign_splits,
    dataset_fingerprint,
    load_splits,
)
from forensics.evaluation import compute_metrics
from forensics.models import NUM_CLASSES
from forensics.scan import load_or_build_manifest
from forensics.transforms import DataConfig, build_eval_transform
from training.optim import make_optimizer
from training.train import (
    build_loaders,
    predict_loader,
    resolve_amp,
    resolve_device,
    train_one_epoch,
)

METHODS = ("l1_unstructured", "ln_structured")
DEFAULT_AMOUNTS = (0.1, 0.2, 0.3, 0.4)
SPLIT_FILE = "splits.csv.gz"
TABLE_COLUMNS = [
    "amount",
    "pruned_sparsity",
    "overall_sparsity",
    "nonzero_params",
    "zero_channels",
    "file_mb",
    "gzip_mb",
    "latency_ms_b1",
    "images_per_s_b32",
    "accuracy",
    "f1",
    "roc_auc",
]
LATENCY_BATCH = 32
TEST_BATCH = 256

PrunedLayers = list[tuple[nn.Module, str]]


# --------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------


def find_classifier_layer(model: nn.Module) -> nn.Linear:
    """The final Linear layer, whose output units are the classes (real, fake)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features != NUM_CLASSES:
        raise ValueError(f"no final {NUM_CLASSES}-class Linear layer in {type(model).__name__}")
    return linears[-1]


def select_channel_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels structured pruning may remove: every Conv2d and every
    hidden Linear. The classifier is left out: its output channels are the two classes."""
    classifier = find_classifier_layer(model)
    return [
        m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not classifier
    ]


def select_pruned_layers(model: nn.Module, *, method: str) -> PrunedLayers:
    """(module, "weight") pairs that `method` prunes, in module order."""
    if method == "l1_unstructured":
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    elif method == "ln_structured":
        layers = select_channel_layers(model)
    else:
        raise ValueError(f"unknown pruning method {method!r}; valid: {list(METHODS)}")
    return [(module, "weight") for module in layers]


def apply_pruning(model: nn.Module, *, method: str, amount: float) -> PrunedLayers:
    """Attach pruning masks (weight_orig * weight_mask) to `model` in place; returns the pruned
    (module, "weight") pairs. `amount` in (0, 1) is the share of weights (l1_unstructured, over
    all layers together) or of output channels per layer (ln_structured, L2 norm) to zero."""
    if not 0.0 < amount < 1.0:
        raise ValueError(f"amount must be in (0, 1), got {amount}")
    layers = select_pruned_layers(model, method=method)
    if method == "l1_unstructured":
        # Global: a layer with many small weights loses more of them than a sensitive one.
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in layers:
            prune.ln_structured(module, name, amount=amount, n=2, dim=0)
    return layers


def make_pruning_permanent(layers: PrunedLayers) -> None:
    """`prune.remove` on each pair: the masked product becomes the plain `weight` parameter, and
    weight_orig, weight_mask and the forward pre-hook go away."""
    for module, name in layers:
        if prune.is_pruned(module):
            prune.remove(module, name)


def measure_sparsity(model: nn.Module, layers: PrunedLayers) -> dict[str, float | int]:
    """Share of zeros in the pruned layers' weights (as the forward pass sees them, masks
    applied) and in all parameters, plus the parameter counts. Shares are in [0, 1]."""
    pruned_zeros = pruned_total = 0
    for module, name in layers:
        weight = read_effective_weight(module, name)
        pruned_zeros += int((weight == 0).sum())
        pruned_total += weight.numel()
    effective = [
        read_effective_weight(module, name.removesuffix("_orig"))
        for module in model.modules()
        for name, _ in module.named_parameters(recurse=False)
    ]
    total = sum(t.numel() for t in effective)
    nonzero = sum(int(t.count_nonzero()) for t in effective)
    return {
        "pruned_sparsity": pruned_zeros / max(pruned_total, 1),
        "overall_sparsity": 1 - nonzero / max(total, 1),
        "nonzero_params": nonzero,
        "total_params": total,
    }


def read_effective_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The tensor the forward pass uses: `<name>_orig * <name>_mask` while a pruning mask is
    attached (the `<name>` attribute itself is only refreshed at the next forward pass, so it
    is stale right after an optimiser step), else the plain parameter."""
    if hasattr(module, f"{name}_mask"):
        return (getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")).detach()
    return getattr(module, name).detach()


def count_zero_channels(model: nn.Module) -> tuple[int, int]:
    """(all-zero output channels, output channels) over the Conv2d and hidden Linear layers."""
    zero = total = 0
    for module in select_channel_layers(model):
        rows = read_effective_weight(module).flatten(1)
        zero += int((rows == 0).all(dim=1).sum())
        total += rows.shape[0]
    return zero, total


# --------------------------------------------------------------------------------------------
# Data: the checkpoint's own split
# --------------------------------------------------------------------------------------------


def locate_split_file(checkpoint_dir: Path) -> Path | None:
    """The split the checkpoint was trained on: DIR/splits.csv.gz (a published checkpoint) or
    DIR/../splits.csv.gz (a run's best/ or last/); None when neither exists."""
    for candidate in (checkpoint_dir / SPLIT_FILE, checkpoint_dir.parent / SPLIT_FILE):
        if candidate.is_file():
            return candidate
    return None


def prepare_manifest(config: dict[str, Any], checkpoint_dir: Path) -> pd.DataFrame:
    """The dataset's manifest with the checkpoint's train/val/test split: the saved split file,
    else the run's configured one, else `assign_splits` with the run's seed and fractions (the
    same split training made, as long as the dataset has not changed)."""
    data = config["data"]
    manifest = load_or_build_manifest(data["root"]).manifest
    split_file = locate_split_file(checkpoint_dir) or data.get("splits_file")
    if split_file:
        return load_splits(manifest, split_file)
    print(f"no {SPLIT_FILE} next to {checkpoint_dir}: re-deriving the split from the run's seed")
    return assign_splits(
        manifest, fractions=data.get("fractions", (0.8, 0.1, 0.1)), seed=int(config["seed"])
    )


def limit_split(
    manifest: pd.DataFrame, split: str, max_images: int | None, *, seed: int
) -> pd.DataFrame:
    """The manifest with at most `max_images` rows of `split`, a seeded sample (other splits
    untouched); None keeps all. Bounds the time of passes repeated for every amount."""
    rows = manifest["split"] == split
    if max_images is None or rows.sum() <= max_images:
        return manifest
    keep = manifest[rows].sample(n=int(max_images), random_state=seed).index
    return manifest[~rows | manifest.index.isin(keep)].reset_index(drop=True)


def build_test_loader(
    config: dict[str, Any], manifest: pd.DataFrame, data_config: DataConfig
) -> torch.utils.data.DataLoader:
    """The test split through the evaluation transform, decoded once and reused by every row."""
    rows = manifest[manifest["split"] == "test"].reset_index(drop=True)
    if rows.empty:
        raise ValueError("the test split is empty: nothing to report metrics on")
    data = config["data"]
    dataset = ManifestDataset(
        data["root"], rows, build_eval_transform(data_config), cache_decoded=data["cache_decoded"]
    )
    if data["cache_decoded"]:
        dataset.preload()
    return torch.utils.data.DataLoader(
        dataset, batch_size=TEST_BATCH, shuffle=False, num_workers=data["num_workers"]
    )


# --------------------------------------------------------------------------------------------
# Fine-tuning and measuring
# --------------------------------------------------------------------------------------------


def finetune_pruned(
    model: nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    *,
    optim: dict[str, Any],
    lr: float,
    epochs: int,
    seed: int,
    amp: torch.dtype | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Train every parameter of a masked model for `epochs` and keep the state with the lowest
    validation loss; the pruned state itself (epoch 0) is a candidate, so fine-tuning never
    leaves a worse model. The masks stay attached, so pruned weights stay zero throughout.

    Returns best_epoch, val_loss (of the kept state) and val_loss_pruned (before fine-tuning)."""
    device = device or torch.device("cpu")
    criterion = nn.CrossEntropyLoss(label_smoothing=float(optim.get("label_smoothing", 0.0)))
    val_kw = {"amp": amp, "device": device}
    pruned_loss, y, p = predict_loader(model, val_loader, criterion, desc="val (pruned)", **val_kw)
    best = {"epoch": 0, "loss": pruned_loss, "labels": y, "probs": p, "state": None}
    if epochs > 0:
        groups = [{"name": "all", "params": list(model.parameters()), "lr": float(lr)}]
        optimizer = make_optimizer(groups, optim)
        best["state"] = _copy_state(model)
    for epoch in range(1, epochs + 1):
        # Seeded per epoch like training, so a rerun draws the same batches and dropout.
        torch.manual_seed(seed * 1000 + epoch)
        train_loader.generator.manual_seed(seed * 1000 + epoch)
        train_one_epoch(model, train_loader, optimizer, criterion, epoch=epoch, **val_kw)
        loss, y, p = predict_loader(model, val_loader, criterion, desc="val", **val_kw)
        if loss < best["loss"]:
            best = {"epoch": epoch, "loss": loss, "labels": y, "probs": p, "state": None}
            best["state"] = _copy_state(model)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    metrics = compute_metrics(best["labels"], best["probs"])
    val = {"loss": best["loss"], **{k: metrics[k] for k in ("accuracy", "f1", "roc_auc")}}
    return {"best_epoch": best["epoch"], "val": val, "val_loss_pruned": pruned_loss}


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def evaluate_test(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    *,
    threshold: float = 0.5,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """compute_metrics on the test loader, in float32 (no autocast) as the Detector predicts."""
    device = device or torch.device("cpu")
    model = model.to(device)
    _, y, p = predict_loader(
        model, loader, nn.CrossEntropyLoss(), amp=None, desc="test", device=device
    )
    model.to("cpu", memory_format=torch.contiguous_format)
    return {**compute_metrics(y, p, threshold=threshold), "split": "test"}


@torch.inference_mode()
def measure_latencies(
    models: list[nn.Module],
    *,
    input_size: int,
    runs: int = 20,
    batch_size: int = LATENCY_BATCH,
    threads: int | None = 1,
) -> list[dict[str, float]]:
    """CPU speed of each model as the Detector runs it (eval mode, inference_mode, float32):
    median milliseconds per image at batch 1 over `runs` calls, and images per second at
    `batch_size` from the median of max(3, runs // 4) calls, after a short warm-up. The calls
    go round-robin over the models, so load that comes and goes on a shared machine hits
    every model alike instead of skewing whichever was being timed. `threads` (None: torch's
    setting) is fixed while timing: on a busy machine two threads that wait for each other
    give erratic figures (measured here: 150 to 600 img/s for one model), one thread steady
    ones."""
    models = [model.to("cpu").eval() for model in models]
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    single = torch.randn(1, 3, input_size, input_size, generator=generator)
    batch = torch.randn(batch_size, 3, input_size, input_size, generator=generator)

    def time_medians(inputs: torch.Tensor, repeats: int, warmup: int) -> list[float]:
        for model in models:
            for _ in range(warmup):  # first calls pay for allocation and kernel selection
                model(inputs)
        times: list[list[float]] = [[] for _ in models]
        for _ in range(repeats):
            for model, own in zip(models, times, strict=True):
                started = time.perf_counter()
                model(inputs)
                own.append(time.perf_counter() - started)
        return [statistics.median(own) for own in times]

    try:
        ones = time_medians(single, max(runs, 1), warmup=5)
        manys = time_medians(batch, max(3, runs // 4), warmup=2)
    finally:
        torch.set_num_threads(previous_threads)
    return [
        {"latency_ms_b1": 1000 * one, "images_per_s_b32": batch_size / many}
        for one, many in zip(ones, manys, strict=True)
    ]


def measure_file(path: Path) -> dict[str, float]:
    """Size of a weights file on disk and gzip-compressed (level 6), in MB (10^6 bytes): zeros
    cost as much as any number in a dense file, but compress well."""
    compressor, compressed = zlib.compressobj(6), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            compressed += len(compressor.compress(block))
    compressed += len(compressor.flush())
    return {"file_mb": path.stat().st_size / 1e6, "gzip_mb": compressed / 1e6}


def describe_checkpoint(
    model: nn.Module,
    weights: Path,
    test_loader: torch.utils.data.DataLoader,
    *,
    method: str,
    threshold: float,
    device: torch.device | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One table row (without `amount` and latency) for a permanent model and its weights
    file, and the full test metrics."""
    zero_channels, channels = count_zero_channels(model)
    test = evaluate_test(model, test_loader, threshold=threshold, device=device)
    row = {
        **measure_sparsity(model, select_pruned_layers(model, method=method)),
        "zero_channels": zero_channels,
        "channels": channels,
        **measure_file(weights),
        **{k: test[k] for k in ("accuracy", "f1", "roc_auc")},
    }
    return row, test


# --------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------


RUNS_DIR = Path(__file__).resolve().parent / "runs"


def resolve_out_dir(checkpoint: Path, method: str, out: Path | None) -> Path:
    """--out, else training/runs/pruned_<checkpoint>_<method> (outside checkpoints/, which
    ships only light files; runs/ is ignored by git)."""
    if out is not None:
        return out
    name = checkpoint.resolve().name
    if name in ("best", "last"):  # a run's checkpoint: name it after the run
        name = checkpoint.resolve().parent.name
    return RUNS_DIR / f"pruned_{name}_{method}"


def run_pruning(
    checkpoint: Path,
    *,
    amounts: list[float],
    method: str,
    out: Path | None = None,
    data_root: Path | None = None,
    finetune_epochs: int = 1,
    lr: float | None = None,
    batch_size: int | None = None,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    max_test_images: int | None = None,
    latency_runs: int = 20,
    latency_threads: int | None = 1,
    threads: int | None = None,
    device: str | None = "auto",
) -> pd.DataFrame:
    """Prune, fine-tune, save and measure `checkpoint` at each amount; returns the table (the
    unpruned checkpoint first, as amount 0.0) after writing pruning.csv and pruning.md to the
    output folder. `lr` defaults to a tenth of the run's learning rate, as for pretrained
    layers in training.strategies. `threads` (None: torch's setting) bounds the CPU threads of
    fine-tuning and testing."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_pruning(
            checkpoint, amounts=amounts, method=method, out=out, data_root=data_root,
            finetune_epochs=finetune_epochs, lr=lr, batch_size=batch_size,
            max_train_images=max_train_images, max_val_images=max_val_images,
            max_test_images=max_test_images, latency_runs=latency_runs,
            latency_threads=latency_threads, device=device,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


def _run_pruning(
    checkpoint: Path,
    *,
    amounts: list[float],
    method: str,
    out: Path | None,
    data_root: Path | None,
    finetune_epochs: int,
    lr: float | None,
    batch_size: int | None,
    max_train_images: int | None,
    max_val_images: int | None,
    max_test_images: int | None,
    latency_runs: int,
    latency_threads: int | None,
    device: str | None,
) -> pd.DataFrame:
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; valid: {list(METHODS)}")
    bad = [a for a in amounts if not 0.0 < a < 1.0]
    if bad or not amounts:
        raise ValueError(f"--amount values must be in (0, 1), got {bad or 'none'}")
    counts = {
        "--finetune-epochs": (finetune_epochs, 0),
        "--batch-size": (batch_size, 1),
        "--max-train-images": (max_train_images, 1),
        "--max-val-images": (max_val_images, 1),
        "--max-test-images": (max_test_images, 1),
        "--latency-runs": (latency_runs, 1),
        "--latency-threads": (latency_threads, 1),
    }
    for flag, (value, least) in counts.items():
        if value is not None and value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
    base_model, meta = load_checkpoint(checkpoint)
    config = _training_config(meta, data_root, batch_size, max_train_images)
    out = resolve_out_dir(checkpoint, method, out)
    if out.resolve() == checkpoint.resolve():
        raise ValueError("--out must not be the checkpoint folder itself")
    root = Path(config["data"]["root"])
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root} (pass --data DIR)")

    seed, optim = int(config["seed"]), config["optim"]
    lr = float(lr) if lr is not None else float(optim["lr"]) / 10
    torch.manual_seed(seed)
    compute = resolve_device(device)
    amp = resolve_amp(optim.get("amp"), compute)
    data_config = data_config_from_metadata(meta)
    threshold = float(meta.get("threshold", 0.5))
    manifest = prepare_manifest(config, checkpoint)
    fingerprint = meta.get("dataset", {}).get("fingerprint")
    if fingerprint and dataset_fingerprint(manifest) != fingerprint:
        print("warning: the dataset or split differs from the one this checkpoint recorded")
    full_test = int((manifest["split"] == "test").sum())
    manifest = limit_split(manifest, "val", max_val_images, seed=seed)
    manifest = limit_split(manifest, "test", max_test_images, seed=seed)
    train_loader, val_loader = build_loaders(config, manifest, data_config, train_seed=seed)
    test_loader = build_test_loader(config, manifest, data_config)
    common = {"method": method, "threshold": threshold, "device": compute}
    print(
        f"{meta['architecture']} from {checkpoint}: {method} at {amounts}; fine-tuning "
        f"{finetune_epochs} epoch(s) on {len(train_loader.dataset)} images at lr {lr:g}, "
        f"testing on {len(test_loader.dataset)}"
    )

    row, _ = describe_checkpoint(base_model, checkpoint / WEIGHTS_FILE, test_loader, **common)
    rows = [
        {
            "method": method,
            "amount": 0.0,
            **row,
            "val_loss": None,
            "best_epoch": None,
            "checkpoint": str(checkpoint),
        }
    ]
    models = [base_model]
    for amount in tqdm(sorted(set(amounts)), desc="pruning", unit="amount"):
        model, row = prune_and_save(
            base_model, meta, checkpoint, out / f"amount_{amount:g}", (train_loader, val_loader),
            test_loader, config=config, method=method, amount=amount,
            finetune_epochs=finetune_epochs,
            lr=lr, amp=amp, device=compute,
        )  # fmt: skip
        models.append(model)
        rows.append({"method": method, "amount": amount, **row})
    print(f"timing {len(models)} models on the CPU")
    speeds = measure_latencies(
        models, input_size=data_config.input_size, runs=latency_runs, threads=latency_threads
    )
    table = pd.DataFrame([{**row, **speed} for row, speed in zip(rows, speeds, strict=True)])
    table["best_epoch"] = table["best_epoch"].astype("Int64")  # empty for the baseline
    first = ["method", *TABLE_COLUMNS]
    table = table[[*first, *(c for c in table if c not in first)]]
    write_report(
        table,
        out,
        checkpoint=checkpoint,
        method=method,
        finetune=f"{finetune_epochs} epoch(s) on {len(train_loader.dataset)} training images "
        f"at lr {lr:g}",
        latency_threads=latency_threads or torch.get_num_threads(),
        test_images=(len(test_loader.dataset), full_test),
    )
    return table


def prune_and_save(
    base_model: nn.Module,
    meta: dict[str, Any],
    checkpoint: Path,
    target: Path,
    loaders: tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader],
    test_loader: torch.utils.data.DataLoader,
    *,
    config: dict[str, Any],
    method: str,
    amount: float,
    finetune_epochs: int,
    lr: float,
    amp: torch.dtype | None = None,
    device: torch.device | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of `base_model`, fine-tune it with the masks on (`config`: the run's
    training config), make it permanent and save it to `target`; returns the model as loaded
    back from `target` and its table row (without method, amount and latency)."""
    device = device or torch.device("cpu")
    model = copy.deepcopy(base_model)
    # Pruned while contiguous: global_unstructured flattens weights with .view().
    layers = apply_pruning(model, method=method, amount=amount)
    model = model.to(device, memory_format=torch.channels_last)
    tuned = finetune_pruned(
        model, *loaders, optim=config["optim"], lr=lr, epochs=finetune_epochs,
        seed=int(config["seed"]), amp=amp, device=device,
    )  # fmt: skip
    make_pruning_permanent(layers)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    pruned_meta = _pruned_metadata(meta, checkpoint, method, amount, finetune_epochs, lr, tuned)
    # Saved in the source's dtype so file sizes compare like with like; the figures are then
    # taken from the file as loaded, i.e. exactly what a Detector would run.
    half = meta.get("weights_dtype") == "float16"
    save_checkpoint(target, model, pruned_meta, half=half)
    model, pruned_meta = load_checkpoint(target)
    row, test = describe_checkpoint(
        model, target / WEIGHTS_FILE, test_loader, method=method,
        threshold=float(meta.get("threshold", 0.5)), device=device,
    )  # fmt: skip
    pruned_meta["pruning"].update(
        finetune_images=len(loaders[0].dataset),
        sparsity=row["pruned_sparsity"],
        overall_sparsity=row["overall_sparsity"],
        zero_channels=row["zero_channels"],
    )
    pruned_meta["metrics"]["test"] = test
    for key in ("created", "versions", "weights_sha256", "weights_dtype"):
        pruned_meta.pop(key, None)  # set afresh by save_checkpoint
    save_checkpoint(target, model, pruned_meta, half=half)
    extra = {"val_loss": tuned["val"]["loss"], "best_epoch": tuned["best_epoch"]}
    return model, {**row, **extra, "checkpoint": str(target)}


def _training_config(
    meta: dict[str, Any],
    data_root: Path | None,
    batch_size: int | None,
    max_train_images: int | None,
) -> dict[str, Any]:
    """The run's resolved config with the command line's overrides applied."""
    config = copy.deepcopy(meta.get("training"))
    if not isinstance(config, dict) or not {"data", "optim", "augment", "seed"} <= set(config):
        raise CheckpointError(
            "the checkpoint records no training config (metadata 'training'): cannot rebuild "
            "its data split and optimiser"
        )
    if data_root is not None:
        config["data"]["root"] = str(data_root)
    if not config["data"].get("root"):
        raise ValueError("the checkpoint records no dataset root: pass --data DIR")
    if batch_size is not None:
        config["optim"]["batch_size"] = int(batch_size)
    if max_train_images is not None:
        config["data"]["max_train_images"] = int(max_train_images)
    config["data"].setdefault("cache_decoded", False)
    config["data"].setdefault("num_workers", 0)
    return config


def _pruned_metadata(
    meta: dict[str, Any],
    checkpoint: Path,
    method: str,
    amount: float,
    finetune_epochs: int,
    lr: float,
    tuned: dict[str, Any],
) -> dict[str, Any]:
    """The source's metadata with a `pruning` record; its metrics, which describe other
    weights, are replaced by the fine-tuned model's."""
    pruned = {
        k: copy.deepcopy(v)
        for k, v in meta.items()
        if k not in ("created", "versions", "weights_sha256", "weights_dtype", "metrics")
    }
    pruned["pruning"] = {
        "method": method,
        "amount": amount,
        "sparsity": None,  # filled in from the saved file
        "finetune_epochs": finetune_epochs,
        "finetune_lr": lr,
        "best_epoch": tuned["best_epoch"],
        "val_loss_before_finetune": tuned["val_loss_pruned"],
        "source": {"checkpoint": str(checkpoint), "weights_sha256": meta.get("weights_sha256")},
    }
    pruned["metrics"] = {"val": tuned["val"], "epoch": tuned["best_epoch"]}
    return pruned


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def format_table(table: pd.DataFrame) -> str:
    """The table as Markdown: one row per amount, shares as percentages."""
    header = [
        "amount",
        "sparsity (pruned layers)",
        "sparsity (all params)",
        "non-zero params",
        "zero channels",
        "file MB",
        "gzip MB",
        "ms/img @1",
        "img/s @32",
        "accuracy",
        "F1",
        "ROC-AUC",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        cells = [
            str(float(row.amount)),
            f"{100 * row.pruned_sparsity:.1f}%",
            f"{100 * row.overall_sparsity:.1f}%",
            f"{row.nonzero_params:,}",
            f"{row.zero_channels}/{row.channels}",
            f"{row.file_mb:.2f}",
            f"{row.gzip_mb:.2f}",
            f"{row.latency_ms_b1:.2f}",
            f"{row.images_per_s_b32:.0f}",
            f"{row.accuracy:.4f}",
            f"{row.f1:.4f}",
            "n/a" if pd.isna(row.roc_auc) else f"{row.roc_auc:.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    table: pd.DataFrame,
    out: Path,
    *,
    checkpoint: Path,
    method: str,
    finetune: str,
    latency_threads: int,
    test_images: tuple[int, int] | None = None,
) -> None:
    """OUT/pruning.csv (every column) and OUT/pruning.md (the table and how to read it);
    `finetune` says how the pruned models were fine-tuned ("1 epoch(s) on ...")."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "pruning.csv", lambda tmp: table.to_csv(tmp, index=False))
    layers = {
        "l1_unstructured": "every Conv2d and Linear weight, pruned globally by |w| (L1)",
        "ln_structured": "whole output channels of every Conv2d and hidden Linear layer, per "
        "layer by L2 norm (the classifier is kept)",
    }[method]
    notes = [
        f"Source: `{checkpoint}`; method `{method}`: {layers}. Each pruned model was fine-tuned "
        f"for {finetune} with its masks in place, picked by validation loss "
        "(the un-fine-tuned pruned state included), made permanent and saved in the source's "
        "weight dtype; its figures are measured on the saved file as loaded.",
        "File size: a dense safetensors file stores a zero like any other number, so pruning "
        "does not shrink it; only compression (the gzip column) or a sparse format would.",
        "Latency: the dense CPU kernels multiply zeros like other numbers, so pruning alone is "
        f"not expected to speed inference up (measured on {latency_threads} CPU thread(s), "
        "eval mode, torch.inference_mode, float32, after warm-up; median of calls taken "
        "round-robin over the models, so a busy machine slows every row alike).",
    ]
    if test_images is not None:
        used, whole = test_images
        share = "the whole test split" if used == whole else f"a seeded sample of the {whole}"
        notes.append(f"Test metrics: {used} images, {share} (the checkpoint's own split).")
    if method == "ln_structured":
        notes.append(
            "Zero channels: all-zero output channels over the Conv2d and hidden Linear layers. "
            "They stay in the tensors (same shapes, same file size); a smaller, faster model "
            "needs them physically removed (with the matching batch-norm and next-layer "
            "inputs), which this tool does not do."
        )
    text = (
        f"# Pruning: {method}\n\n{format_table(table)}\n\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n"
    )
    write_text_atomic(out / "pruning.md", text)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), like every other bad input here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m training.prune",
        description="Prune a trained checkpoint with torch.nn.utils.prune, fine-tune each pruned "
        "model and report sparsity, file size, CPU latency and test metrics per amount.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    parser.add_argument(
        "--amount",
        type=float,
        nargs="+",
        default=list(DEFAULT_AMOUNTS),
        help="shares to prune, each in (0, 1) (default: 0.1 0.2 0.3 0.4)",
    )
    parser.add_argument("--method", choices=METHODS, default=METHODS[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset root (default: the one it trained on)"
    )
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: training/runs/pruned_<name>_<method>"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="fine-tuning rate (default: the run's lr / 10)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    parser.add_argument(
        "--max-train-images", type=int, default=None, help="fine-tune on a seeded subset"
    )
    parser.add_argument(
        "--max-val-images", type=int, default=None, help="pick by loss on a seeded subset"
    )
    parser.add_argument(
        "--max-test-images",
        type=int,
        default=None,
        help="test on a seeded subset (default: the whole test split)",
    )
    parser.add_argument(
        "--latency-runs", type=int, default=20, help="timed calls at batch 1 (a quarter at 32)"
    )
    parser.add_argument(
        "--latency-threads",
        type=int,
        default=1,
        help="CPU threads while timing (default 1: steady figures on a shared machine; "
        "0: torch's setting)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for fine-tuning and testing (default 0: torch's setting; on a busy "
        "machine 1 can be several times faster)",
    )
    parser.add_argument("--device", default="auto", help="for fine-tuning and testing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        table = run_pruning(
            args.checkpoint,
            amounts=args.amount,
            method=args.method,
            out=args.out,
            data_root=args.data,
            finetune_epochs=args.finetune_epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            max_train_images=args.max_train_images,
            max_val_images=args.max_val_images,
            max_test_images=args.max_test_images,
            latency_runs=args.latency_runs,
            latency_threads=args.latency_threads or None,
            threads=args.threads or None,
            device=args.device,
        )
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = resolve_out_dir(args.checkpoint, args.method, args.out)
    print(format_table(table))
    print(f"-> {out / 'pruning.md'}, {out / 'pruning.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
