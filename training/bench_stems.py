"""Measure training throughput of ResNet stems and input sizes on this machine.

    python -m training.bench_stems [--batch-size 128] [--steps 3] [--out CSV]

Prints, for each candidate, the layer4 feature-map size (Grad-CAM's resolution) and images per
second for one optimiser step in float32 and with bfloat16 autocast; `--out` also records them
as CSV. The README's table for "Choosing the default model" and the stem figures in the default
model's card come from the record `training/results/bench_stems.csv` (`read_record`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from forensics.models import build_model, get_cam_target_layer

RECORD = Path(__file__).resolve().parent / "results" / "bench_stems.csv"
RECORD_COLUMNS = ["stem", "layer4_stride", "input", "layer4_map", "fp32_img_s", "bf16_img_s"]

CANDIDATES = [
    # (stem, layer4_stride, input size)
    ("imagenet", 2, 32),
    ("cifar", 2, 32),
    ("compact", 1, 32),
    ("imagenet", 1, 64),
    ("imagenet", 2, 128),
]


def measure(
    stem: str, layer4_stride: int, size: int, *, batch_size: int, steps: int, bf16: bool
) -> tuple[tuple[int, int], float]:
    torch.manual_seed(0)
    model = build_model("resnet18", stem=stem, layer4_stride=layer4_stride)
    model = model.to(memory_format=torch.channels_last).train()
    shapes = []
    hook = get_cam_target_layer(model).register_forward_hook(
        lambda _m, _i, out: shapes.append(tuple(out.shape[-2:]))
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (batch_size,))
    elapsed = 0.0
    for step in range(steps + 1):  # the first step warms up and is not timed
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        if step:
            elapsed += time.perf_counter() - started
    hook.remove()
    return shapes[0], batch_size * steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.bench_stems", description=__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as CSV")
    args = parser.parse_args(argv)
    rows = []
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"bf16 supported: {torch.cpu._is_avx512_bf16_supported()}"
    )
    print(
        f"{'stem':10s} {'l4 stride':>9s} {'input':>6s} {'layer4 map':>10s} "
        f"{'fp32 img/s':>11s} {'bf16 img/s':>11s}"
    )
    for stem, stride, size in CANDIDATES:
        shape, fp32 = measure(
            stem, stride, size, batch_size=args.batch_size, steps=args.steps, bf16=False
        )
        _, bf16 = measure(
            stem, stride, size, batch_size=args.batch_size, steps=args.steps, bf16=True
        )
        print(
            f"{stem:10s} {stride:>9d} {size:>6d} {f'{shape[0]}x{shape[1]}':>10s} "
            f"{fp32:>11.0f} {bf16:>11.0f}",
            flush=True,
        )
        rows.append([stem, stride, size, f"{shape[0]}x{shape[1]}", round(fp32), round(bf16)])
    if args.out is not None:
        pd.DataFrame(rows, columns=RECORD_COLUMNS).to_csv(args.out, index=False)
        print(f"wrote {args.out}")


def read_record(path: Path = RECORD) -> pd.DataFrame:
    """The recorded throughput table (one row per candidate, RECORD_COLUMNS)."""
    table = pd.read_csv(path)
    missing = set(RECORD_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    return table


def recorded_throughput(stem: str, layer4_stride: int, size: int, *, path: Path = RECORD) -> int:
    """bfloat16-autocast training images per second recorded for one candidate."""
    table = read_record(path)
    row = table[(table["stem"] == stem) & (table["layer4_stride"] == layer4_stride)
                & (table["input"] == size)]  # fmt: skip
    if len(row) != 1:
        raise ValueError(
            f"{path} has no single row for stem {stem}, stride {layer4_stride}, {size}"
        )
    return int(row["bf16_img_s"].iloc[0])


if __name__ == "__main__":
    main()
