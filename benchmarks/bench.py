"""The performance benchmark: `python -m benchmarks.bench [--out DIR] [--data ROOT]`.

One process, one run, side by side on the same inputs:

- inference images/s of the naive baseline (`eager`: NCHW, fp32, no_grad), the project's `fast`
  engine and ONNX Runtime on the same exported model, at batch 1, 8 and 32, for the shipped
  default model and torchvision ResNet18/ResNet50 at 224 px (random weights); achieved GFLOP/s
  against the machine's FP32 matrix-product peak; the largest P(fake) difference to eager;
- CAM latency per method divided by one forward pass at the same batch size;
- upload-to-verdict and upload-to-heatmap through the Detector (warm, and a cold start in a
  fresh interpreter: import + load + first verdict);
- evaluation over a folder (decode + preprocess + infer) divided by the model alone;
- training images/s on this machine's device;
- peak memory of each;
- with `--data ROOT` (holding cifake/ and faces/): whether the fast engine's verdicts equal the
  baseline's on the shipped models' data.

It prints Markdown tables (`benchmarks.bench_report`) and writes OUT/bench.json and OUT/bench.md.
Targets are reported, not asserted: a noisy machine makes timed assertions flaky, ratios measured
in one run hold better.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_report import render_report, summarize_targets
from forensics.atomic import write_text_atomic
from forensics.measure import (
    PeakMemory,
    cpu_name,
    forward_flops,
    interleaved_seconds,
    matmul_peak_gflops,
    median_seconds,
)

BATCH_SIZES = (1, 8, 32)
ENGINE_ORDER = ("eager", "fast", "onnxruntime")


# ---------------------------------------------------------------------------- inference


def _models(default_checkpoint: Path | None, quick: bool) -> list[tuple[str, torch.nn.Module, int]]:
    """(name, eval model, input size): the shipped default model, then ResNet18/50 at 224."""
    from forensics.checkpoint import load_checkpoint
    from forensics.models import build_model

    models = []
    if default_checkpoint is not None:
        model, meta = load_checkpoint(default_checkpoint)
        models.append(("default model", model.eval(), int(meta["data"]["input_size"])))
    size = 64 if quick else 224
    for architecture in ("resnet18",) if quick else ("resnet18", "resnet50"):
        torch.manual_seed(0)
        models.append((f"{architecture} {size} px", build_model(architecture).eval(), size))
    return models


def bench_inference(
    models, *, batch_sizes, peak_gflops: float, rounds: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per (model, batch size, engine)."""
    from forensics.inference import build_engine

    rows = []
    for name, model, size in models:
        flops = forward_flops(model, (1, 3, size, size))
        engines, memory = {}, {}
        for engine in ENGINE_ORDER:
            log(f"  {name}: building the {engine} engine")
            with PeakMemory() as peak:
                started = time.perf_counter()
                try:
                    engines[engine] = build_engine(engine, model, (1, 3, size, size))
                except RuntimeError as exc:  # ONNX Runtime not installed
                    log(f"  {name}: {exc}")
                    continue
                build_s = time.perf_counter() - started
                engines[engine](torch.zeros(max(batch_sizes), 3, size, size))
            memory[engine] = (build_s, peak.added_mb)
        generator = torch.Generator().manual_seed(0)
        for batch_size in batch_sizes:
            batch = torch.randn(batch_size, 3, size, size, generator=generator)
            reference = _prob_fake(engines["eager"](batch))
            seconds = interleaved_seconds(
                {engine: partial(e, batch) for engine, e in engines.items()},
                rounds=rounds,
            )
            for engine, per_call in seconds.items():
                images_per_s = batch_size / per_call
                gflops = flops * images_per_s / 1e9
                rows.append(
                    {
                        "model": name,
                        "input": size,
                        "batch": batch_size,
                        "engine": engine,
                        "images_per_s": images_per_s,
                        "vs_eager": seconds["eager"] / per_call,
                        "vs_onnxruntime": (
                            seconds["onnxruntime"] / per_call if "onnxruntime" in seconds else None
                        ),
                        "gflops": gflops,
                        "share_of_peak": gflops / peak_gflops,
                        "max_prob_diff": float(
                            np.abs(_prob_fake(engines[engine](batch)) - reference).max()
                        ),
                        "build_s": memory[engine][0],
                        "peak_added_mb": memory[engine][1],
                    }
                )
            log(
                f"  {name} batch {batch_size}: "
                + ", ".join(f"{e} {batch_size / s:.1f} img/s" for e, s in seconds.items())
            )
    return rows


