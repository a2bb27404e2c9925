"""Model registry: ResNet18/ResNet50 (torchvision) and the faces study's small CNN, with heads,
stems and the layer Grad-CAM explains."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from forensics.ensemble import SeedEnsemble, check_member_count

NUM_CLASSES = 2  # 0 = real, 1 = fake
HEADS = ("linear", "mlp", "small")
# imagenet: torchvision's 7x7/2 conv + max-pool (input /4). cifar: a 3x3/1 conv, no pool (keeps
# full resolution; slow). compact: a 3x3/1 conv then the max-pool (input /2): sees every pixel once
# at full resolution, then runs the residual stages at half resolution.
STEMS = ("imagenet", "cifar", "compact")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had on this machine."""


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class SimpleCNN(nn.Module):
    """Three Conv-BN-ReLU-MaxPool blocks (32->64->128), dropout 0.3, then a 256-unit classifier."""

    def __init__(self, num_classes: int = NUM_CLASSES, *, dropout: float = 0.5) -> None:
        super().__init__()
        _check_dropout(dropout)

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.Dropout(0.3))
        # Pooling to 4x4 makes the head independent of the input size.
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def build_head(
    name: str, in_features: int, num_classes: int = NUM_CLASSES, *, dropout: float = 0.5
) -> nn.Module:
    """`linear` (in -> 2), `mlp` (the published in->1000->500->100->2) or `small` (in->256->2);
    the hidden layers of `mlp` and `small` use dropout with probability `dropout`."""
    _check_dropout(dropout)
    if name == "linear":
        return nn.Linear(in_features, num_classes)
    if name == "mlp":
        layers: list[nn.Module] = []
        widths = [in_features, 1000, 500, 100]
        for w_in, w_out in itertools.pairwise(widths):
            layers += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        return nn.Sequential(*layers, nn.Linear(100, num_classes))
    if name == "small":
        return nn.Sequential(
            nn.Linear(in_features, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )
    raise ValueError(f"unknown head {name!r}; valid: {list(HEADS)}")


_TORCHVISION_RESNETS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights"),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights"),
}


def _build_resnet(
    name: str,
    *,
    head: str,
    weights: str | Path | None,
    stem: str,
    layer4_stride: int,
    dropout: float = 0.5,
) -> nn.Module:
    factory, enum_name = _TORCHVISION_RESNETS[name]
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid: {list(STEMS)}")
    if layer4_stride not in (1, 2):
        raise ValueError(f"layer4_stride must be 1 or 2, got {layer4_stride!r}")
    model = factory(weights=None)
    if weights == "imagenet":
        model.load_state_dict(_imagenet_state_dict(name, getattr(torchvision.models, enum_name)))
    elif weights is not None:
        _load_backbone_file(model, Path(weights))
    if stem != "imagenet":
        # A pretrained 7x7 stem does not transfer to 3x3; this conv is always trained fresh.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if stem == "cifar":
            model.maxpool = nn.Identity()
    if layer4_stride == 1:
        # Keeps layer4 at layer3's resolution so Grad-CAM has a spatial map on small inputs.
        first = model.layer4[0]
        (first.conv2 if hasattr(first, "conv3") else first.conv1).stride = (1, 1)
        first.downsample[0].stride = (1, 1)
    model.fc = build_head(head, model.fc.in_features, dropout=dropout)
    return model


def _imagenet_state_dict(name: str, weight_enum) -> dict[str, torch.Tensor]:
    weights = weight_enum.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # urllib, socket, hash or file errors: all mean "not available"
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} are not in the torch cache ({cache}) and could not be "
            f"downloaded ({type(exc).__name__}); train from scratch with weights=None or pass a "
            "local state-dict file."
        ) from None


def _load_backbone_file(model: nn.Module, path: Path) -> None:
    """Load a torchvision-format state dict: .safetensors, or .pt/.pth read with weights_only."""
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(f"cannot read weights file {path}: {exc}") from None
    own = model.state_dict()
    # The classifier of a pretrained file has ImageNet's 1000 classes; ours is replaced anyway.
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith("fc.")]
    if missing:
        raise WeightsUnavailableError(
            f"weights file {path} does not fit this architecture "
            f"({len(missing)} tensors missing or mis-shaped, e.g. {missing[0]})"
        )
    model.load_state_dict(usable, strict=False)


ARCHITECTURES = ("resnet18", "resnet50", "simple_cnn")
INPUT_FILTERS = ("none", "npr", "highpass")
# SRM's "KV" residual kernel (Fridrich & Kodovsky, 2012): a fixed second-order high-pass that
# removes the image's content and keeps the fine texture a generator leaves.
# fmt: off
_KV_KERNEL = torch.tensor([
    [-1, 2, -2, 2, -1],
    [2, -6, 8, -6, 2],
    [-2, 8, -12, 8, -2],
    [2, -6, 8, -6, 2],
    [-1, 2, -2, 2, -1],
], dtype=torch.float32) / 12
# fmt: on


