"""Shared fixtures: tiny seeded images, datasets and checkpoints made in tmp_path. No network."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# The suite runs beside other work on small CI machines: one thread keeps timings predictable.
torch.set_num_threads(1)


def make_image(seed: int, *, size: int = 32, fake: bool = False) -> Image.Image:
    """A seeded RGB image; 'fake' ones carry a high-frequency checkerboard a model can learn."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(1, 1, 3)) * np.ones((size, size, 3))
    noise = rng.normal(0, 20, size=(size, size, 3))
    if fake:
        checker = (np.indices((size, size)).sum(axis=0) % 2)[..., None] * 60.0
        base = base * 0.5 + checker
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def trained_simple_cnn_detector(
    images: list[Image.Image], meta: dict, *, lr: float, dropout: float = 0.5
):
    """A Detector on a simple CNN trained here, 60 seeded full-batch Adam steps, on `images`
    (even positions real, odd fake) at `meta`'s input size: a model that has learnt the
    synthetic fakes' checkerboard, for tests whose check needs one."""
    from forensics.detector import Detector
    from forensics.models import build_model
    from forensics.transforms import DataConfig, build_eval_transform

    torch.manual_seed(0)
    model = build_model("simple_cnn", dropout=dropout)
    size = meta["data"]["input_size"]
    transform = build_eval_transform(DataConfig(input_size=size, resize=meta["data"]["resize"]))
    pixels = torch.stack([transform(image) for image in images])
    labels = torch.tensor([i % 2 for i in range(len(images))])
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(pixels), labels).backward()
        optimiser.step()
    return Detector(model.eval(), meta, engine="eager")


def image_bytes(image: Image.Image, fmt: str = "JPEG", **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def write_dataset(
    root: Path, *, per_class: int = 8, size: int = 32, splits: tuple[str, ...] | None = None
) -> Path:
    """root/{real,fake}/*.png, or root/{split}/{real,fake}/*.png when `splits` is given."""
    seed = 0
    for split in splits or (None,):
        for label in ("real", "fake"):
            folder = root / split / label if split else root / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                seed += 1
                make_image(seed, size=size, fake=label == "fake").save(
                    folder / f"{label}_{i:03d}.png"
                )
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Scans and evaluations cache under a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("FORENSICS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """8 real + 8 fake 32x32 PNGs in root/{real,fake}, no split folders."""
    return write_dataset(tmp_path / "data")


@pytest.fixture
def sample_image() -> Image.Image:
    return make_image(123, size=48)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained ResNet18 checkpoint with the default model's stem, at 32 px."""
    from forensics.checkpoint import save_checkpoint
    from forensics.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", stem="compact", layer4_stride=1)
    meta = {
        "architecture": "resnet18",
        "head": "linear",
        "stem": "compact",
        "layer4_stride": 1,
        "data": {"input_size": 32, "resize": 32},
    }
    return save_checkpoint(tmp_path / "ckpt", model, meta)


@pytest.fixture
def shared_data_root() -> Path:
    """The real images in ../shared/data, via FORENSICS_DATA_ROOT (set by .ci/run)."""
    value = os.environ.get("FORENSICS_DATA_ROOT")
    if not value:
        pytest.skip("FORENSICS_DATA_ROOT is not set; integration tests need ../shared/data")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"FORENSICS_DATA_ROOT={root} is not a folder")
    return root
