"""Model registry: architectures, heads, stems, CAM target layers and weight loading (offline)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from forensics.models import (
    ARCHITECTURES,
    HEADS,
    STEMS,
    WeightsUnavailableError,
    build_head,
    build_model,
    count_parameters,
    get_cam_target_layer,
)

BACKBONE_WIDTH = {"resnet18": 512, "resnet50": 2048}
# How much each stem shrinks the input before layer1 (imagenet: 7x7/2 conv + pool; compact:
# 3x3/1 conv + pool; cifar: 3x3/1 conv, no pool).
STEM_FACTOR = {"imagenet": 4, "compact": 2, "cifar": 1}


def _logits(model: nn.Module, size: int = 32, n: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model.eval()(torch.randn(n, 3, size, size))


def _cam_map_size(model: nn.Module, size: int = 32) -> tuple[int, int]:
    seen: list[tuple[int, int]] = []
    handle = get_cam_target_layer(model).register_forward_hook(
        lambda _m, _i, out: seen.append(tuple(out.shape[-2:]))
    )
    try:
        _logits(model, size, n=1)
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------------------- build_model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_gives_two_logits_per_image(architecture: str) -> None:
    model = build_model(architecture)
    logits = _logits(model, n=3)
    assert logits.shape == (3, 2)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
@pytest.mark.parametrize("head", HEADS)
def test_resnet_heads_give_two_logits(architecture: str, head: str) -> None:
    model = build_model(architecture, head=head)
    assert _logits(model, n=2).shape == (2, 2)
    width = BACKBONE_WIDTH[architecture]
    expected = {
        "linear": [(width, 2)],
        "mlp": [(width, 1000), (1000, 500), (500, 100), (100, 2)],  # the published head
        "small": [(width, 256), (256, 2)],
    }[head]
    assert _linear_shapes(model.fc) == expected


def test_mlp_head_has_relu_and_dropout_between_layers() -> None:
    head = build_head("mlp", 16)
    kinds = [type(m) for m in head]
    assert kinds.count(nn.ReLU) == 3
    assert kinds.count(nn.Dropout) == 3
    assert isinstance(head[-1], nn.Linear) and head[-1].out_features == 2


def test_simple_cnn_logits_do_not_depend_on_input_size() -> None:
    model = build_model("simple_cnn")
    assert _logits(model, size=32).shape == (2, 2)
    assert _logits(model, size=64).shape == (2, 2)


def test_build_is_deterministic_under_a_seed() -> None:
    torch.manual_seed(7)
    a = build_model("resnet18", stem="compact")
    torch.manual_seed(7)
    b = build_model("resnet18", stem="compact")
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name


# ------------------------------------------------------------------------ stems and strides


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("layer4_stride", [1, 2])
def test_stem_and_layer4_stride_set_the_cam_map_size(
    architecture: str, stem: str, layer4_stride: int
) -> None:
    model = build_model(architecture, stem=stem, layer4_stride=layer4_stride)
    # layer2, layer3 halve; layer4 halves only with stride 2.
    side = max(1, 32 // (STEM_FACTOR[stem] * 4 * layer4_stride))
    assert _cam_map_size(model, 32) == (side, side)
    assert _logits(model).shape == (2, 2)


@pytest.mark.parametrize(
    ("stem", "layer4_stride", "side"),
    [("imagenet", 2, 1), ("compact", 1, 4), ("cifar", 2, 4), ("compact", 2, 2), ("cifar", 1, 8)],
)
def test_resnet18_cam_map_at_32px(stem: str, layer4_stride: int, side: int) -> None:
    model = build_model("resnet18", stem=stem, layer4_stride=layer4_stride)
    assert _cam_map_size(model, 32) == (side, side)


def test_non_imagenet_stems_replace_the_first_conv() -> None:
    imagenet = build_model("resnet18")
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    compact = build_model("resnet18", stem="compact")
    assert compact.conv1.kernel_size == (3, 3) and compact.conv1.stride == (1, 1)
    assert isinstance(compact.maxpool, nn.MaxPool2d)
    cifar = build_model("resnet18", stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3)
    assert isinstance(cifar.maxpool, nn.Identity)


def test_simple_cnn_cam_layer_is_the_last_conv_block() -> None:
    model = build_model("simple_cnn")
    layer = get_cam_target_layer(model)
    assert any(isinstance(m, nn.Conv2d) and m.out_channels == 128 for m in layer.modules())
    assert _cam_map_size(model, 32) == (4, 4)


def test_cam_target_layer_of_a_resnet_is_the_last_block() -> None:
    model = build_model("resnet18")
    assert get_cam_target_layer(model) is model.layer4[-1]


def test_cam_target_layer_unknown_model_raises() -> None:
    with pytest.raises(ValueError, match="Sequential"):
        get_cam_target_layer(nn.Sequential(nn.Linear(2, 2)))


# ------------------------------------------------------------------------------- bad names


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"architecture": "vgg16"}, ARCHITECTURES),
        ({"architecture": "resnet18", "head": "huge"}, HEADS),
        ({"architecture": "resnet50", "head": "huge"}, HEADS),
        ({"architecture": "resnet18", "stem": "tiny"}, STEMS),
    ],
)
def test_unknown_names_raise_value_error_naming_the_valid_ones(kwargs, names) -> None:
    architecture = kwargs.pop("architecture")
    with pytest.raises(ValueError) as info:
        build_model(architecture, **kwargs)
    message = str(info.value)
    assert all(name in message for name in names), message


@pytest.mark.parametrize("stride", [0, 3, 4])
def test_bad_layer4_stride_raises(stride: int) -> None:
    with pytest.raises(ValueError, match="layer4_stride"):
        build_model("resnet18", layer4_stride=stride)


def test_unknown_head_in_build_head_raises() -> None:
    with pytest.raises(ValueError, match="linear"):
        build_head("transformer", 8)


# ------------------------------------------------------------------------- pretrained weights


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty torch hub cache and a 'network' that always fails, without touching the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # set_dir writes torch.hub's module global; monkeypatch restores it afterwards.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(tmp_path / "hub"))
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append("download attempted")
        raise urllib.error.URLError("network is blocked in tests")

    from torchvision.models import _api

    monkeypatch.setattr(_api.WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(_api, "load_state_dict_from_url", refuse, raising=False)
    return calls


@pytest.mark.parametrize("architecture", ["resnet18", "resnet50"])
def test_imagenet_weights_unavailable_offline(architecture: str, offline_hub, tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        build_model(architecture, weights="imagenet")
    message = str(info.value)
    assert offline_hub, "the weight download was never attempted"
    assert architecture in message
    assert str(tmp_path / "hub") in message  # says where it looked
    assert "weights=None" in message  # and what to do instead
    assert "\n" not in message
    assert message.endswith(".") and message.count(". ") == 0  # one sentence


def test_simple_cnn_has_no_imagenet_weights(offline_hub) -> None:
    with pytest.raises(WeightsUnavailableError, match="simple_cnn"):
        build_model("simple_cnn", weights="imagenet")
    assert not offline_hub  # refused before any download attempt


def _torchvision_state(seed: int, factory=torchvision.models.resnet18) -> dict[str, torch.Tensor]:
    """A torchvision-format state dict with non-default BatchNorm statistics."""
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in factory(weights=None).state_dict().items()}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            state[key] = torch.rand_like(value) + 0.5
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("stem", ["imagenet", "compact"])
def test_weights_from_a_local_state_dict(tmp_path: Path, suffix: str, stem: str) -> None:
    state = _torchvision_state(123)
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(999)
    fresh = build_model("resnet18", stem=stem)
    torch.manual_seed(999)
    loaded = build_model("resnet18", weights=path, stem=stem)
    for key in (
        "layer1.0.conv1.weight",
        "layer4.1.bn2.running_var",
        "layer3.0.downsample.0.weight",
    ):
        assert torch.equal(loaded.state_dict()[key], state[key]), key
        assert not torch.equal(fresh.state_dict()[key], state[key]), key
    # The 1000-class ImageNet classifier is replaced by a two-class head.
    assert loaded.fc.out_features == 2
    if stem == "imagenet":
        assert torch.equal(loaded.conv1.weight, state["conv1.weight"])
    else:
        assert loaded.conv1.weight.shape != state["conv1.weight"].shape
    assert _logits(loaded).shape == (2, 2)


def test_weights_path_as_string(tmp_path: Path) -> None:
    state = _torchvision_state(5)
    path = tmp_path / "b.safetensors"
    save_file(state, str(path))
    loaded = build_model("resnet18", weights=str(path), head="mlp")
    assert torch.equal(loaded.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])


def test_simple_cnn_weights_from_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = build_model("simple_cnn")
    path = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = build_model("simple_cnn", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_of_another_architecture_raise(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.safetensors"
    save_file(_torchvision_state(0, torchvision.models.resnet50), str(path))
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        build_model("resnet18", weights=path)


@pytest.mark.parametrize("content", [b"", b"not a state dict at all", b"\x00" * 64])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_unreadable_weights_file_raises(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(content)
    with pytest.raises(WeightsUnavailableError, match="cannot read"):
        build_model("resnet18", weights=path)


def test_missing_weights_file_raises(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model("resnet18", weights=tmp_path / "nope.safetensors")


def test_pt_weights_are_read_without_unpickling_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(WeightsUnavailableError):
        build_model("resnet18", weights=path)
    assert not marker.exists()


# ------------------------------------------------------------------------- count_parameters


def test_count_parameters_counts_all_and_trainable() -> None:
    model = build_model("resnet18", stem="compact")
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    assert count_parameters(model, trainable_only=True) == total
    for name, parameter in model.named_parameters():
        if not name.startswith("fc."):
            parameter.requires_grad_(False)
    assert count_parameters(model) == total
    assert count_parameters(model, trainable_only=True) == 512 * 2 + 2


def test_count_parameters_grows_with_the_head() -> None:
    linear = count_parameters(build_model("resnet18"))
    mlp = count_parameters(build_model("resnet18", head="mlp"))
    mlp_extra = (512 * 1000 + 1000) + (1000 * 500 + 500) + (500 * 100 + 100) + (100 * 2 + 2)
    assert mlp - linear == mlp_extra - (512 * 2 + 2)


@pytest.mark.parametrize(("architecture", "head"), [("resnet18", "mlp"), ("resnet18", "small"),
                                                    ("simple_cnn", "linear")])  # fmt: skip
def test_dropout_option_reaches_the_head(architecture: str, head: str) -> None:
    model = build_model(architecture, head=head, dropout=0.2)
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p != 0.3]
    assert rates and all(rate == 0.2 for rate in rates)  # simple_cnn's feature dropout stays
    with pytest.raises(ValueError, match="dropout"):
        build_model(architecture, head=head, dropout=1.0)