class ResidualFilter(nn.Module):
    """A fixed residual front end, without parameters (nothing to train, nothing to store).

    - `npr`: neighbouring pixel relationships (Tan et al., CVPR 2024): the image minus its
      nearest-neighbour down-and-up-sampled copy (factor 2), which keeps what upsampling layers
      leave between neighbouring pixels.
    - `highpass`: SRM's KV kernel on each channel (replicate padding keeps the size).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in INPUT_FILTERS[1:]:
            raise ValueError(f"unknown input filter {kind!r}; valid: {list(INPUT_FILTERS)}")
        self.kind = kind
        kernel = _KV_KERNEL.expand(3, 1, 5, 5).clone()
        self.register_buffer("kernel", kernel, persistent=False)  # fixed: not in checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "npr":
            # Each pixel minus the top-left pixel of its 2x2 block: nearest down- then upsampling
            # by 2, written out so that odd sides stay aligned.
            height, width = x.shape[-2:]
            kept = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
            return x - kept[..., :height, :width]
        padded = nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
        return nn.functional.conv2d(padded, self.kernel, groups=x.shape[1])

    def extra_repr(self) -> str:
        return self.kind


class FilteredConv2d(nn.Conv2d):
    """A model's first convolution with a `ResidualFilter` before it. It keeps the original
    convolution's parameters under the same names, so a checkpoint's keys (and ImageNet or
    backbone weights) do not change with the filter."""

    def __init__(self, conv: nn.Conv2d, residual: ResidualFilter) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        self.weight, self.bias = conv.weight, conv.bias
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.residual(x))


def add_input_filter(model: nn.Module, kind: str) -> nn.Module:
    """`model` with `kind` (INPUT_FILTERS) in front of its first convolution; "none" leaves it."""
    if kind == "none":
        return model
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, FilteredConv2d(conv, ResidualFilter(kind)))
    return model


def build_model(
    architecture: str,
    *,
    head: str = "linear",
    weights: str | Path | None = None,
    stem: str = "imagenet",
    layer4_stride: int = 2,
    dropout: float = 0.5,
    input_filter: str = "none",
    members: int = 1,
) -> nn.Module:
    """Build a two-class classifier (logits for real, fake) by name.

    `weights`: None (random init), "imagenet" (torchvision's weights; raises
    WeightsUnavailableError where they are neither cached nor downloadable) or a path to a
    backbone state dict. `stem` and `layer4_stride` apply to ResNets only; `dropout` is the
    head's (training only: it changes no weight, so checkpoints need not record it).
    `input_filter` (INPUT_FILTERS) puts a fixed residual front end before the first layer.
    `members` > 1 builds a `SeedEnsemble` of that many such models (to load a saved one into).
    """
    if input_filter not in INPUT_FILTERS:
        raise ValueError(f"unknown input filter {input_filter!r}; valid: {list(INPUT_FILTERS)}")
    if members != 1:
        check_member_count(members)
        options = dict(head=head, weights=weights, stem=stem, layer4_stride=layer4_stride)
        return SeedEnsemble(
            [
                build_model(architecture, **options, dropout=dropout, input_filter=input_filter)
                for _ in range(members)
            ]
        )
    return add_input_filter(
        _build_classifier(
            architecture,
            head=head,
            weights=weights,
            stem=stem,
            layer4_stride=layer4_stride,
            dropout=dropout,
        ),
        input_filter,
    )


def _build_classifier(
    architecture: str,
    *,
    head: str,
    weights: str | Path | None,
    stem: str,
    layer4_stride: int,
    dropout: float,
) -> nn.Module:
    if architecture in _TORCHVISION_RESNETS:
        return _build_resnet(
            architecture,
            head=head,
            weights=weights,
            stem=stem,
            layer4_stride=int(layer4_stride),
            dropout=float(dropout),
        )
    if architecture == "simple_cnn":
        if weights == "imagenet":
            raise WeightsUnavailableError("simple_cnn has no ImageNet weights; use weights=None.")
        model = SimpleCNN(dropout=float(dropout))
        if weights is not None:
            _load_backbone_file(model, Path(weights))
        return model
    raise ValueError(f"unknown architecture {architecture!r}; valid: {list(ARCHITECTURES)}")


def get_cam_target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage, whose feature map Grad-CAM weighs."""
    if isinstance(model, SimpleCNN):
        return model.features[2]
    if isinstance(model, torchvision.models.ResNet):
        return model.layer4[-1]
    if isinstance(model, SeedEnsemble):
        return model.join
    raise ValueError(f"no CAM target layer known for {type(model).__name__}")


class LogitsAndFeatures(nn.Module):
    """`model`'s logits and the features its last linear layer reads, as one (N, 2 + D) tensor:
    columns 0-1 are the logits, the rest the penultimate features that the applicability check
    measures novelty on. One output tensor keeps every inference engine (ONNX included) as it is;
    the logits are exactly `model`'s."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
        if not last:
            raise ValueError(f"{type(model).__name__} has no linear output layer")
        self.body = copy.deepcopy(model)
        parent_name, _, child = last[-1].rpartition(".")
        parent = self.body.get_submodule(parent_name) if parent_name else self.body
        self.head = getattr(parent, child)
        setattr(parent, child, nn.Identity())
        self.feature_dim = self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return torch.cat([self.head(features), features], dim=1)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