def _prob_fake(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=1)[:, 1].numpy()


# ---------------------------------------------------------------------------- CAM


def bench_cam(
    cases, *, methods_for: Callable[[str], list[str]], repeats: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """CAM seconds per method over one eager forward pass of the same batch (and over the fast
    engine's), for each (name, model, size, batch size) case."""
    from forensics.explain import SLOW_METHODS, compute_cam
    from forensics.inference import EagerEngine, FastEngine
    from forensics.labels import CLASS_INDEX
    from forensics.models import get_cam_target_layer

    rows = []
    for name, model, size, batch_size in cases:
        batch = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(1))
        eager, fast = EagerEngine(model), FastEngine(model, (batch_size, 3, size, size))
        forward = median_seconds(partial(eager, batch), repeats=repeats)
        fast_forward = median_seconds(partial(fast, batch), repeats=repeats)
        layer = get_cam_target_layer(model)
        variants = [(m, True) for m in methods_for(name)] + [("gradcam", False)]
        for method, stop in variants:
            with PeakMemory() as peak:
                cam = partial(
                    compute_cam,
                    model,
                    layer,
                    batch,
                    method=method,
                    batch_size=64,
                    class_index=CLASS_INDEX["fake"],
                    stop_backward=stop,
                )
                seconds = median_seconds(cam, repeats=1 if method in SLOW_METHODS else repeats)
            label = method if stop else "gradcam (full backward)"
            rows.append(
                {
                    "model": name,
                    "batch": batch_size,
                    "method": label,
                    "seconds": seconds,
                    "over_forward": seconds / forward,
                    "over_fast_forward": seconds / fast_forward,
                    "peak_added_mb": peak.added_mb,
                }
            )
            log(f"  {name} batch {batch_size} {label}: {seconds:.3f} s ({seconds / forward:.2f}x)")
    return rows


# ---------------------------------------------------------------------------- the Detector


