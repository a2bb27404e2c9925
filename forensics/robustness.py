"""Robustness: how a detector's verdicts survive JPEG re-saves, resizing, blur, noise and crops,
measured over a dataset (`python -m forensics robustness`).

Every selected image is judged clean, then once per setting (a perturbation at a strength) as
the file a user would get (`forensics.perturb.perturb_file`: the JPEG at that quality, or the
changed picture saved again as the original was), with every check of a single verdict. Per
setting: accuracy, ROC-AUC, the share of images whose thresholded call differs from the clean one
(`share_flipped`) and the share the detector answers (`answered`, the rest being `unsure`).

Resumable the way an evaluation is finished: each setting's verdicts are written with
`forensics.evaluation.write_evaluation` into OUT/parts/<setting>/ (predictions.csv, then
metrics.json with its digest and the sweep's key: checkpoint, trust profile, images, checks), and
a rerun keeps every part that `read_evaluation` reads back whole under the same key. A sweep
killed midway redoes only the setting it was in.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forensics.atomic import file_sha256, write_atomic, write_text_atomic
from forensics.data import LABEL_NAMES, dataset_fingerprint
from forensics.evaluation import (
    IncompleteEvaluationError,
    compute_metrics,
    compute_selective_metrics,
    judge_files,
    predict_rows,
    read_evaluation,
    write_evaluation,
)
from forensics.perturb import PERTURBATIONS, perturb_file, perturbation_kind

CLEAN = "clean"
SUMMARY_FILE, RECORD_FILE, FIGURE_FILE = "robustness.csv", "robustness.json", "robustness.html"
PARTS = "parts"
STORED_FOLDER = "robustness"  # CHECKPOINT/robustness/: a checkpoint's own sweep (its csv, json)
SAMPLE_SEED = 0
COLUMNS = (
    "perturbation", "strength", "setting", "n", "accuracy", "roc_auc", "share_flipped",
    "answered", "accuracy_answered", "confident_wrong",
)  # fmt: skip


class IncompleteSweepError(ValueError):
    """A sweep folder without a finished, consistent robustness.csv and robustness.json."""


class StaleSweepError(ValueError):
    """A sweep of other weights than those of the checkpoint it is read for."""


def check_sweep_is_of(record: Mapping[str, Any], checkpoint_id: str, where: object) -> None:
    """StaleSweepError unless the sweep's `record` names these weights (a Detector's
    `checkpoint_id`): a stored sweep says nothing about weights published after it."""
    if record.get("checkpoint_id") != checkpoint_id:
        raise StaleSweepError(
            f"{where} is a sweep of checkpoint {record.get('checkpoint_id')}, not of "
            f"{checkpoint_id}"
        )


@dataclass(frozen=True)
class Setting:
    """One column of the sweep: `perturbation` (a PERTURBATIONS name, or "clean") at
    `strength` (None for clean)."""

    perturbation: str
    strength: float | None = None

    @property
    def folder(self) -> str:
        """'clean', 'jpeg_70', 'scale_0.5': a file name."""
        return (
            self.perturbation if self.strength is None else f"{self.perturbation}_{self.strength:g}"
        )

    def describe(self) -> str:
        if self.strength is None:
            return "clean (as stored)"
        return PERTURBATIONS[self.perturbation].describe(self.strength)


def parse_settings(specs: Sequence[str] | None = None) -> list[Setting]:
    """The settings of `specs`, each 'NAME' (its sweep strengths) or 'NAME=S1,S2' (those), the
    clean setting first; None or empty: every perturbation at its sweep strengths. ValueError,
    in one sentence, for an unknown name or a strength out of its range."""
    settings = [Setting(CLEAN)]
    for spec in specs or list(PERTURBATIONS):
        name, _, values = spec.partition("=")
        kind = perturbation_kind(name.strip())
        strengths = kind.sweep
        if values.strip():
            try:
                strengths = tuple(float(v) for v in values.split(","))
            except ValueError:
                raise ValueError(
                    f"{kind.name} strengths must be numbers separated by commas, got {values!r}"
                ) from None
        for strength in strengths:
            setting = Setting(kind.name, float(kind.check(strength)))
            if setting not in settings:
                settings.append(setting)
    return settings


def select_rows(manifest: pd.DataFrame, *, max_images: int | None = None) -> pd.DataFrame:
    """At most `max_images` rows of `manifest` (a seeded sample, in manifest order)."""
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    if max_images is not None and len(manifest) > max_images:
        manifest = manifest.sample(max_images, random_state=SAMPLE_SEED).sort_index()
    return manifest.reset_index(drop=True)


def judge_setting(
    detector,
    root: str | Path,
    rows: pd.DataFrame,
    setting: Setting,
    *,
    stability: bool = True,
    batch_size: int = 64,
    progress_callback: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per manifest row: path, label, prob_fake, predicted ('real'|'fake': the
    thresholded call), decision ('real'|'fake'|'unsure') and checkpoint. The clean setting runs
    exactly `python -m forensics evaluate`'s path."""
    options = {"batch_size": batch_size, "stability": stability, "progress": False,
               "progress_callback": progress_callback}  # fmt: skip
    if setting.strength is None:
        verdicts = predict_rows(detector, root, rows, **options)
    else:
        change = partial(perturb_file, name=setting.perturbation, strength=setting.strength)
        verdicts = judge_files(detector, root, rows, change=change, **options)
    return pd.DataFrame(
        {
            "path": rows["path"].to_numpy(),
            "label": rows["label"].astype(int).to_numpy(),
            "prob_fake": [v.prob_fake for v in verdicts],
            "predicted": [v.label for v in verdicts],
            "decision": [v.decision for v in verdicts],
            "checkpoint": [v.checkpoint for v in verdicts],
        }
    )


