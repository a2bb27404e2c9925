"""Pruning: sparsity reached and kept through fine-tuning and `prune.remove`, checkpoints that
load and predict, whole channels zeroed by ln_structured, the report table, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_image, write_dataset
from safetensors.torch import load_file
from torch import nn

from forensics import load_detector
from forensics.checkpoint import data_config_from_metadata, load_checkpoint
from forensics.data import load_splits
from training.optim import make_optimizer
from training.prune import (
    TABLE_COLUMNS,
    apply_pruning,
    limit_split,
    locate_split_file,
    main,
    make_pruning_permanent,
    measure_sparsity,
    prepare_manifest,
    read_effective_weight,
    select_pruned_layers,
)
from training.train import build_loaders, train_one_epoch
from training.train import main as train_main

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOKE = REPO_ROOT / "training" / "configs" / "smoke.yaml"
AMOUNTS = (0.2, 0.5)
# Fast: a few timed calls, small batches, one epoch.
FAST = ["--latency-runs", "3", "--batch-size", "4", "--finetune-epochs", "1"]


@contextlib.contextmanager
def _private_cache(base: Path) -> Iterator[None]:
    """Module-scoped fixtures run before the autouse per-test cache fixture: scans made there
    must not land in the user's ~/.cache either."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORENSICS_CACHE", str(base / "cache"))
        yield


def _train(base: Path, *extra: str) -> Path:
    """A smoke-config run on 8 real + 8 fake 32 px images; returns the run folder."""
    with _private_cache(base):
        data = write_dataset(base / "data")
        run = base / "run"
        args = ["--config", str(SMOKE), "--data.root", str(data), "--out", str(run), *extra]
        assert train_main(args) == 0
    return run


def _prune(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of training.prune's main, argparse exits included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _weight_sparsity(state: dict[str, torch.Tensor], names: list[str]) -> float:
    zeros = sum(int((state[name] == 0).sum()) for name in names)
    return zeros / sum(state[name].numel() for name in names)


@pytest.fixture(scope="module")
def simple_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("simple"))


@pytest.fixture(scope="module")
def l1_study(simple_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The l1_unstructured study of the simple run's best checkpoint: (out folder, stdout)."""
    base = tmp_path_factory.mktemp("l1")
    out, amounts = base / "pruned", [str(a) for a in AMOUNTS]
    argv = ["--checkpoint", str(simple_run / "best"), "--amount", *amounts, "--out", str(out)]
    with _private_cache(base):
        code, stdout, stderr = _prune([*argv, "--method", "l1_unstructured", *FAST])
    assert code == 0, stderr
    return out, stdout


# ------------------------------------------------------------------------ l1_unstructured


def test_report_has_the_baseline_and_one_row_per_amount(l1_study: tuple[Path, str]) -> None:
    out, stdout = l1_study
    table = pd.read_csv(out / "pruning.csv")
    assert table["amount"].tolist() == [0.0, *AMOUNTS]
    assert set(TABLE_COLUMNS) <= set(table.columns)
    assert (table["method"] == "l1_unstructured").all()
    baseline = table.iloc[0]
    assert baseline["pruned_sparsity"] == 0 and baseline["nonzero_params"] > 0
    assert (table["latency_ms_b1"] > 0).all() and (table["images_per_s_b32"] > 0).all()
    assert table[["accuracy", "f1", "roc_auc"]].apply(lambda c: c.between(0, 1)).all().all()
    # A dense file keeps its size whatever the sparsity; the report says so.
    assert table["file_mb"].nunique() == 1
    assert table["gzip_mb"].iloc[-1] < table["gzip_mb"].iloc[0]
    markdown = (out / "pruning.md").read_text()
    assert "does not shrink" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 1 + len(AMOUNTS)  # header, baseline, one per amount
    assert all(row in stdout for row in rows)  # the table is printed too


def test_saved_checkpoints_are_permanent_and_keep_their_sparsity(
    l1_study: tuple[Path, str],
) -> None:
    out, _ = l1_study
    table = pd.read_csv(out / "pruning.csv").set_index("amount")
    for amount in AMOUNTS:
        folder = out / f"amount_{amount:g}"
        state = load_file(str(folder / "model.safetensors"))
        assert not [k for k in state if k.endswith(("_orig", "_mask"))]
        model, meta = load_checkpoint(folder)
        names = [
            f"{name}.weight"
            for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))
        ]
        total = sum(state[name].numel() for name in names)
        sparsity = _weight_sparsity(state, names)
        # Global L1 zeroes round(amount * total) weights: the requested share, within rounding.
        assert amount - 1 / total <= sparsity <= amount + 0.01
        assert meta["pruning"]["method"] == "l1_unstructured"
        assert meta["pruning"]["amount"] == amount
        assert meta["pruning"]["sparsity"] == pytest.approx(sparsity)
        assert table.loc[amount, "pruned_sparsity"] == pytest.approx(sparsity)
        assert meta["metrics"]["test"]["accuracy"] == table.loc[amount, "accuracy"]


def test_pruned_checkpoint_loads_as_a_detector_and_predicts(l1_study: tuple[Path, str]) -> None:
    out, _ = l1_study
    detector = load_detector(out / f"amount_{AMOUNTS[-1]:g}")
    verdict = detector.predict(make_image(7, fake=True))
    assert verdict.label in ("real", "fake") and 0.0 <= verdict.prob_fake <= 1.0


