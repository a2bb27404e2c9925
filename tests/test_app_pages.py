"""AppTest for the evaluation and training-runs pages on a tiny trained and published model."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from forensics.ui.common import OTHER_CHECKPOINT
from forensics.ui.results import ON_DATASET, STORED
from forensics.ui.robustness import NEW_SWEEP, STORED_SWEEP
from tests.conftest import write_dataset
from training.publish import main as publish_main
from training.train import main as train_main

SMOKE = Path(__file__).resolve().parent.parent / "training" / "configs" / "smoke.yaml"
TIMEOUT = 120


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("published")
    data = write_dataset(base / "data", per_class=10)
    run = base / "runs" / "smoke"
    assert train_main(["--config", str(SMOKE), "--data.root", str(data), "--out", str(run)]) == 0
    checkpoint = base / "checkpoint"
    assert publish_main([str(run), "--to", str(checkpoint)]) == 0
    return {"data": data, "runs": run.parent, "checkpoint": checkpoint}


@pytest.fixture
def environment(published: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(published["checkpoint"]))
    monkeypatch.setenv("FORENSICS_DATASET", str(published["data"]))
    monkeypatch.setenv("FORENSICS_RUNS", str(published["runs"]))
    monkeypatch.setenv("FORENSICS_CACHE", str(tmp_path / "cache"))
    return published


def _evaluation_script() -> None:
    from forensics.ui.common import draw_sidebar
    from forensics.ui.evaluation import evaluation_page

    draw_sidebar()
    evaluation_page()


def _training_script() -> None:
    from forensics.ui.common import draw_sidebar
    from forensics.ui.training_runs import training_runs_page

    draw_sidebar()
    training_runs_page()


def _run(script) -> AppTest:
    at = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def _caption_with(at: AppTest, text: str) -> str:
    return next(c.value for c in at.caption if text in c.value)


def test_stored_evaluation_and_live_threshold(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()  # another test's cached evaluation would come first
    assert at.title[0].value == "Model evaluation"
    metrics = at.dataframe[0].value
    assert list(metrics["metric"])[:2] == ["Accuracy", "Precision (fake)"]
    slider = next(s for s in at.slider if s.label.startswith("Decision threshold"))
    slider.set_value(0.0).run()  # everything is called fake: no false negatives
    caption = _caption_with(at, "False positives")
    assert "false negatives (fake called real): 0" in caption
    slider.set_value(1.0).run()  # nothing reaches 1.0: no false positives
    assert "False positives (real called fake): 0" in _caption_with(at, "False positives")


def test_reopening_the_page_recomputes_nothing(environment, monkeypatch) -> None:
    import forensics.ui.evaluation as page

    calls = []
    real = page.compute_metrics
    monkeypatch.setattr(page, "compute_metrics", lambda *a, **k: calls.append(1) or real(*a, **k))
    page.evaluation_figures.clear()
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert len(calls) == 1  # one computation serves the table and both curves
    _run(_evaluation_script).radio[0].set_value(STORED).run()  # a second open, a new session
    assert len(calls) == 1
    slider = next(s for s in at.slider if s.label.startswith("Decision threshold"))
    original = slider.value
    slider.set_value(0.9).run()
    assert len(calls) == 2
    next(s for s in at.slider if s.label.startswith("Decision threshold")).set_value(original).run()
    assert len(calls) == 2  # a threshold already shown comes back from memory


def test_evaluation_on_the_dataset_is_cached(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    assert not at.exception, at.exception
    split = next(s for s in at.selectbox if s.label == "Split")
    split.set_value("all").run()
    button = next(b for b in at.button if b.label.startswith("Evaluate "))
    assert button.label.startswith("Evaluate 20 images with ")
    button.click().run()
    assert not at.exception, at.exception
    assert "20 images" in _caption_with(at, "Checkpoint")
    assert not [b for b in at.button if b.label.startswith("Evaluate ")]  # spent, so gone
    # A fresh session opens on the cached result, split included: no clicks, no button.
    again = _run(_evaluation_script)
    assert again.radio[0].value == ON_DATASET
    assert next(s for s in again.selectbox if s.label == "Split").value == "all"
    assert not [b for b in again.button if b.label.startswith("Evaluate ")]
    assert "20 images" in _caption_with(again, "Checkpoint")


def test_an_evaluation_cut_short_is_offered_again_not_shown(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("all").run()
    _evaluate_if_asked(at)
    cached = next(Path(environment["checkpoint"], "eval_cache").glob("*_all/predictions.csv"))
    cached.write_text(cached.read_text().splitlines()[0] + "\n")  # as if killed mid-write
    again = _run(_evaluation_script)
    assert not again.exception, again.exception
    assert [b for b in again.button if b.label.startswith("Evaluate 20 images")]
    _evaluate_if_asked(again)
    assert "20 images" in _caption_with(again, "Checkpoint")


def _evaluation_then_errors_script() -> None:
    import streamlit as st

    from forensics.ui.common import draw_sidebar
    from forensics.ui.errors import errors_page
    from forensics.ui.evaluation import evaluation_page

    draw_sidebar()
    errors_page() if st.session_state.get("page") == "errors" else evaluation_page()


def test_results_choice_follows_the_user_across_pages(environment) -> None:
    at = _run(_evaluation_then_errors_script)
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("train").run()
    _evaluate_if_asked(at)
    at.session_state["page"] = "errors"
    at.run()
    assert at.title[0].value == "Error browser"
    assert at.radio[0].value == ON_DATASET
    assert next(s for s in at.selectbox if s.label == "Split").value == "train"
    at.radio[0].set_value(STORED).run()
    at.session_state["page"] = "evaluation"
    at.run()
    assert at.radio[0].value == STORED
    assert "stored evaluation" in _caption_with(at, "Checkpoint")


@pytest.mark.parametrize(
    "content",
    [gzip.compress(b"path,split\nnot/in/the/data.png,test\n"), b"\x1f\x8b truncated"],
    ids=["foreign", "truncated"],
)
def test_a_split_file_that_does_not_fit_falls_back_to_all(
    environment, monkeypatch, tmp_path, content: bytes
) -> None:
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(environment["checkpoint"], checkpoint, ignore=shutil.ignore_patterns("eval*"))
    (checkpoint / "splits.csv.gz").write_bytes(content)
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(checkpoint))
    at = _run(_evaluation_script)
    assert not at.exception, at.exception
    assert at.radio[0].value == ON_DATASET  # nothing stored: the dataset is the only source
    assert any("does not fit this dataset" in w.value for w in at.warning)
    assert next(s for s in at.selectbox if s.label == "Split").options == ["all"]


def test_missing_dataset_folder_is_a_message(environment, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FORENSICS_DATASET", str(tmp_path / "nowhere"))
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    assert not at.exception, at.exception
    assert any("Dataset folder not found" in e.value for e in at.error)


def test_training_runs_page_plots_the_run(environment) -> None:
    at = _run(_training_script)
    assert at.title[0].value == "Training runs"
    chosen = at.multiselect[0]
    assert "smoke" in chosen.options
    from forensics.checkpoint import shipped_checkpoints

    shipped = [path.name for path in shipped_checkpoints() if (path / "history.csv").is_file()]
    assert shipped and set(shipped) <= set(chosen.options)  # every shipped model's history
    # The shipped model's history is preselected where it exists; overlay the smoke run on it.
    runs = [*chosen.value, "smoke"] if "smoke" not in chosen.value else chosen.value
    chosen.set_value(runs).run()
    at.selectbox[0].set_value("accuracy").run()
    assert not at.exception, at.exception
    labels = [e.label for e in at.expander]
    assert len(labels) == len(runs) and all("best epoch" in label for label in labels)
    assert any(label.startswith("smoke: best epoch") for label in labels)


def _errors_script() -> None:
    from forensics.ui.common import draw_sidebar
    from forensics.ui.errors import errors_page

    draw_sidebar()
    errors_page()


def test_error_browser_filters_and_shows_heatmaps(environment) -> None:
    at = _run(_errors_script)
    assert at.title[0].value == "Error browser"
    at.radio[0].set_value(STORED).run()  # another test's cached evaluation would come first
    summary = _caption_with(at, "false positives")
    shown = at.multiselect[0]
    shown.set_value(["false_positive", "false_negative", "uncertain_correct"]).run()
    assert not at.exception, at.exception
    # Everything in the stored test split is now listed: errors plus the correct ones.
    test_rows = len(pd.read_csv(environment["checkpoint"] / "eval" / "predictions.csv"))
    label = next(b for b in at.get("download_button")).proto.label
    assert label == f"Download these {test_rows} rows as CSV"
    assert "Detail" in [h.value for h in at.subheader]
    assert any("why fake" in c for image in at.image for c in image.captions)
    assert f"among {test_rows} images" in summary


@pytest.mark.parametrize("script", [_errors_script, _evaluation_script], ids=["errors", "eval"])
def test_stored_results_against_another_dataset_say_so_once(
    environment, monkeypatch, tmp_path, script
) -> None:
    # The sidebar's folder is another dataset: the stored paths must not be read from it.
    other = write_dataset(tmp_path / "sdcoco", per_class=3)
    monkeypatch.setenv("FORENSICS_DATASET", str(other))
    at = _run(script)
    at.radio[0].set_value(STORED).run()
    assert not at.exception, at.exception
    (warning,) = at.warning  # one sentence, no box per unreadable file
    assert "The stored evaluation was made on data (20 images, fingerprint" in warning.value
    assert f"({other}) is not that dataset" in warning.value
    assert "set the dataset folder in the sidebar to data" in warning.value
    assert ON_DATASET in warning.value
    assert not [w for w in at.warning if "Cannot read" in w.value]
    if script is _errors_script:
        assert not at.info and not at.image  # the rows, without thumbnails or a second note
        assert len(at.dataframe[0].value) > 0
        assert "Detail" not in [h.value for h in at.subheader]
    else:
        assert at.dataframe[0].value["metric"].iloc[0] == "Accuracy"  # figures still shown


def test_stored_results_on_their_own_dataset_show_thumbnails(environment) -> None:
    at = _run(_errors_script)
    at.radio[0].set_value(STORED).run()
    assert not at.warning and at.image


def test_stored_results_without_a_folder_name_the_dataset_they_need(
    environment, monkeypatch
) -> None:
    monkeypatch.setenv("FORENSICS_DATASET", "")
    at = _run(_errors_script)
    at.radio[0].set_value(STORED).run()
    (info,) = at.info
    assert info.value.startswith("Thumbnails and heatmaps need the images of data (20 images")


def test_the_mismatch_message_offers_the_download_of_a_public_dataset(tmp_path) -> None:
    from forensics.ui.results import evaluated_dataset, mismatch_message

    # A checkpoint published before evaluations recorded their dataset: model.json tells.
    counts = {"test": {"real": 2, "fake": 1}, "train": {"real": 5}}
    metadata = {
        "dataset": {"root": "../shared/data/cifake", "fingerprint": "6b7bc121", "counts": counts}
    }
    dataset = evaluated_dataset({"split": "test"}, metadata)
    assert dataset == {"name": "cifake", "files": 8, "fingerprint": "6b7bc121"}
    message = mismatch_message(dataset, tmp_path, missing=2, total=3)
    assert "2 of the 3 evaluated images are missing there" in message
    assert "`python -m forensics.datasets download cifake --to DIR`" in message
    assert evaluated_dataset({}, {})["name"] is None
    assert "the checkpoint's training data" in mismatch_message(
        evaluated_dataset({}, {}), tmp_path, missing=3, total=3
    )


def test_error_selection_logic() -> None:
    from forensics.ui.errors import classify_rows, select_rows

    table = pd.DataFrame(
        {
            "path": list("abcdef"),
            "label": [0, 0, 1, 1, 0, 1],
            "prob_fake": [0.9, 0.2, 0.3, 0.8, 0.55, 0.51],
        }
    )
    rows = classify_rows(table, threshold=0.5)
    assert list(rows["kind"]) == [
        "false_positive",
        "correct",
        "false_negative",
        "correct",
        "false_positive",
        "correct",
    ]
    errors = select_rows(
        rows,
        ["false_positive", "false_negative"],
        confidence=(0.5, 1.0),
        uncertain_count=0,
        most_confident_first=True,
    )
    assert list(errors["path"]) == ["a", "c", "e"]  # confidence 0.9, 0.7, 0.55
    confident = select_rows(
        rows,
        ["false_positive"],
        confidence=(0.6, 1.0),
        uncertain_count=0,
        most_confident_first=True,
    )
    assert list(confident["path"]) == ["a"]
    unsure = select_rows(
        rows,
        ["uncertain_correct"],
        confidence=(0.5, 1.0),
        uncertain_count=1,
        most_confident_first=False,
    )
    assert list(unsure["path"]) == ["f"]  # the correct verdict closest to the threshold


def _dataset_script() -> None:
    from forensics.ui.common import draw_sidebar
    from forensics.ui.dataset import dataset_page

    draw_sidebar()
    dataset_page()


def test_dataset_page_reports_counts_shortcuts_and_duplicates(environment) -> None:
    at = _run(_dataset_script)
    assert at.title[0].value == "Dataset analysis"
    assert "20 readable images (10 real, 10 fake)" in _caption_with(at, "readable images")
    # The tiny dataset's classes are all 32x32 PNGs: no shortcut, no duplicates.
    assert any("match in file format" in s.value for s in at.success)
    assert any("No byte-identical files" in s.value for s in at.success)


def test_dataset_page_names_a_shortcut_and_leakage(tmp_path, monkeypatch, environment) -> None:
    root = write_dataset(tmp_path / "skewed", per_class=4, splits=("train", "test"))
    for path in (root / "train" / "fake").glob("*.png"):
        with Image.open(path) as image:
            image.save(path.with_suffix(".bmp"))  # a format only fakes have
        path.unlink()
    leaked = root / "train" / "real" / "real_000.png"
    (root / "test" / "real" / "copy.png").write_bytes(leaked.read_bytes())
    monkeypatch.setenv("FORENSICS_DATASET", str(root))
    at = _run(_dataset_script)
    assert any("File format differs by class" in w.value for w in at.warning)
    assert any("cross splits" in e.value and "1 cross" in e.value for e in at.error)


def test_dataset_page_without_images(tmp_path, monkeypatch, environment) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FORENSICS_DATASET", str(tmp_path / "empty"))
    at = _run(_dataset_script)
    assert any("no image files" in e.value for e in at.error)


def _evaluate_if_asked(at: AppTest) -> None:
    for button in [b for b in at.button if b.label.startswith("Evaluate ")]:
        button.click().run()
    assert not at.exception, at.exception


def test_two_checkpoints_compared_on_the_same_images(environment, tiny_checkpoint) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("all").run()
    _evaluate_if_asked(at)  # an earlier test may have cached this checkpoint's results
    choice = next(s for s in at.selectbox if s.label == "Other checkpoint")
    assert "default" in choice.options  # the shipped models are one click away
    choice.set_value(OTHER_CHECKPOINT).run()
    other = next(t for t in at.text_input if t.label == "Other checkpoint directory")
    other.set_value(str(tiny_checkpoint)).run()
    _evaluate_if_asked(at)
    assert not at.exception, at.exception
    assert "on the same 20 images" in _caption_with(at, "on the same")
    # The comparison is the table indexed by metric (the robustness table comes after it).
    comparison = next(d.value for d in at.dataframe if "Accuracy" in d.value.index)
    assert comparison.shape == (9, 2)  # nine metrics, two checkpoints
    # Each column's accuracy is its checkpoint's share of right calls on the 20 images.
    from forensics import load_detector

    paths = sorted(Path(environment["data"]).rglob("*.png"))
    labels = np.array([path.parent.name == "fake" for path in paths])
    expected = []
    for checkpoint in (environment["checkpoint"], tiny_checkpoint):
        verdicts = load_detector(checkpoint).predict_batch(paths)
        calls = np.array([v.prob_fake >= v.threshold for v in verdicts])
        expected.append(float(np.mean(calls == labels)))
    np.testing.assert_allclose(comparison.loc["Accuracy"].to_numpy(float), expected, atol=1e-9)


def test_error_selection_with_decisions() -> None:
    from forensics.ui.errors import classify_rows, select_rows, shorten_reasons

    table = pd.DataFrame(
        {
            "path": list("abcde"),
            "label": [0, 0, 1, 1, 0],
            "prob_fake": [0.9, 0.2, 0.3, 0.55, 0.52],
            "decision": ["fake", "real", "unsure", "unsure", "unsure"],
            "reasons": ["", "", "close to the threshold", "unstable | close", "odd size"],
        }
    )
    rows = classify_rows(table, threshold=0.5)
    assert list(rows["kind"]) == [
        "false_positive",
        "correct",
        "false_negative",
        "correct",
        "false_positive",
    ]  # the kinds stay thresholded calls, unsure or not
    assert list(rows["decision"]) == list(table["decision"])
    options = {"confidence": (0.5, 1.0), "uncertain_count": 0, "most_confident_first": True}
    unsure = select_rows(rows, ["unsure"], **options)
    assert list(unsure["path"]) == ["c", "d", "e"]  # right or wrong, by confidence .7, .55, .52
    assert list(unsure["reasons"]) == ["close to the threshold", "unstable | close", "odd size"]
    errors = select_rows(rows, ["false_positive", "false_negative"], **options)
    assert list(errors["path"]) == ["a", "c", "e"]  # unsure errors are still errors
    both = select_rows(rows, ["false_positive", "false_negative", "unsure"], **options)
    assert list(both["path"]) == ["a", "c", "d", "e"]  # each row once
    assert {"decision", "reasons"} <= set(both.to_csv(index=False).splitlines()[0].split(","))
    assert shorten_reasons("unstable | close") == "unstable (+1 more)"
    assert shorten_reasons("x" * 100, limit=10) == "x" * 9 + "…"
    # A table made before decisions: every image answered with the call shown, no reasons.
    old = classify_rows(table.drop(columns=["decision", "reasons"]), threshold=0.5)
    assert list(old["decision"]) == ["fake", "real", "real", "fake", "fake"]
    assert (old["reasons"] == "").all()
    assert select_rows(old, ["unsure"], **options).empty


def _checkpoint_with_evaluation(environment, monkeypatch, tmp_path, table, metrics) -> Path:
    """A copy of the published checkpoint whose stored evaluation is `table` and `metrics`."""
    from forensics.evaluation import write_evaluation

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(environment["checkpoint"], checkpoint, ignore=shutil.ignore_patterns("eval*"))
    write_evaluation(checkpoint / "eval", table, {**metrics, "split": "test"})
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(checkpoint))
    return checkpoint


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _figures(at: AppTest) -> list[dict]:
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _figure_titled(at: AppTest, start: str) -> dict:
    titles = [(f, f["layout"].get("title", {}).get("text", "")) for f in _figures(at)]
    return next(f for f, title in titles if title.startswith(start))


def _table_with_decisions(data: Path) -> tuple[pd.DataFrame, dict, list[int]]:
    """All 20 images of the published dataset with seeded scores, five of them unsure."""
    from types import SimpleNamespace

    import numpy as np

    from forensics.evaluation import (
        build_predictions_table,
        compute_metrics,
        compute_selective_metrics,
    )

    paths = [f"{c}/{c}_{i:03d}.png" for c in ("real", "fake") for i in range(10)]
    assert all((data / p).is_file() for p in paths)
    labels = np.array([0] * 10 + [1] * 10)
    rng = np.random.default_rng(7)
    probs = np.clip(labels * 0.5 + rng.random(20) * 0.6 - 0.05, 0.01, 0.99)
    probs[[2, 13]] = [0.8, 0.2]  # two confident mistakes among the answered images
    raw = 0.5 + (probs - 0.5) * 0.5  # the uncalibrated scores: squeezed towards 0.5
    unsure = [1, 4, 12, 15, 19]
    reasons = {
        1: ["the score is close to the threshold"],
        4: ["the verdict changes under a harmless JPEG re-save (q90)", "the image is tiny"],
        12: ["unlike the training images: " + "an unusual size and format " * 4],
        15: ["the score is close to the threshold"],
        19: ["the verdict changes under a harmless rescale 0.9x"],
    }
    called = np.where(probs >= 0.5, "fake", "real")
    verdicts = [
        SimpleNamespace(
            prob_fake_raw=float(raw[i]),
            decision="unsure" if i in unsure else str(called[i]),
            reasons=reasons.get(i, []),
        )
        for i in range(20)
    ]
    table = build_predictions_table(
        paths, labels, probs, threshold=0.5, splits=["test"] * 20, verdicts=verdicts
    )
    metrics = compute_metrics(labels, probs, threshold=0.5)
    metrics.update(compute_selective_metrics(labels, table["decision"]))
    return table, metrics, unsure


def test_evaluation_page_on_a_table_without_decisions(environment, monkeypatch, tmp_path) -> None:
    from forensics.evaluation import compute_metrics

    stored = pd.read_csv(environment["checkpoint"] / "eval" / "predictions.csv")
    old = stored.drop(columns=["prob_fake_raw", "decision", "reasons"], errors="ignore")
    metrics = compute_metrics(old["label"], old["prob_fake"], threshold=0.5)
    _checkpoint_with_evaluation(environment, monkeypatch, tmp_path, old, metrics)
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert not at.exception, at.exception
    assert any("predates decisions" in c.value for c in at.caption)
    assert _metric(at, "Answered (coverage)") == "100.0%"
    assert _metric(at, "Unsure") == "0"
    accuracy = float((old["predicted"] == old["true"]).mean())
    assert _metric(at, "Accuracy on answered") == f"{accuracy:.1%}"
    assert _figure_titled(at, "Answering fewer images")
    assert _figure_titled(at, "Reliability (ECE ")  # no raw scores: one curve

    errors = _run(_errors_script)
    errors.radio[0].set_value(STORED).run()
    assert "none unsure" in _caption_with(errors, "false positives")
    errors.multiselect[0].set_value(["unsure"]).run()
    assert not errors.exception, errors.exception
    (info,) = errors.info
    assert "predates decisions" in info.value
    assert next(iter(errors.get("download_button"))).proto.label == "Download these 0 rows as CSV"


def test_evaluation_and_errors_pages_show_the_decisions(environment, monkeypatch, tmp_path) -> None:
    from forensics.evaluation import expected_calibration_error

    table, metrics, unsure = _table_with_decisions(environment["data"])
    _checkpoint_with_evaluation(environment, monkeypatch, tmp_path, table, metrics)
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert not at.exception, at.exception
    assert not any("predates decisions" in c.value for c in at.caption)
    answered = [i for i in range(20) if i not in unsure]
    right = sum(table["decision"][i] == table["true"][i] for i in answered)
    expected = {
        "Answered (coverage)": f"{15 / 20:.1%}",
        "Accuracy on answered": f"{right / 15:.1%}",
        "Confident and wrong": f"{(15 - right) / 20:.1%}",
        "Unsure": "5",
    }
    assert metrics["coverage"] == 0.75 and 0 < right < 15  # some answered images are wrong
    assert {label: _metric(at, label) for label in expected} == expected
    curve = _figure_titled(at, "Answering fewer images")
    point = curve["data"][-1]
    assert point["x"] == [0.75] and point["y"][0] == pytest.approx(1 - right / 15)
    reliability = _figure_titled(at, "Reliability before and after calibration")
    raw_ece = expected_calibration_error(table["label"], table["prob_fake_raw"])
    ece = expected_calibration_error(table["label"], table["prob_fake"])
    assert f"ECE {raw_ece:.4f} → {ece:.4f}" in reliability["layout"]["title"]["text"]
    # The slider moves the thresholded metrics only, not what the decisions are worth.
    next(s for s in at.slider if s.label.startswith("Decision threshold")).set_value(0.9).run()
    assert {label: _metric(at, label) for label in expected} == expected

    errors = _run(_errors_script)
    errors.radio[0].set_value(STORED).run()
    assert "5 unsure (the model did not answer)" in _caption_with(errors, "false positives")
    errors.multiselect[0].set_value(["unsure"]).run()
    assert not errors.exception, errors.exception
    label = next(iter(errors.get("download_button"))).proto.label
    assert label == "Download these 5 rows as CSV"
    unsure_paths = {table["path"][i] for i in unsure}
    assert set(next(s for s in errors.selectbox if s.label == "Image").options) == unsure_paths
    captions = [c for image in errors.image for c in image.captions if c.startswith("Unsure")]
    assert len(captions) == 5
    for i in unsure:
        name = table["path"][i].rsplit("/", 1)[-1]
        (caption,) = [c for c in captions if name in c]
        first = table["reasons"][i].split(" | ")[0]
        assert first[:40] in caption  # shortened, but there
    assert "(+1 more)" in next(c for c in captions if "real_004.png" in c)
    # The detail table has the chosen image's reasons in full.
    shown = next(s for s in errors.selectbox if s.label == "Image").value
    detail = errors.table[0].value
    full = table.set_index("path")["reasons"][shown]
    assert full in detail.astype(str).to_numpy().ravel().tolist()


def test_the_stability_check_is_a_choice_with_its_own_cached_results(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("all").run()
    box = next(c for c in at.checkbox if c.label.startswith("Include the stability check"))
    assert box.value is False  # five passes per image: a choice, not the default
    _evaluate_if_asked(at)
    assert "decisions without the stability check" in _caption_with(at, "Checkpoint")
    next(c for c in at.checkbox if c.label.startswith("Include the stability")).check().run()
    assert [b for b in at.button if b.label.startswith("Evaluate 20 images")]  # not the other's
    _evaluate_if_asked(at)
    assert "without the stability check" not in _caption_with(at, "Checkpoint")
    assert "20 images" in _caption_with(at, "Checkpoint")


def _sweep_radio(at: AppTest):
    return next(r for r in at.radio if r.label == "Sweep")


def test_the_stored_robustness_sweep_is_drawn_with_its_command(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert _sweep_radio(at).value == STORED_SWEEP
    assert any(s.value.startswith("Robustness") for s in at.subheader)
    table = next(d.value for d in at.dataframe if "share_flipped" in d.value.columns)
    assert table["setting"].iloc[0] == "clean (as stored)" and len(table) == 19
    assert any("python -m forensics robustness --data" in c.value for c in at.code)
    chart = at.get("plotly_chart")
    assert any("JPEG quality" in element.proto.spec for element in chart)


def test_a_new_robustness_sweep_runs_on_the_evaluated_images_and_is_cached(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(ON_DATASET).run()
    next(s for s in at.selectbox if s.label == "Split").set_value("all").run()
    _evaluate_if_asked(at)
    _sweep_radio(at).set_value(NEW_SWEEP).run()
    next(n for n in at.number_input if n.label.startswith("At most")).set_value(6).run()
    button = next(b for b in at.button if b.label.startswith("Sweep "))
    assert button.label == "Sweep 6 images under 18 perturbations"
    button.click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "share_flipped" in d.value.columns)
    assert list(table["n"].unique()) == [6] and table["share_flipped"].iloc[0] == 0
    again = _run(_evaluation_script)  # a new session: from the disk cache, no button
    _sweep_radio(again).set_value(NEW_SWEEP).run()
    next(n for n in again.number_input if n.label.startswith("At most")).set_value(6).run()
    assert not [b for b in again.button if b.label.startswith("Sweep ")]


def test_a_new_sweep_needs_an_evaluation_on_the_dataset(environment, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(_copy_without_sweep(environment, tmp_path)))
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert any("ships no robustness sweep" in i.value for i in at.info)
    _sweep_radio(at).set_value(NEW_SWEEP).run()
    assert any("Evaluate on the sidebar's dataset" in i.value for i in at.info)


def test_a_stored_sweep_of_other_weights_is_not_shown(environment, tmp_path, monkeypatch) -> None:
    copy = tmp_path / "replaced"
    shutil.copytree(environment["checkpoint"], copy, ignore=shutil.ignore_patterns("eval_cache"))
    record_file = copy / "robustness" / "robustness.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "checkpoint_id": "0123456789ab"}))
    monkeypatch.setenv("FORENSICS_CHECKPOINT", str(copy))
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    assert any("measured on other weights" in w.value for w in at.warning)
    assert not [d for d in at.dataframe if "share_flipped" in d.value.columns]


def _copy_without_sweep(environment, tmp_path: Path) -> Path:
    copy = tmp_path / "no_sweep"
    shutil.copytree(environment["checkpoint"], copy, ignore=shutil.ignore_patterns("eval_cache"))
    shutil.rmtree(copy / "robustness")
    return copy


def test_the_evaluation_page_compares_the_faithfulness_of_cam_methods(environment) -> None:
    at = _run(_evaluation_script)
    at.radio[0].set_value(STORED).run()
    next(n for n in at.number_input if n.label == "Images in the sample").set_value(8)
    next(m for m in at.multiselect if m.label == "Methods").set_value(["gradcam", "eigencam"])
    next(b for b in at.button if b.label == "Measure").click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "faithfulness (mean)" in d.value.columns)
    n = int(table["n"].iloc[0])  # the stored evaluation's images, at most the 8 asked for
    assert sorted(table["method"]) == ["eigencam", "gradcam"] and 0 < n <= 8
    assert (table["n"] == n).all() and table["faithfulness (mean)"].is_monotonic_decreasing
    best = table["method"].iloc[0]
    assert any(f"{best} is the most faithful of 2 methods on {n} images" in m.value
               for m in at.markdown)  # fmt: skip
