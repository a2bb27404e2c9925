"""Seed ensembles: one network whose logits are the mean of its members', saved, loaded, explained
and joined from training runs like any single model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from forensics import CheckpointError, load_detector
from forensics.checkpoint import architecture_name, load_checkpoint, save_checkpoint
from forensics.ensemble import SeedEnsemble
from forensics.explain import compute_cam
from forensics.models import build_model, get_cam_target_layer
from tests.conftest import make_image
from training.cross_source import best_val
from training.ensemble import join_runs
from training.ensemble import main as ensemble_main
from training.publish import _ensemble_line

META = {
    "architecture": "resnet18",
    "head": "linear",
    "stem": "compact",
    "layer4_stride": 1,
    "input_filter": "npr",
    "data": {"input_size": 32, "resize": 32},
}


def _members(count: int, *, seed: int = 0) -> list[torch.nn.Module]:
    torch.manual_seed(seed)
    options = {k: META[k] for k in ("stem", "layer4_stride", "input_filter")}
    return [build_model("resnet18", **options).eval() for _ in range(count)]


def test_the_ensemble_gives_the_mean_of_its_members_logits_and_each_members_own():
    members = _members(3)
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        alone = torch.stack([member(pixels) for member in members])
        ensemble = SeedEnsemble([copy.deepcopy(m) for m in members]).eval()
        torch.testing.assert_close(ensemble(pixels), alone.mean(dim=0), atol=1e-5, rtol=0)
        torch.testing.assert_close(ensemble.member_logits(pixels), alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (lambda: _members(1), "2 to 16 members"),
        (lambda: [build_model("simple_cnn"), build_model("simple_cnn")], "ResNets with linear"),
        (lambda: [build_model("resnet18", head="mlp") for _ in range(2)], "ResNets with linear"),
        (lambda: [build_model("resnet18"), build_model("resnet50")], "same head shape"),
    ],
)
def test_only_two_or_more_resnets_with_one_head_shape_make_an_ensemble(members, message):
    with pytest.raises(ValueError, match=message):
        SeedEnsemble(members())


def test_an_ensemble_checkpoint_round_trips_and_names_its_member_count(tmp_path: Path):
    ensemble = SeedEnsemble(_members(2)).eval()
    save_checkpoint(tmp_path / "ens", ensemble, {**META, "members": 2}, half=True)
    model, meta = load_checkpoint(tmp_path / "ens")
    assert meta["members"] == 2 and isinstance(model, SeedEnsemble)
    assert architecture_name(meta) == "2 x resnet18"
    assert architecture_name({**meta, "members": 1}) == "resnet18"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), ensemble.half().float()(pixels), atol=1e-3,
                                   rtol=0)  # fmt: skip


@pytest.mark.parametrize("members", [0, 1.5, "2", True, 17])
def test_a_checkpoint_with_an_impossible_member_count_is_refused(tmp_path: Path, members):
    save_checkpoint(tmp_path / "ens", SeedEnsemble(_members(2)), {**META, "members": 2})
    meta_file = tmp_path / "ens" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "members": members}))
    with pytest.raises(CheckpointError, match="invalid ensemble"):
        load_checkpoint(tmp_path / "ens")


def test_a_detector_judges_and_explains_with_an_ensemble(tmp_path: Path):
    save_checkpoint(tmp_path / "ens", SeedEnsemble(_members(3)), {**META, "members": 3})
    detector = load_detector(tmp_path / "ens", engine="fast")
    image = make_image(5, size=32)
    verdict = detector.predict(image)
    with torch.no_grad():
        pixels = detector.transform(image).unsqueeze(0)
        logits = detector.model(pixels)
    margin = float(logits[0, 1] - logits[0, 0])
    assert verdict.prob_fake_raw == pytest.approx(1 / (1 + np.exp(-margin)), abs=1e-5)
    explanation = detector.explain(image, faithfulness=False)
    assert explanation.heatmap.shape == (32, 32) and np.ptp(explanation.heatmap) > 0


def test_the_ensembles_cam_is_its_members_cam_when_the_members_agree():
    (member,) = _members(1)
    ensemble = SeedEnsemble([copy.deepcopy(member), copy.deepcopy(member)]).eval()
    pixels = torch.stack([torch.from_numpy(np.asarray(make_image(s), np.float32) / 255).permute(
        2, 0, 1) for s in (1, 2)])  # fmt: skip
    alone = compute_cam(member, get_cam_target_layer(member), pixels, class_index=1)
    joined = compute_cam(ensemble, get_cam_target_layer(ensemble), pixels, class_index=1)
    np.testing.assert_allclose(joined, alone, atol=1e-4)


def _run(folder: Path, model: torch.nn.Module, *, seed: int, splits: pd.DataFrame, **meta) -> Path:
    save_checkpoint(folder / "best", model, {**META, **meta, "training": {"seed": seed}})
    (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "data": {"root": "x"}}))
    history = pd.DataFrame({"epoch": [1, 2], "val_loss": [0.6, 0.4 + seed / 100],
                            "val_accuracy": [0.6, 0.8], "val_roc_auc": [0.7, 0.9],
                            "best": [True, True]})  # fmt: skip
    history.to_csv(folder / "history.csv", index=False)
    splits.to_csv(folder / "splits.csv.gz", index=False)
    return folder


SPLITS = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [0, 1, 0],
                       "split": ["train", "val", "test"]})  # fmt: skip


def test_runs_of_one_model_join_into_a_run_whose_logits_are_their_mean(tmp_path: Path):
    members = _members(2)
    runs = [_run(tmp_path / f"seed{i}", m, seed=i, splits=SPLITS) for i, m in enumerate(members)]
    # A newer run records a preprocessing field at its default, which an older one lacks.
    newer = {**META["data"], "native": False}
    runs[1] = _run(tmp_path / "seed1", members[1], seed=1, splits=SPLITS, data=newer)
    out = join_runs(runs, tmp_path / "ensemble")
    model, meta = load_checkpoint(out / "best")
    assert meta["members"] == 2
    assert [m["seed"] for m in meta["training"]["ensemble_of"]] == [0, 1]
    summary = pd.read_csv(out / "members.csv")
    assert summary["seed"].tolist() == [0, 1]
    assert summary["val_loss"].tolist() == pytest.approx([0.4, 0.41])
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "history.csv", "splits.csv.gz"}
    line = _ensemble_line(meta)  # the model card's
    assert "A seed ensemble of 2 such networks" in line
    assert "seed 1: best epoch 2, val loss 0.410, accuracy 80.00%" in line
    assert _ensemble_line({**meta, "members": 1}) == ""
    # Its history is the first member's: the cross-source table shows no training figures.
    assert best_val(runs[0]) == {"val_accuracy": 0.8, "val_auc": 0.9}
    assert all(np.isnan(v) for v in best_val(out, members=2).values())
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([m(pixels) for m in members]).mean(dim=0)
        torch.testing.assert_close(model(pixels), expected, atol=1e-5, rtol=0)


def test_runs_on_different_splits_or_models_do_not_join(tmp_path: Path, capsys):
    first = _run(tmp_path / "a", _members(1)[0], seed=0, splits=SPLITS)
    moved = SPLITS.assign(split=["train", "test", "val"])
    other_split = _run(tmp_path / "b", _members(1)[0], seed=1, splits=moved)
    with pytest.raises(ValueError, match="another split"):
        join_runs([first, other_split], tmp_path / "out")
    plain = build_model("resnet18", stem="compact", layer4_stride=1)
    other_model = _run(tmp_path / "c", plain, seed=2, splits=SPLITS, input_filter="none")
    assert ensemble_main([str(first), str(other_model), "--out", str(tmp_path / "out")]) == 2
    assert "['input_filter'] differ" in capsys.readouterr().err
    resized = _run(tmp_path / "d", _members(1)[0], seed=3, splits=SPLITS,
                   data={"input_size": 64, "resize": 64})  # fmt: skip
    with pytest.raises(ValueError, match=r"\['data'\] differ"):
        join_runs([first, resized], tmp_path / "out")
    with pytest.raises(ValueError, match="named twice"):
        join_runs([first, first], tmp_path / "out")
    assert not (tmp_path / "out").exists()