def test_sparsity_survives_finetuning_and_prune_remove(simple_run: Path) -> None:
    model, meta = load_checkpoint(simple_run / "best")
    config = meta["training"]
    layers = apply_pruning(model, method="l1_unstructured", amount=0.5)
    masks = [module.weight_mask.clone() for module, _ in layers]
    before = [read_effective_weight(module).clone() for module, _ in layers]
    assert measure_sparsity(model, layers)["pruned_sparsity"] == pytest.approx(0.5, abs=1e-5)

    manifest = prepare_manifest(config, simple_run / "best")
    train_loader, _ = build_loaders(config, manifest, data_config_from_metadata(meta), train_seed=0)
    # A large rate: every unmasked weight moves, the masked ones must not.
    optimizer = make_optimizer(
        [{"name": "all", "params": list(model.parameters()), "lr": 0.1}], {"optimizer": "sgd"}
    )
    train_one_epoch(model, train_loader, optimizer, nn.CrossEntropyLoss(), amp=None, epoch=1)
    after = [read_effective_weight(module) for module, _ in layers]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert measure_sparsity(model, layers)["pruned_sparsity"] >= 0.5 - 1e-5

    make_pruning_permanent(layers)
    state = model.state_dict()
    assert not [k for k in state if k.endswith(("_orig", "_mask"))]
    for (module, _), mask in zip(layers, masks, strict=True):
        assert not module._forward_pre_hooks  # prune.remove took the hook away
        assert (module.weight[mask == 0] == 0).all()
    assert measure_sparsity(model, layers)["pruned_sparsity"] >= 0.5 - 1e-5


# -------------------------------------------------------------------------- ln_structured


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("resnet"),
        *("--model.architecture", "resnet18", "--model.stem", "compact"),
        *("--model.layer4_stride", "1", "--optim.epochs", "1"),
    )


def test_ln_structured_zeroes_whole_output_channels(resnet_run: Path, tmp_path: Path) -> None:
    amount = 0.25
    argv = ["--checkpoint", str(resnet_run / "best"), "--out", str(tmp_path / "pruned")]
    code, _, stderr = _prune([*argv, "--method", "ln_structured", "--amount", str(amount), *FAST])
    assert code == 0, stderr
    model, meta = load_checkpoint(tmp_path / "pruned" / f"amount_{amount:g}")
    expected_zero = 0
    for module, _ in select_pruned_layers(model, method="ln_structured"):
        assert isinstance(module, nn.Conv2d)  # resnet18 with a linear head: convs only
        rows = module.weight.flatten(1)
        zero_rows = int((rows == 0).all(dim=1).sum())
        # Whole output channels: every zero sits in an all-zero channel.
        assert zero_rows * rows.shape[1] == int((rows == 0).sum())
        assert zero_rows == round(amount * rows.shape[0])
        expected_zero += zero_rows
    # The classifier keeps both class outputs.
    assert (model.fc.weight != 0).any(dim=1).all()
    table = pd.read_csv(tmp_path / "pruned" / "pruning.csv")
    assert table["zero_channels"].tolist() == [0, expected_zero]
    assert meta["pruning"]["zero_channels"] == expected_zero
    assert "Zero channels" in (tmp_path / "pruned" / "pruning.md").read_text()
    verdict = load_detector(tmp_path / "pruned" / f"amount_{amount:g}").predict(make_image(3))
    assert 0.0 <= verdict.prob_fake <= 1.0


# -------------------------------------------------------------------------- data and errors


def test_split_comes_from_the_run_or_is_rederived_with_its_seed(
    simple_run: Path, tmp_path: Path
) -> None:
    assert locate_split_file(simple_run / "best") == simple_run / "splits.csv.gz"
    published = tmp_path / "published"
    shutil.copytree(simple_run / "best", published)
    assert locate_split_file(published) is None
    _, meta = load_checkpoint(published)
    rederived = prepare_manifest(meta["training"], published)
    saved = load_splits(rederived, simple_run / "splits.csv.gz")
    merged = rederived.merge(saved[["path", "split"]], on="path", suffixes=("", "_saved"))
    assert len(merged) == len(rederived)
    assert (merged["split"] == merged["split_saved"]).all()
    shutil.copyfile(simple_run / "splits.csv.gz", published / "splits.csv.gz")
    assert locate_split_file(published) == published / "splits.csv.gz"


def test_limit_split_samples_one_split_and_keeps_the_others() -> None:
    manifest = pd.DataFrame(
        {"path": [f"{i}.png" for i in range(30)], "split": ["train", "val", "test"] * 10}
    )
    limited = limit_split(manifest, "test", 4, seed=0)
    assert (limited["split"] == "test").sum() == 4
    assert (limited["split"] != "test").sum() == 20
    assert limited.equals(limit_split(manifest, "test", 4, seed=0))  # seeded
    assert limit_split(manifest, "test", None, seed=0).equals(manifest)


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        ("missing checkpoint", ["--checkpoint", "{tmp}/nowhere"]),
        ("amount zero", ["--amount", "0"]),
        ("amount one", ["--amount", "0.2", "1.0"]),
        ("negative amount", ["--amount=-0.1"]),
        ("unknown method", ["--method", "random"]),
        ("missing dataset", ["--data", "{tmp}/no_data"]),
        ("checkpoint without weights", ["--checkpoint", "{tmp}"]),
        ("negative threads", ["--threads", "-1"]),
    ],
)
def test_bad_input_exits_2_with_one_line(
    simple_run: Path, tmp_path: Path, case: str, extra: list[str]
) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"architecture": "simple_cnn"}))
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    argv = ["--checkpoint", str(simple_run / "best"), "--out", str(tmp_path / "out"), *extra]
    code, _, stderr = _prune(argv)
    assert code == 2, case
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error:"), stderr
    assert not (tmp_path / "out" / "pruning.csv").exists()
