"""Residual front ends (model.input_filter): NPR and the SRM high-pass keep the image size, see
no content where there is none, leave a checkpoint's keys alone, and survive every path a model
takes (checkpoint, engines, training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forensics.checkpoint import METADATA_FILE, CheckpointError, load_checkpoint, save_checkpoint
from forensics.detector import Detector
from forensics.models import INPUT_FILTERS, ResidualFilter, build_model
from tests.conftest import image_bytes, make_image


def test_npr_sees_nothing_in_an_image_made_of_2x2_blocks() -> None:
    blocks = torch.rand(1, 3, 8, 8).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.allclose(ResidualFilter("npr")(blocks), torch.zeros_like(blocks))
    noise = torch.rand(1, 3, 17, 33)  # odd sides keep their size too
    residual = ResidualFilter("npr")(noise)
    assert residual.shape == noise.shape and residual.abs().mean() > 0.1
    # Every 2x2 block's top-left pixel is the one kept: its residual is zero.
    assert torch.equal(residual[..., ::2, ::2], torch.zeros_like(residual[..., ::2, ::2]))


def test_the_high_pass_sees_nothing_in_a_flat_image() -> None:
    flat = torch.full((2, 3, 12, 12), 0.7)
    assert torch.allclose(ResidualFilter("highpass")(flat), torch.zeros_like(flat), atol=1e-6)
    noise = torch.rand(2, 3, 12, 12)
    assert ResidualFilter("highpass")(noise).shape == noise.shape
    assert ResidualFilter("highpass")(noise).abs().mean() > 0.1


@pytest.mark.parametrize("architecture", ["resnet18", "simple_cnn"])
@pytest.mark.parametrize("kind", INPUT_FILTERS[1:])
def test_a_filter_keeps_the_checkpoint_keys_and_changes_the_logits(architecture, kind) -> None:
    torch.manual_seed(0)
    plain = build_model(architecture).eval()
    filtered = build_model(architecture, input_filter=kind).eval()
    assert list(filtered.state_dict()) == list(plain.state_dict())  # nothing new to store
    filtered.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(filtered(x), plain(x))


def test_unknown_filters_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="npr"):
        build_model("resnet18", input_filter="sobel")


def _meta(kind: str) -> dict:
    return {"architecture": "resnet18", "head": "linear", "stem": "compact", "layer4_stride": 1,
            "input_filter": kind, "data": {"input_size": 32, "resize": 32}}  # fmt: skip


@pytest.mark.parametrize("kind", INPUT_FILTERS[1:])
def test_a_filtered_checkpoint_round_trips_and_every_engine_agrees(kind, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", stem="compact", layer4_stride=1, input_filter=kind).eval()
    directory = save_checkpoint(tmp_path / "ckpt", model, _meta(kind))
    loaded, meta = load_checkpoint(directory)
    assert meta["input_filter"] == kind
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    data = image_bytes(make_image(4), "PNG")
    probs = [
        Detector(loaded, meta, engine=engine).predict(data, stability=False).prob_fake_raw
        for engine in ("eager", "fast")
    ]
    assert probs[0] == pytest.approx(probs[1], abs=1e-5)


def test_a_checkpoint_naming_an_unknown_filter_is_refused(tmp_path: Path) -> None:
    model = build_model("resnet18", stem="compact", layer4_stride=1)
    directory = save_checkpoint(tmp_path / "ckpt", model, _meta("none"))
    meta = json.loads((directory / METADATA_FILE).read_text())
    (directory / METADATA_FILE).write_text(json.dumps({**meta, "input_filter": "sobel"}))
    with pytest.raises(CheckpointError, match="unknown input filter"):
        load_checkpoint(directory)


def test_training_with_a_filter_records_it(tiny_dataset: Path, tmp_path: Path) -> None:
    from training.train import main

    smoke = Path(__file__).resolve().parent.parent / "training" / "configs" / "smoke.yaml"
    run = tmp_path / "run"
    argv = ["--config", str(smoke), "--data.root", str(tiny_dataset), "--out", str(run),
            "--model.input_filter", "npr"]  # fmt: skip
    assert main(argv) == 0
    _, meta = load_checkpoint(run / "best")
    assert meta["input_filter"] == "npr"
    assert np.isfinite(json.loads((run / "eval" / "metrics.json").read_text())["accuracy"])
