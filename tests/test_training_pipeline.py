"""The training pipeline's options: strategies freeze what they should, per-group learning rates
reach the optimiser, schedules and early stopping behave, and a resumed cosine run matches an
uninterrupted one. That training learns, and that a two-process DDP run ends with a single
process's weights, is in test_training_learns.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from forensics.models import build_model, count_parameters
from training.config import load_config
from training.optim import Schedule, make_optimizer
from training.strategies import STRATEGIES, apply_strategy, set_train_mode
from training.train import main, resolve_run_config, run

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOKE = REPO_ROOT / "training" / "configs" / "smoke.yaml"
RESNET = ("--model.architecture", "resnet18", "--model.stem", "compact",
          "--model.layer4_stride", "1")  # fmt: skip


def _train(out: Path, data: Path, *extra: str) -> int:
    return main(["--config", str(SMOKE), "--data.root", str(data), "--out", str(out), *extra])


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("architecture", ["resnet18", "simple_cnn"])
def test_each_strategy_trains_exactly_its_parameters(architecture: str) -> None:
    for strategy in STRATEGIES:
        model = build_model(architecture)
        groups = apply_strategy(model, strategy, lr=1e-3, backbone_lr=1e-4)
        head = model.fc if architecture == "resnet18" else model.classifier
        last = model.layer4 if architecture == "resnet18" else model.features[2]
        expected = {
            "scratch": _numel(model),
            "feature_extraction": _numel(head),
            "finetune_layer4": _numel(head) + _numel(last),
            "finetune_all": _numel(model),
        }[strategy]
        assert count_parameters(model, trainable_only=True) == expected, strategy
        # Groups hold every trainable parameter once, and nothing frozen.
        grouped = [p for g in groups for p in g["params"] if p.requires_grad]
        assert sum(p.numel() for p in grouped) == expected
        assert len({id(p) for p in grouped}) == len(grouped)


def test_per_group_learning_rates_reach_the_optimiser() -> None:
    model = build_model("resnet18")
    groups = apply_strategy(model, "finetune_layer4", lr=1e-3, backbone_lr=1e-4)
    optimizer = make_optimizer(groups, {"optimizer": "adamw", "weight_decay": 0.01})
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates == {"head": 1e-3, "last_stage": 1e-4}
    head_ids = {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == head_ids
    # backbone_lr defaults to a tenth of the head's rate.
    groups = apply_strategy(build_model("resnet18"), "finetune_all", lr=1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4), pytest.approx(1e-4)]


def test_sgd_uses_momentum_and_unknown_names_are_refused() -> None:
    groups = apply_strategy(build_model("simple_cnn"), "scratch", lr=0.1)
    sgd = make_optimizer(groups, {"optimizer": "sgd", "momentum": 0.8})
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    with pytest.raises(ValueError, match="adamw"):
        make_optimizer(groups, {"optimizer": "lamb"})
    with pytest.raises(ValueError, match="finetune_layer4"):
        apply_strategy(build_model("simple_cnn"), "finetune_head", lr=0.1)
    with pytest.raises(ValueError, match="onecycle"):
        Schedule(sgd, {"scheduler": "step", "epochs": 3}, steps_per_epoch=2)


def test_feature_extraction_keeps_the_backbone_and_its_statistics() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", stem="compact")
    groups = apply_strategy(model, "feature_extraction", lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(groups, {"optimizer": "sgd"})
    set_train_mode(model)
    for _ in range(2):
        loss = model(torch.randn(4, 3, 32, 32)).sum()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BN running stats included: unchanged


# ------------------------------------------------------------------------------ schedules


def _rates(optim: dict, *, epochs: int, steps: int = 1) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer([{"name": "all", "params": [parameter], "lr": 1.0}], optim)
    schedule = Schedule(optimizer, {**optim, "epochs": epochs}, steps_per_epoch=steps)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps):
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch(val_loss=1.0)
    return rates


def test_cosine_with_warm_up_rises_then_decays_to_zero() -> None:
    rates = _rates({"optimizer": "sgd", "scheduler": "cosine", "warmup_epochs": 2}, epochs=6)
    assert rates[0] == pytest.approx(0.1)  # warm-up starts at a tenth
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1] < 0.2


def test_one_cycle_steps_per_batch_and_plateau_cuts_on_a_flat_loss() -> None:
    cycle = _rates({"optimizer": "sgd", "scheduler": "onecycle"}, epochs=4, steps=5)
    assert max(cycle) > cycle[0] and cycle[-1] < max(cycle)
    plateau = _rates(
        {"optimizer": "sgd", "scheduler": "plateau", "plateau_factor": 0.5, "plateau_patience": 0},
        epochs=3,
    )
    assert plateau == [1.0, 1.0, 0.5]  # the loss never improves after the first epoch


# ------------------------------------------------------------------------------- full runs


def test_early_stopping_stops_and_last_checkpoint_is_kept(tiny_dataset: Path, tmp_path) -> None:
    run = tmp_path / "run"
    # A frozen backbone (statistics included) and a zero learning rate: the validation loss
    # never improves after the first epoch.
    assert _train(run, tiny_dataset, "--model.strategy", "feature_extraction",
                  "--optim.lr", "0", "--optim.epochs", "6",
                  "--optim.early_stopping_patience", "2") == 0  # fmt: skip
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert (run / "last" / "model.safetensors").is_file()
    assert (run / "best" / "model.safetensors").is_file()


def test_finetune_layer4_run_records_both_learning_rates(tiny_dataset: Path, tmp_path) -> None:
    run = tmp_path / "run"
    assert _train(run, tiny_dataset, *RESNET, "--model.strategy", "finetune_layer4",
                  "--optim.lr", "1e-3", "--optim.backbone_lr", "1e-4",
                  "--optim.epochs", "1") == 0  # fmt: skip
    history = pd.read_csv(run / "history.csv")
    assert history.loc[0, "lr"] == pytest.approx(1e-3)
    assert history.loc[0, "lr_last_stage"] == pytest.approx(1e-4)


def test_resumed_cosine_run_reproduces_the_uninterrupted_weights(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """A cosine schedule depends on the planned length, so the crash is simulated inside a run
    of the full length (after epoch 2's files are written), then resumed. Batch mixing is on:
    its random draws must resume too."""
    options = ["--data.root", str(tiny_dataset), "--optim.epochs", "3",
               "--optim.scheduler", "cosine", "--optim.warmup_epochs", "1",
               "--optim.optimizer", "sgd", "--augment.preset", "robust",
               "--augment.batch_mix", "mixup_or_cutmix"]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["--config", str(SMOKE), "--out", str(whole), *options]) == 0

    def crash_after_epoch_2(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")

    config = resolve_run_config(SMOKE, [*options, "--out", str(parts)], resume=False)
    with pytest.raises(KeyboardInterrupt):
        run(config, epoch_callback=crash_after_epoch_2)
    assert len(pd.read_csv(parts / "history.csv")) == 2
    assert main(["--config", str(SMOKE), "--out", str(parts), "--resume"]) == 0
    np.testing.assert_allclose(
        pd.read_csv(parts / "history.csv")["lr"], pd.read_csv(whole / "history.csv")["lr"]
    )
    a = load_file(str(whole / "last" / "model.safetensors"))
    b = load_file(str(parts / "last" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-7, msg=key)


def test_defaults_fill_what_a_short_config_leaves_out(tmp_path: Path) -> None:
    short = tmp_path / "short.yaml"
    short.write_text("optim:\n  lr: 0.5\n")
    config = load_config(short)
    assert config["optim"]["lr"] == 0.5
    assert config["optim"]["scheduler"] == "plateau" and config["model"]["strategy"] == "scratch"
