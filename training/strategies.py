"""Training strategies from the studies: which parameters train, and at which learning rate.

- `scratch`: every parameter trains at `lr` (random initial weights).
- `feature_extraction`: the backbone is frozen (weights and batch-norm statistics); only the
  head trains, at `lr`.
- `finetune_layer4`: the last stage (ResNet `layer4`) and the head train, the head at `lr` and
  the stage at `backbone_lr`; everything below stays frozen.
- `finetune_all`: everything trains, the head at `lr` and the backbone at `backbone_lr`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torchvision
from torch import nn

from forensics.models import SimpleCNN

STRATEGIES = ("scratch", "feature_extraction", "finetune_layer4", "finetune_all")


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The model split into `head`, `last_stage` and `rest` (the earlier backbone)."""
    if isinstance(model, torchvision.models.ResNet):
        head, last = model.fc, model.layer4
    elif isinstance(model, SimpleCNN):
        head, last = model.classifier, model.features[2]
    else:
        raise ValueError(f"no strategy parts known for {type(model).__name__}")
    owned = {id(p) for p in (*head.parameters(), *last.parameters())}
    rest = nn.ParameterList([p for p in model.parameters() if id(p) not in owned])
    return {"head": head, "last_stage": last, "rest": rest}


def apply_strategy(
    model: nn.Module, strategy: str, *, lr: float, backbone_lr: float | None = None
) -> list[dict]:
    """Freeze what `strategy` keeps fixed and return the optimiser's parameter groups, each
    named (`head`, `last_stage`, `backbone`) with its own learning rate. `backbone_lr` defaults
    to a tenth of `lr`, the usual choice for pretrained layers."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {list(STRATEGIES)}")
    backbone_lr = lr / 10 if backbone_lr is None else float(backbone_lr)
    parts = model_parts(model)
    trainable = {
        "scratch": ("head", "last_stage", "rest"),
        "feature_extraction": ("head",),
        "finetune_layer4": ("head", "last_stage"),
        "finetune_all": ("head", "last_stage", "rest"),
    }[strategy]
    for name, part in parts.items():
        for parameter in part.parameters():
            parameter.requires_grad_(name in trainable)
    if strategy == "scratch":
        return [{"name": "all", "params": list(model.parameters()), "lr": lr}]
    groups = [{"name": "head", "params": list(parts["head"].parameters()), "lr": lr}]
    if "last_stage" in trainable:
        stage = list(parts["last_stage"].parameters())
        groups.append({"name": "last_stage", "params": stage, "lr": backbone_lr})
    if "rest" in trainable:
        groups.append({"name": "backbone", "params": list(parts["rest"]), "lr": backbone_lr})
    return groups


def frozen_batchnorms(model: nn.Module) -> Iterator[nn.Module]:
    """Batch-norm layers whose parameters are all frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parameters = list(module.parameters())
            if parameters and not any(p.requires_grad for p in parameters):
                yield module


def set_train_mode(model: nn.Module) -> None:
    """`model.train()`, except that frozen batch-norm layers keep their running statistics:
    a frozen backbone must compute exactly what it computed before training."""
    model.train()
    for module in frozen_batchnorms(model):
        module.eval()
