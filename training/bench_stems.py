"""Measure training throughput of ResNet stems and input sizes on this machine.

    python -m training.bench_stems [--batch-size 128] [--steps 3]

Prints, for each candidate, the layer4 feature-map size (Grad-CAM's resolution) and images per
second for one optimiser step in float32 and with bfloat16 autocast. The README's table for
"Choosing the default model" comes from this command.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from forensics.models import build_model, get_cam_target_layer

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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
