"""Seed ensembles: copies of one ResNet trained alike from different random starts, judged as one
model.

Averaging the logits of such copies is the most dependable gain in accuracy and calibration for a
network trained from scratch on little data (Lakshminarayanan et al., 2017, "deep ensembles").
The ensemble is written as one network, so that every inference engine, the trust fit, the patch
map and Grad-CAM take it as they take a single model:

- each member runs its trunk (input filter, stem, residual stages) up to its last feature map;
- `join` lays the members' maps side by side along the channels. It is the Grad-CAM target: the
  CAM of the joined maps weighs every member's channels by their own gradients, which is the sum
  of the members' CAMs;
- one linear head reads the pooled joined features. Its weights are the members' heads side by
  side, divided by their number, so its logits are exactly the mean of the members' logits, and
  its input is the features the applicability check measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import nn

MAX_MEMBERS = 16


class SeedEnsemble(nn.Module):
    """The mean logits of `members` (ResNets with linear heads and equal feature widths). The
    members are taken over: their heads move into this module's `fc`."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        check_member_count(len(members))
        for member in members:
            if not isinstance(member, torchvision.models.ResNet) or not isinstance(
                member.fc, nn.Linear
            ):
                raise ValueError("a seed ensemble joins ResNets with linear heads")
        heads = [member.fc for member in members]
        if len({(head.in_features, head.out_features) for head in heads}) != 1:
            raise ValueError("the members of a seed ensemble must have the same head shape")
        self.members = nn.ModuleList(members)
        for member in self.members:
            member.fc = nn.Identity()  # its weights live on in self.fc
        self.join = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(sum(head.in_features for head in heads), heads[0].out_features)
        # Each member's own bias, kept so that `member_logits` gives what each member said.
        self.register_buffer("member_biases", torch.stack([head.bias.detach() for head in heads]))
        with torch.no_grad():
            self.fc.weight.copy_(torch.cat([head.weight for head in heads], dim=1) / len(heads))
            self.fc.bias.copy_(self.member_biases.mean(dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [_last_feature_map(member, x) for member in self.members]
        joined = self.join(torch.cat(maps, dim=1))
        return self.fc(torch.flatten(self.pool(joined), 1))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, classes): each member's own logits, as it gave them alone."""
        count = len(self.members)
        width = self.fc.in_features // count
        logits = []
        for index, member in enumerate(self.members):
            features = torch.flatten(self.pool(_last_feature_map(member, x)), 1)
            weight = self.fc.weight[:, index * width : (index + 1) * width] * count
            logits.append(features @ weight.T + self.member_biases[index])
        return torch.stack(logits)


def check_member_count(count: int) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or not 2 <= count <= MAX_MEMBERS:
        raise ValueError(f"a seed ensemble has 2 to {MAX_MEMBERS} members, got {count!r}")
    return count


def _last_feature_map(resnet: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    """What torchvision's ResNet.forward computes before its pooling and head."""
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    return resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(x))))
