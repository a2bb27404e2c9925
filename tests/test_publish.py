"""training.publish: a finished run becomes a shipped float16 checkpoint whose evaluation and
model card describe exactly the stored file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from forensics import load_detector
from forensics.evaluation import compute_metrics
from forensics.robustness import read_sweep
from tests.card_figures import TEMPLATE_FIGURES, checkpoint_values, template_part, uncited
from tests.conftest import write_dataset
from training.publish import main as publish_main
from training.train import main as train_main

SMOKE = Path(__file__).resolve().parent.parent / "training" / "configs" / "smoke.yaml"
BENCHMARK = SMOKE.parent.parent / "results" / "bench_stems.csv"


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    data = write_dataset(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    assert train_main(["--config", str(SMOKE), "--data.root", str(data), "--out", str(run)]) == 0
    return run


def test_publish_writes_a_self_consistent_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    ood = write_dataset(tmp_path / "other", per_class=3, size=64)
    dest = tmp_path / "shipped"
    assert publish_main([str(finished_run), "--to", str(dest), "--ood", str(ood)]) == 0

    for name in ("model.safetensors", "model.json", "MODEL_CARD.md", "history.csv",
                 "splits.csv.gz", "config.yaml", "eval/metrics.json", "eval/predictions.csv",
                 "eval/ood_other/metrics.json"):  # fmt: skip
        assert (dest / name).is_file(), name
    stored = load_file(str(dest / "model.safetensors"))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}

    # The stored evaluation is the shipped file's own: recomputing from its predictions agrees,
    # and the test rows are exactly the run's test split.
    metrics = json.loads((dest / "eval" / "metrics.json").read_text())
    table = pd.read_csv(dest / "eval" / "predictions.csv", keep_default_na=False)
    splits = pd.read_csv(dest / "splits.csv.gz")
    assert sorted(table["path"]) == sorted(splits.loc[splits["split"] == "test", "path"])
    assert compute_metrics(table["label"], table["prob_fake"])["accuracy"] == metrics["accuracy"]
    detector = load_detector(dest)
    assert metrics["checkpoint_id"] == detector.checkpoint_id
    assert detector.metadata["metrics"]["test"]["accuracy"] == metrics["accuracy"]
    # Each stored evaluation names its dataset, so the app can tell another folder from it.
    assert metrics["dataset"] == {
        "name": "data",
        "files": 20,
        "fingerprint": detector.metadata["dataset"]["fingerprint"],
    }
    ood_metrics = json.loads((dest / "eval" / "ood_other" / "metrics.json").read_text())
    assert ood_metrics["dataset"]["name"] == "other" and ood_metrics["dataset"]["files"] == 6

    card = (dest / "MODEL_CARD.md").read_text()
    assert f"{100 * metrics['accuracy']:.2f}%" in card
    assert "| other | 6 |" in card
    assert not re.search(r"\{\w+\}", card)  # every template field was filled
    assert "<!-- decision:start -->\n## What a decision rests on" in card
    # Every figure the template part of the card shows is a value of the files it cites.
    values = checkpoint_values(dest, BENCHMARK)
    assert uncited(template_part(card), values, TEMPLATE_FIGURES["model_card_cifake.md"]) == []

    # The robustness sweep of the test split: stored beside the card, its figures in it, its
    # clean row the stored evaluation's.
    summary, record = read_sweep(dest / "robustness")
    assert set(summary["n"]) == {metrics["n"]} and len(summary) == 19
    assert summary["accuracy"].iloc[0] == metrics["accuracy"]
    assert record["command"].startswith("python -m forensics robustness --data ")
    assert f"--splits {dest / 'splits.csv.gz'}" in record["command"]
    assert "<!-- robustness:start -->" in card and record["command"] in card
    assert (finished_run / "robustness" / "parts" / "jpeg_70" / "metrics.json").is_file()


@pytest.mark.parametrize(
    "template", ["model_card_cifake.md", "model_card_faces.md", "model_card_photos.md"]
)
def test_every_shipped_card_template_is_filled(
    finished_run: Path, tmp_path: Path, template: str
) -> None:
    dest = tmp_path / "shipped"
    path = Path(__file__).resolve().parent.parent / "training" / template
    argv = [str(finished_run), "--to", str(dest), "--template", str(path), "--no-robustness"]
    assert publish_main(argv) == 0
    assert not (dest / "robustness").exists()
    card = (dest / "MODEL_CARD.md").read_text()
    metrics = json.loads((dest / "eval" / "metrics.json").read_text())
    assert f"| accuracy | {100 * metrics['accuracy']:.2f}% |" in card
    assert not re.search(r"\{\w+\}", card)


def test_publish_refuses_an_unfinished_run(tmp_path: Path, capsys) -> None:
    assert publish_main([str(tmp_path / "nothing"), "--to", str(tmp_path / "out")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_lr_schedule_lists_plateaus_and_sums_up_a_cosine() -> None:
    import pandas as pd

    from training.publish import _lr_schedule

    plateau = pd.DataFrame({"epoch": [1, 2, 3, 4], "lr": [1e-3, 1e-3, 3e-4, 3e-4]})
    assert _lr_schedule(plateau) == "epochs 1-2 at 0.001, epochs 3-4 at 0.0003"
    lrs = [1e-4, 1e-3] + [1e-3 * (18 - k) / 18 for k in range(1, 19)]  # warm-up, then cosine-like
    text = _lr_schedule(pd.DataFrame({"epoch": range(1, 21), "lr": lrs}))
    assert text.startswith("changed every epoch: 0.0001 at epoch 1, rising to 0.001 at epoch 2,")
    assert "then down to 0 at epoch 20" in text


def test_publish_with_patches_ships_a_patch_model_with_its_rule(finished_run, tmp_path) -> None:
    from forensics.images import ImageInfo

    dest = tmp_path / "patches"
    table = tmp_path / "cross_source.md"
    table.write_text(
        "# Across sources\n\n`python -m training.cross_source x`\n\n"
        "| run | a |\n|---|---|\n| npr | 0.9 |\n"
    )
    template = Path(__file__).resolve().parent.parent / "training" / "model_card_photos.md"
    argv = [str(finished_run), "--to", str(dest), "--patches", "16", "--max-patches", "9",
            "--template", str(template), "--cross-source", str(table)]  # fmt: skip
    argv.append("--no-robustness")  # measured in the test above
    # Publishing over older weights drops their stored sweep: it would describe other weights.
    (dest / "robustness").mkdir(parents=True)
    (dest / "robustness" / "robustness.json").write_text("{}")
    assert publish_main(argv) == 0
    assert not (dest / "robustness").exists()
    card = (dest / "MODEL_CARD.md").read_text()
    assert "`python -m training.cross_source x`\n\n| run | a |\n|---|---|\n| npr | 0.9 |" in card
    assert "16x16 patches" in card and "at most 9 patches" in card
    assert "**Training domain**: native-resolution patches of 16 px, never resampled" in card
    detector = load_detector(dest)
    spec = detector.patch_spec
    assert (spec.size, spec.max_patches) == (16, 9)
    fit = detector.metadata["trust"]["fit"]["patch_rule"]
    # The stride and rule stored are the pair with the lowest validation log loss after
    # calibration (cross-validated), the evidence for every pair beside them, raw losses too.
    assert fit["criterion"] == "calibrated_cv_log_loss"
    assert set(fit["val_raw_log_loss_by_stride"]) == {"16", "8"}
    assert "the lowest cross-validated log loss after calibration, as the verdicts ship," in card
    assert spec.aggregate == fit["chosen"] == min(fit["val_log_loss"], key=fit["val_log_loss"].get)
    by_stride = fit["val_log_loss_by_stride"]
    assert set(by_stride) == {"16", "8"} and spec.stride == fit["stride"]
    assert by_stride[str(spec.stride)][spec.aggregate] == min(
        loss for losses in by_stride.values() for loss in losses.values()
    )
    assert f"- **Patches**: patches starting {spec.stride} px apart" in card
    assert f"starting at most\n{spec.stride} px apart" in card
    # Never resampled: a photograph of any size is at the model's scale; a smaller one is not.
    domain = detector.trust.input_domain
    assert domain.patch == 16 and domain.scale == (1.0, 1.0)
    assert not domain.reasons(ImageInfo(4000, 1000, "PNG", None))
    (small,) = domain.reasons(ImageInfo(8, 8, "PNG", None))
    assert "smaller than the 16 px patches" in small
    # The stored test evaluation is the patch verdicts': the same probabilities again.
    table = pd.read_csv(dest / "eval" / "predictions.csv", keep_default_na=False)
    data = Path(yaml_root(finished_run))
    first = table.iloc[0]
    assert detector.predict(data / first["path"]).prob_fake == pytest.approx(
        first["prob_fake"], abs=1e-6
    )


def yaml_root(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["data"]["root"]