def summarize_setting(setting: Setting, table: pd.DataFrame, clean: pd.DataFrame) -> dict:
    """The sweep's row of one setting from its table and the clean one (same images, same
    order): accuracy of the thresholded calls, ROC-AUC of prob_fake (None with one class),
    share_flipped, and what the decisions are worth."""
    labels = table["label"].to_numpy(dtype=int)
    called = table["predicted"].to_numpy(dtype=str)
    if not np.array_equal(table["path"].to_numpy(), clean["path"].to_numpy()):
        raise ValueError(f"{setting.folder}: its images differ from the clean setting's")
    selective = compute_selective_metrics(labels, table["decision"].to_numpy(dtype=str))
    return {
        "perturbation": setting.perturbation,
        "strength": setting.strength,
        "setting": setting.describe(),
        "n": len(table),
        "accuracy": float((called == np.array(LABEL_NAMES)[labels]).mean()),
        "roc_auc": compute_metrics(labels, table["prob_fake"])["roc_auc"],
        "share_flipped": float((called != clean["predicted"].to_numpy(dtype=str)).mean()),
        "answered": selective["coverage"],
        "accuracy_answered": selective["selective_accuracy"],
        "confident_wrong": selective["confident_wrong_rate"],
    }


def sweep_key(detector, rows: pd.DataFrame, *, stability: bool) -> dict:
    """What a stored part must match to be reused."""
    return {
        "checkpoint_id": detector.checkpoint_id,
        "trust_id": detector.trust_id,
        "images": dataset_fingerprint(rows),
        "n": len(rows),
        "stability": stability,
    }


