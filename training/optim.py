"""Optimisers and learning-rate schedules, built from the `optim` section of a run's config."""

from __future__ import annotations

from typing import Any

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "onecycle", "none")


def make_optimizer(groups: list[dict], optim: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum over named parameter groups (see training.strategies);
    frozen parameters are left out."""
    groups = [
        {**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ValueError("nothing to train: the strategy froze every parameter")
    name, decay = optim["optimizer"], float(optim.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(groups, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=decay)
    if name == "sgd":
        momentum = float(optim.get("momentum", 0.9))
        return torch.optim.SGD(groups, momentum=momentum, nesterov=momentum > 0, weight_decay=decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")


class Schedule:
    """One interface over per-epoch (plateau, cosine) and per-batch (one-cycle) schedules, with
    an optional linear warm-up over the first `warmup_epochs` epochs. The training loop calls
    `after_batch()` after each optimiser step and `after_epoch(val_loss)` after validation."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, optim: dict[str, Any], *, steps_per_epoch: int
    ) -> None:
        self.kind = optim.get("scheduler") or "none"
        if self.kind not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.kind!r}; valid: {list(SCHEDULERS)}")
        epochs, self.warmup = int(optim["epochs"]), int(optim.get("warmup_epochs") or 0)
        if not 0 <= self.warmup < max(epochs, 1):
            raise ValueError(f"warmup_epochs must be in [0, epochs), got {self.warmup}")
        schedulers = torch.optim.lr_scheduler
        self.warmup_scheduler = None
        if self.warmup and self.kind != "onecycle":  # one-cycle has its own warm-up phase
            self.warmup_scheduler = schedulers.LinearLR(
                optimizer, start_factor=0.1, total_iters=self.warmup
            )
        if self.kind == "plateau":
            self.main = schedulers.ReduceLROnPlateau(
                optimizer,
                factor=float(optim.get("plateau_factor", 0.3)),
                patience=int(optim.get("plateau_patience", 1)),
            )
        elif self.kind == "cosine":
            self.main = schedulers.CosineAnnealingLR(optimizer, T_max=max(epochs - self.warmup, 1))
        elif self.kind == "onecycle":
            self.main = schedulers.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=max(epochs * steps_per_epoch, 1),
                pct_start=self.warmup / epochs if self.warmup else 0.3,
            )
        else:
            self.main = None
        self.epochs_done = 0

    def after_batch(self) -> None:
        if self.kind == "onecycle":
            self.main.step()

    def after_epoch(self, val_loss: float) -> None:
        self.epochs_done += 1
        if self.warmup_scheduler is not None and self.epochs_done <= self.warmup:
            self.warmup_scheduler.step()
        elif self.kind == "plateau":
            self.main.step(val_loss)
        elif self.kind == "cosine":
            self.main.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs_done": self.epochs_done,
            "main": self.main.state_dict() if self.main is not None else {},
            "warmup": self.warmup_scheduler.state_dict() if self.warmup_scheduler else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "epochs_done" not in state:  # a run saved before warm-up existed: plateau only
            if self.main is not None and state:
                self.main.load_state_dict(state)
            return
        self.epochs_done = state["epochs_done"]
        if self.main is not None:
            self.main.load_state_dict(state["main"])
        if self.warmup_scheduler is not None:
            self.warmup_scheduler.load_state_dict(state["warmup"])
