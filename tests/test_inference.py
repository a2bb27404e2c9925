"""Inference engines: the fast path and ONNX Runtime give the eager model's probabilities, on
every architecture and batch size; and CAM backward passes stop at the target layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forensics.explain import CAM_METHODS, compute_cam
from forensics.inference import ENGINES, build_engine, fuse_conv_bn
from forensics.models import build_model, get_cam_target_layer

SIZE = 32
MODELS = {
    "resnet18_compact": {"architecture": "resnet18", "stem": "compact", "layer4_stride": 1},
    "resnet18": {"architecture": "resnet18"},
    "resnet50": {"architecture": "resnet50"},
    "simple_cnn": {"architecture": "simple_cnn"},
}


def _trained_looking(config: dict) -> nn.Module:
    """A model whose batch-norm statistics and affine terms are not the identity, so folding
    them into the convolutions is really tested."""
    torch.manual_seed(0)
    model = build_model(**config)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=1).numpy()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("engine", ["fast", "onnxruntime"])
def test_engines_give_the_eager_probabilities_at_every_batch_size(name: str, engine: str) -> None:
    model = _trained_looking(MODELS[name])
    fast = build_engine(engine, model, (1, 3, SIZE, SIZE))
    if engine == "fast":  # every architecture the project trains is really traced
        assert fast.traced and fast.fallback_reason is None
    eager = build_engine("eager", model, (1, 3, SIZE, SIZE))
    generator = torch.Generator().manual_seed(1)
    for batch_size in (1, 3, 8, 1):  # a new shape after warm-up, then the first one again
        batch = torch.randn(batch_size, 3, SIZE, SIZE, generator=generator)
        expected, got = _probabilities(eager(batch)), _probabilities(fast(batch))
        assert got.shape == (batch_size, 2)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_fast_engine_keeps_the_caller_model_untouched() -> None:
    model = _trained_looking(MODELS["resnet18"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build_engine("fast", model, (1, 3, SIZE, SIZE))
    assert model.training is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.conv1.weight.is_contiguous()  # still NCHW: the CAM path uses it as it is


def test_fuse_conv_bn_folds_every_batch_norm() -> None:
    model = _trained_looking(MODELS["resnet18"])
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    batch = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(fused(batch), model(batch), atol=1e-4, rtol=1e-4)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown inference engine"):
        build_engine("tensorrt", nn.Linear(2, 2), (1, 2))
    assert set(ENGINES) == {"fast", "eager", "onnxruntime"}


class _SignFlip(nn.Module):
    """Branches in Python on a value: a trace would freeze the branch the example took (the
    zeros example: `-y`) and answer every batch that way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        nn.init.constant_(self.conv.weight, 0.1)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        return y if bool(y.sum() > 0) else -y


class _ThroughDLPack(nn.Module):
    """Hands its features to another library and back through DLPack: the tracer loses track
    of the data and refuses (the output does not depend on the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        return torch.from_dlpack(y.contiguous())


@pytest.mark.parametrize(
    ("model_class", "reason"),
    [(_SignFlip, "UntraceableError: the tracer warned: Converting a tensor to a Python boolean"),
     (_ThroughDLPack, "RuntimeError: output 1")],
)  # fmt: skip
def test_a_model_torchscript_cannot_trace_falls_back_to_eager_speed_ups(
    model_class: type[nn.Module], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = model_class().eval()
    with caplog.at_level("WARNING", logger="forensics.inference"):
        engine = build_engine("fast", model, (1, 3, 8, 8))
    assert engine.traced is False
    assert engine.fallback_reason.startswith(reason)
    # Logged once, with the reason.
    records = [r for r in caplog.records if r.name == "forensics.inference"]
    assert len(records) == 1 and engine.fallback_reason in records[0].getMessage()
    for sign in (1.0, -1.0):  # both of _SignFlip's branches
        batch = sign * torch.ones(2, 3, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(engine(batch), model(batch))


def test_a_traced_fast_engine_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="forensics.inference"):
        engine = build_engine("fast", _trained_looking(MODELS["simple_cnn"]), (1, 3, SIZE, SIZE))
    assert engine.traced and not caplog.records


# ---------------------------------------------------------------- CAM backward stops early


@pytest.mark.parametrize("method", [m for m in CAM_METHODS if m not in {"scorecam", "ablationcam"}])
def test_cam_heatmaps_are_unchanged_by_stopping_the_backward_pass(method) -> None:
    model = _trained_looking(MODELS["resnet18"])
    layer = get_cam_target_layer(model)
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    stopped = compute_cam(model, layer, batch, method=method, class_index=1)
    full = compute_cam(model, layer, batch, method=method, class_index=1, stop_backward=False)
    np.testing.assert_allclose(stopped, full, atol=1e-5)


def test_gradcam_backward_never_reaches_the_first_convolution() -> None:
    model = _trained_looking(MODELS["resnet50"])
    reached = []
    model.conv1.register_full_backward_hook(lambda *_: reached.append(True))
    model.layer4[0].register_full_backward_hook(lambda *_: reached.append(True))
    flags = [p.requires_grad for p in model.parameters()]
    heatmap = compute_cam(
        model, get_cam_target_layer(model), torch.randn(1, 3, 64, 64), class_index=1
    )
    assert heatmap.shape == (1, 64, 64)
    assert reached == []  # neither the stem nor the stage's first block ran backward
    assert [p.requires_grad for p in model.parameters()] == flags  # every flag restored
    assert all(p.grad is None for p in model.parameters())


def test_eigencam_projection_matches_the_librarys_full_svd() -> None:
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from forensics.explain import first_component_projection

    rng = np.random.default_rng(0)
    for shape in [(2, 512, 4, 4), (1, 2048, 7, 7), (3, 64, 16, 16), (1, 128, 2, 40)]:
        activations = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
        expected = get_2d_projection(activations)
        np.testing.assert_allclose(first_component_projection(activations), expected, atol=1e-4)