def run_sweep(
    detector,
    root: str | Path,
    rows: pd.DataFrame,
    out: str | Path,
    *,
    settings: Sequence[Setting] | None = None,
    stability: bool = True,
    batch_size: int = 64,
    record: dict | None = None,
    progress: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Judge `rows` clean and under each setting, resuming from OUT/parts; write OUT/
    robustness.csv (COLUMNS, one row per setting, clean first), robustness.html (the curves) and
    robustness.json (`record`, e.g. the command, with the sweep's key). Returns the table.
    `progress_callback(done, total)` counts image judgements over the whole sweep."""
    from tqdm.auto import tqdm

    if rows.empty:
        raise ValueError("nothing to sweep: the selection holds no images")
    settings = list(settings or parse_settings())
    if settings[0] != Setting(CLEAN):
        settings = [Setting(CLEAN), *(s for s in settings if s != Setting(CLEAN))]
    out = Path(out)
    key = sweep_key(detector, rows, stability=stability)
    total = len(rows) * len(settings)
    tables: dict[Setting, pd.DataFrame] = {}
    with tqdm(total=total, desc="robustness", unit="img", disable=not progress) as bar:
        for setting in settings:
            done = bar.n
            bar.set_postfix_str(setting.describe())
            tables[setting] = _part(
                detector, root, rows, setting, out / PARTS / setting.folder, key,
                stability=stability, batch_size=batch_size,
                progress=lambda n, _, done=done: _advance(bar, done + n, total, progress_callback),
            )  # fmt: skip
            _advance(bar, done + len(rows), total, progress_callback)
    clean = tables[Setting(CLEAN)]
    summary = pd.DataFrame(
        [summarize_setting(s, tables[s], clean) for s in settings], columns=list(COLUMNS)
    )
    write_sweep(out, summary, {**(record or {}), **key, "checkpoint": detector.name})
    return summary


def _advance(bar, done: int, total: int, callback) -> None:
    bar.update(done - bar.n)
    if callback is not None:
        callback(done, total)


def _part(detector, root, rows, setting, folder: Path, key: dict, *, stability, batch_size,
          progress) -> pd.DataFrame:  # fmt: skip
    """The setting's table: read back from `folder` when it was finished under `key`, else
    judged and written there."""
    try:
        table, metrics = read_evaluation(folder)
        if all(metrics.get(k) == v for k, v in key.items()) and metrics.get("setting") == [
            setting.perturbation,
            setting.strength,
        ]:
            return table
    except IncompleteEvaluationError:
        pass  # never run, or cut short: judged again
    table = judge_setting(
        detector, root, rows, setting, stability=stability, batch_size=batch_size,
        progress_callback=progress,
    )  # fmt: skip
    write_evaluation(folder, table, {**key, "setting": [setting.perturbation, setting.strength]})
    return table


def write_sweep(out: str | Path, summary: pd.DataFrame, record: dict) -> None:
    """robustness.csv, robustness.html, then robustness.json (last, with the table's digest:
    a folder whose json is missing or does not match is not a finished sweep)."""
    from forensics.plots import plot_robustness

    out = Path(out)
    table = out / SUMMARY_FILE
    write_atomic(table, lambda tmp: summary.to_csv(tmp, index=False))
    figure = plot_robustness(summary, title=record.get("title"))
    write_atomic(out / FIGURE_FILE, lambda tmp: figure.write_html(tmp, include_plotlyjs=True))
    record = {**record, "summary_sha256": file_sha256(table)}
    write_text_atomic(out / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def read_sweep(folder: str | Path) -> tuple[pd.DataFrame, dict]:
    """The table and record `write_sweep` wrote; IncompleteSweepError where there is no
    finished sweep, or its files do not belong together."""
    folder = Path(folder)
    table_file, record_file = folder / SUMMARY_FILE, folder / RECORD_FILE
    if not (table_file.is_file() and record_file.is_file()):
        raise IncompleteSweepError(f"{folder} holds no finished robustness sweep")
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        table = pd.read_csv(table_file)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncompleteSweepError(f"{folder}: unreadable sweep files ({exc})") from None
    if not isinstance(record, dict) or record.get("summary_sha256") != file_sha256(table_file):
        raise IncompleteSweepError(
            f"{folder}: {SUMMARY_FILE} does not match {RECORD_FILE}; run the sweep again"
        )
    if not set(COLUMNS) <= set(table.columns):
        raise IncompleteSweepError(f"{folder}: {SUMMARY_FILE} lacks the sweep's columns")
    table["strength"] = table["strength"].astype(float)
    return table, record


def describe_row(row: pd.Series | dict) -> str:
    """'JPEG quality 70: accuracy 0.91, 14% of verdicts flip, 60% answered'."""
    text = f"{row['setting']}: accuracy {row['accuracy']:.2f}"
    if row["perturbation"] != CLEAN:
        text += f", {row['share_flipped']:.0%} of verdicts flip"
    return text + f", {row['answered']:.0%} answered"


def sweep_command(
    data: str | Path,
    checkpoint: str | Path | None,
    out: str | Path,
    *,
    split: str = "all",
    splits: str | Path | None = None,
    max_images: int | None = None,
    stability: bool = True,
    perturbations: Sequence[str] = (),
) -> str:
    """The command line that runs this sweep (recorded with it, and printed in model cards)."""
    words = ["python", "-m", "forensics", "robustness", "--data", str(data), "--split", split]
    if splits is not None:
        words += ["--splits", str(splits)]
    if checkpoint is not None:  # None: the shipped default
        words += ["--checkpoint", str(checkpoint)]
    if max_images is not None:
        words += ["--max-images", str(max_images)]
    if not stability:
        words.append("--no-stability")
    for spec in perturbations:
        words += ["--perturbation", spec]
    return shlex.join([*words, "--out", str(out)])


def compare_verdicts(before, after, change: str) -> str:
    """One sentence on what `change` did to a verdict: whether the decision and the call held,
    and how far P(fake) moved."""
    moved = f"P(fake) {before.prob_fake:.3f} -> {after.prob_fake:.3f}"
    if before.decision != after.decision:
        text = f"Under {change} the decision changes from {before.decision} to {after.decision}"
    else:
        text = f"Under {change} the decision stays {before.decision}"
    if before.label != after.label:
        text += f"; the thresholded call flips from {before.label} to {after.label}"
    return f"{text} ({moved})."