def _upload_bytes(size: tuple[int, int] = (1024, 768)) -> bytes:
    """A JPEG of the size an analyst might upload (a photograph-like gradient with noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(0, 255, size[0]), np.linspace(0, 255, size[1]))
    pixels = np.stack([x, y, (x + y) / 2], axis=-1) + rng.normal(0, 12, (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


COLD_START_SCRIPT = """
import json, sys, time
started = time.perf_counter()
from forensics import load_detector
imported = time.perf_counter()
detector = load_detector(sys.argv[1] if len(sys.argv) > 1 else None)
loaded = time.perf_counter()
detector.predict(sys.stdin.buffer.read())
verdict = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                  "first_verdict_s": verdict - loaded}))
"""


def bench_detector(checkpoint: Path | None, *, repeats: int) -> dict[str, Any]:
    """Warm upload-to-verdict (without and with the stability check) and upload-to-heatmap
    times, and a cold start in a fresh interpreter: import + load + first verdict, timed inside
    it."""
    from forensics.detector import load_detector

    upload = _upload_bytes()
    with PeakMemory() as peak:
        detector = load_detector(checkpoint)
        verdict_s = median_seconds(
            lambda: detector.predict(upload, stability=False), repeats=repeats
        )
        decision_s = median_seconds(lambda: detector.predict(upload), repeats=repeats)
        heatmap_s = median_seconds(lambda: detector.explain(upload), repeats=repeats)
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", COLD_START_SCRIPT, *([str(checkpoint)] if checkpoint else [])],
        input=upload,
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    wall = time.perf_counter() - started
    cold = json.loads(child.stdout)
    return {
        "upload": "1024x768 JPEG",
        "warm_verdict_s": verdict_s,  # the score and the applicability gate alone
        "warm_decision_s": decision_s,  # every check, stability included (what users get)
        "warm_heatmap_s": heatmap_s,
        "cold_start_s": cold["import_s"] + cold["load_s"] + cold["first_verdict_s"],
        **cold,
        "process_wall_s": wall,  # adds the interpreter's own start-up and exit
        "peak_added_mb": peak.added_mb,
    }


# ---------------------------------------------------------------------------- evaluation


def _synthetic_folder(root: Path, count: int, size: int) -> Path:
    """`count` PNG images of `size` px in real/ and fake/ (CIFAKE's layout and file size)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / ("real", "fake")[index % 2]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    return root


def bench_evaluation(
    checkpoint: Path | None, folder: Path, *, batch_size: int, workers: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Images/s of `predict_rows` over `folder` (decode + preprocess + infer) with each worker
    count, against the fast engine alone on already-preprocessed batches of the same size."""
    from forensics.detector import load_detector
    from forensics.evaluation import predict_rows
    from forensics.scan import build_manifest

    detector = load_detector(checkpoint)
    manifest = build_manifest(folder, progress=False).manifest
    size = int(detector.data_config.input_size)
    batch = torch.randn(batch_size, 3, size, size)
    model_s = median_seconds(lambda: detector.predict_tensor(batch), repeats=5)
    model_rate = batch_size / model_s
    rows = []
    for count in workers:
        # One pass per image, as the model alone makes (the stability check's four more passes
        # per image are a choice of the caller, not overhead of the evaluation loop).
        options = {"batch_size": batch_size, "num_workers": count, "stability": False}
        predict_rows(detector, folder, manifest.head(batch_size), progress=False, **options)
        with PeakMemory() as peak:
            started = time.perf_counter()
            predict_rows(detector, folder, manifest, progress=False, **options)
            rate = len(manifest) / (time.perf_counter() - started)
        rows.append(
            {
                "images": len(manifest),
                "batch": batch_size,
                "workers": count,
                "images_per_s": rate,
                "model_images_per_s": model_rate,
                "over_model": rate / model_rate,
                "peak_added_mb": peak.added_mb,
            }
        )
    return rows


# ---------------------------------------------------------------------------- training


def bench_training(checkpoint: Path, *, images: int, batch_size: int) -> dict[str, Any]:
    """Training images/s of the default model's architecture (AdamW, its amp setting) over
    in-memory images: the optimiser loop without the data path."""
    from forensics.checkpoint import load_checkpoint
    from training.train import resolve_amp, resolve_device, train_one_epoch

    model, meta = load_checkpoint(checkpoint)
    size = int(meta["data"]["input_size"])
    device = resolve_device("auto")
    amp = resolve_amp("auto", device)
    model = model.to(device).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randn(images, 3, size, size, generator=generator),
        torch.randint(0, 2, (images,), generator=generator),
    )
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    run = lambda: train_one_epoch(  # noqa: E731
        model, loader, optimizer, criterion, amp=amp, epoch=1, device=device
    )
    run()  # warm-up epoch: allocator, autocast caches
    with PeakMemory() as peak:
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    return {
        "device": str(device),
        "amp": str(amp).replace("torch.", "") if amp else "off",
        "input": size,
        "batch": batch_size,
        "images": images,
        "images_per_s": images / seconds,
        "peak_added_mb": peak.added_mb,
    }


# ---------------------------------------------------------------------------- agreement


def bench_agreement(
    data_root: Path, *, log: Callable[[str], None], limit: int | None = None
) -> list[dict[str, Any]]:
    """Verdicts of the fast engine against the eager baseline on the shipped models' data: the
    default model on CIFAKE's test split and on every face, the faces model on its own test
    split of the faces (every face would take it minutes at 256 px on two cores). `limit`
    caps the images per case (None: all)."""
    from forensics.checkpoint import DEFAULT_CHECKPOINT
    from forensics.data import load_splits
    from forensics.detector import load_detector
    from forensics.evaluation import predict_labels, predict_rows
    from forensics.scan import load_or_build_manifest

    checkpoints = DEFAULT_CHECKPOINT.parent
    cases = [
        ("default", data_root / "cifake", "test", checkpoints / "default" / "splits.csv.gz"),
        ("default", data_root / "faces", None, None),
        ("faces", data_root / "faces", "test", checkpoints / "faces" / "splits.csv.gz"),
    ]
    rows = []
    for name, folder, split, splits_file in cases:
        if not folder.is_dir() or not (checkpoints / name).is_dir():
            log(f"  skipped {name} on {folder}: not found")
            continue
        manifest = load_or_build_manifest(folder, progress=False).manifest
        if splits_file is not None:
            manifest = load_splits(manifest, splits_file)
        if split is not None:
            manifest = manifest[manifest["split"] == split].reset_index(drop=True)
        manifest = manifest.head(limit) if limit is not None else manifest
        if manifest.empty:
            log(f"  skipped {name} on {folder}: no {split} images")
            continue
        probs = {}
        for engine in ("eager", "fast"):
            detector = load_detector(checkpoints / name, engine=engine)
            verdicts = predict_rows(detector, folder, manifest, stability=False, progress=False)
            probs[engine] = np.array([v.prob_fake for v in verdicts])
        threshold = detector.threshold
        differ = predict_labels(probs["fast"], threshold=threshold) != predict_labels(
            probs["eager"], threshold=threshold
        )
        rows.append(
            {
                "checkpoint": name,
                "data": f"{folder.name} {split or 'all'}",
                "images": len(manifest),
                "verdicts_differ": int(differ.sum()),
                "max_prob_diff": float(np.abs(probs["fast"] - probs["eager"]).max()),
            }
        )
        log(f"  {name} on {folder.name}: {rows[-1]}")
    return rows


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()  # fmt: skip


def _commit() -> str:
    """The short commit hash, with "+changes" when tracked files differ from it."""
    try:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return _git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_benchmark(
    *, out: Path, checkpoint: Path | None, data_root: Path | None, quick: bool, log=print
) -> dict[str, Any]:
    """Run every section, saving OUT/bench.json after each (a crash keeps what was measured),
    then the targets and OUT/bench.md."""
    from forensics.checkpoint import DEFAULT_CHECKPOINT
    from forensics.explain import CAM_METHODS, SLOW_METHODS

    started = time.perf_counter()
    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    out.mkdir(parents=True, exist_ok=True)
    log("machine: FP32 matrix-product peak")
    peak = matmul_peak_gflops(1024 if quick else 2048, seconds=0.5 if quick else 2.0)
    results: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "matmul_peak_gflops": peak,
            "commit": _commit(),
            "quick": quick,
        },
        "agreement": [],
    }

    def save(section: str, value: Any) -> None:
        results[section] = value
        write_text_atomic(out / "bench.json", json.dumps(results, indent=2) + "\n")

    models = _models(checkpoint, quick)
    batch_sizes = (1, 4) if quick else BATCH_SIZES
    log("inference: eager vs fast vs ONNX Runtime")
    save("inference", bench_inference(
        models, batch_sizes=batch_sizes, peak_gflops=peak, rounds=1 if quick else 3, log=log
    ))  # fmt: skip
    log("CAM latency")
    default_model, default_size = models[0][1], models[0][2]
    cam_cases = [("default model", default_model, default_size, b) for b in batch_sizes[:2]]
    cam_cases = cam_cases[:1] if quick else [*cam_cases, ("resnet50 224 px", models[-1][1], 224, 1)]

    def methods_for(name: str) -> list[str]:
        if quick:
            return ["gradcam", "eigencam"]
        # ScoreCAM/AblationCAM run one forward pass per channel: 2048 on ResNet50, minutes.
        return [m for m in CAM_METHODS if name == "default model" or m not in SLOW_METHODS]

    save("cam", bench_cam(cam_cases, methods_for=methods_for, repeats=1 if quick else 5, log=log))
    log("Detector: upload to verdict and heatmap, cold start")
    save("detector", bench_detector(checkpoint, repeats=2 if quick else 10))
    log("evaluation over a folder")
    with tempfile.TemporaryDirectory() as scratch:
        folder = _synthetic_folder(Path(scratch), 64 if quick else 4096, default_size)
        save("evaluation", bench_evaluation(
            checkpoint, folder, batch_size=32 if quick else 128, workers=(0,) if quick else (0, 1)
        ))  # fmt: skip
    log("training")
    save("training", bench_training(
        checkpoint, images=64 if quick else 1024, batch_size=32 if quick else 128
    ))  # fmt: skip
    if data_root is not None:
        log("fast engine vs eager on the shared data")
        save("agreement", bench_agreement(data_root, log=log))
    results["targets"] = summarize_targets(results)
    results["machine"]["seconds"] = time.perf_counter() - started
    save("targets", results["targets"])
    write_text_atomic(out / "bench.md", render_report(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/bench"),
        help="folder for bench.json and bench.md (default: artifacts/bench)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="the model measured through the Detector (default: the shipped one)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder holding cifake/ and faces/: also compare verdicts there",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one round (a smoke test, not figures to quote)",
    )
    args = parser.parse_args(argv)
    results = run_benchmark(
        out=args.out,
        checkpoint=args.checkpoint,
        data_root=args.data,
        quick=args.quick,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(render_report(results))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
