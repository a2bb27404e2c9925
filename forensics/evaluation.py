"""Pure functions on (labels, prob_fake, threshold): metrics, curves, calibration and the
predictions table. Fake (1) is the positive class: a true positive is a generated image caught.

Shapes: `labels` (N,) ints in {0, 1}; `prob_fake` (N,) floats in [0, 1].
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from forensics.atomic import file_sha256, write_atomic, write_text_atomic
from forensics.data import LABEL_NAMES
from forensics.images import ImageInfo


def _as_arrays(labels: Sequence[int], prob_fake: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    # Checked as floats before the cast: a label of 0.5 must be refused, not truncated to 0.
    y_raw = np.asarray(labels, dtype=float).ravel()
    p = np.asarray(prob_fake, dtype=float).ravel()
    if y_raw.shape != p.shape:
        raise ValueError(f"labels {y_raw.shape} and prob_fake {p.shape} differ in length")
    if y_raw.size and not np.isin(y_raw, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    y = y_raw.astype(int)
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("prob_fake must be finite and within [0, 1]")
    return y, p


def predict_labels(prob_fake: Sequence[float], *, threshold: float = 0.5) -> np.ndarray:
    """1 (fake) where prob_fake >= threshold, else 0 (real)."""
    return (np.asarray(prob_fake, dtype=float) >= threshold).astype(int)


def compute_confusion(
    labels: Sequence[int], prob_fake: Sequence[float], *, threshold: float = 0.5
) -> dict[str, int]:
    """Counts tp, fp, tn, fn with fake as the positive class."""
    y, p = _as_arrays(labels, prob_fake)
    tn, fp, fn, tp = skm.confusion_matrix(
        y, predict_labels(p, threshold=threshold), labels=[0, 1]
    ).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def compute_metrics(
    labels: Sequence[int],
    prob_fake: Sequence[float],
    *,
    threshold: float = 0.5,
    n_bins: int = 15,
) -> dict[str, float | int | None]:
    """Accuracy, precision, recall, F1, specificity, balanced accuracy, ROC-AUC, average
    precision, ECE, log loss and the confusion counts. Undefined values (AUC with one class
    present, say) are None, never a made-up number."""
    y, p = _as_arrays(labels, prob_fake)
    if y.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    pred = predict_labels(p, threshold=threshold)
    confusion = compute_confusion(y, p, threshold=threshold)
    tn, fp = confusion["tn"], confusion["fp"]
    both_classes = len(np.unique(y)) == 2
    return {
        "n": int(y.size),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)) if both_classes else None,
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else None,
        "average_precision": float(skm.average_precision_score(y, p)) if both_classes else None,
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        **confusion,
    }


def compute_roc_curve(labels: Sequence[int], prob_fake: Sequence[float]) -> dict[str, np.ndarray]:
    """fpr, tpr and the thresholds at which they are reached (sklearn's roc_curve)."""
    y, p = _as_arrays(labels, prob_fake)
    fpr, tpr, thresholds = skm.roc_curve(y, p)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def compute_pr_curve(labels: Sequence[int], prob_fake: Sequence[float]) -> dict[str, np.ndarray]:
    """precision, recall and thresholds (sklearn's precision_recall_curve; fake is positive)."""
    y, p = _as_arrays(labels, prob_fake)
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    return {"precision": precision, "recall": recall, "thresholds": thresholds}


def compute_reliability(
    labels: Sequence[int], prob_fake: Sequence[float], *, n_bins: int = 15
) -> pd.DataFrame:
    """Per equal-width bin of prob_fake: count, mean prob_fake, observed share of fakes."""
    y, p = _as_arrays(labels, prob_fake)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = index == b
        count = int(mask.sum())
        rows.append(
            {
                "bin_low": edges[b],
                "bin_high": edges[b + 1],
                "count": count,
                "mean_prob_fake": float(p[mask].mean()) if count else math.nan,
                "fraction_fake": float(y[mask].mean()) if count else math.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(
    labels: Sequence[int], prob_fake: Sequence[float], *, n_bins: int = 15
) -> float:
    """Count-weighted mean |mean prob_fake - observed fraction of fakes| over equal-width bins."""
    table = compute_reliability(labels, prob_fake, n_bins=n_bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return math.nan
    gaps = (filled["mean_prob_fake"] - filled["fraction_fake"]).abs()
    return float((gaps * filled["count"]).sum() / filled["count"].sum())


def calibrated_ece_floor(
    prob_fake: Sequence[float], *, n_bins: int = 15, draws: int = 200, seed: int = 0
) -> float:
    """The ECE a perfectly calibrated model would still show on these N images, from sampling
    alone: the median ECE over `draws` label sets drawn from `prob_fake` itself. On a few hundred
    images it is far from zero, so a measured ECE near it is as good as calibration can show."""
    p = np.asarray(prob_fake, dtype=float)
    rng = np.random.default_rng(seed)
    values = [
        expected_calibration_error((rng.random(p.size) < p).astype(int), p, n_bins=n_bins)
        for _ in range(draws)
    ]
    return float(np.median(values))


def build_predictions_table(
    paths: Sequence[str],
    labels: Sequence[int],
    prob_fake: Sequence[float],
    *,
    threshold: float = 0.5,
    splits: Sequence[str | None] | None = None,
    verdicts: Sequence | None = None,
) -> pd.DataFrame:
    """One row per image: path, split, label (0/1), true and predicted names, prob_fake,
    correct, and error: 'false_positive' (real called fake) or 'false_negative' (fake called
    real), empty when correct. With `verdicts` (forensics.detector.Verdict, one per row) also
    prob_fake_raw, decision ('real' | 'fake' | 'unsure') and reasons (joined by ' | ')."""
    y, p = _as_arrays(labels, prob_fake)
    pred = predict_labels(p, threshold=threshold)
    error = np.where(pred == y, "", np.where(pred == 1, "false_positive", "false_negative"))
    names = np.array(LABEL_NAMES)
    table = pd.DataFrame(
        {
            "path": list(paths),
            "split": list(splits) if splits is not None else [None] * len(y),
            "label": y,
            "true": names[y],
            "predicted": names[pred],
            "prob_fake": p,
            "correct": pred == y,
            "error": error,
        }
    )
    if verdicts is not None:
        table["prob_fake_raw"] = [v.prob_fake_raw for v in verdicts]
        table["decision"] = [v.decision for v in verdicts]
        table["reasons"] = [REASON_SEPARATOR.join(v.reasons) for v in verdicts]
        # A verdict made before evidence was weighed was decided by its model.
        table["decided_by"] = [getattr(v, "decided_by", "model") for v in verdicts]
        table["model_decision"] = [getattr(v, "model_decision", v.decision) for v in verdicts]
    return table


REASON_SEPARATOR = " | "


def decisions_of(table: pd.DataFrame) -> np.ndarray:
    """Each row's decision: the stored one, or the thresholded call for a table made before
    decisions were recorded (every image then counts as answered)."""
    if "decision" in table.columns:
        return table["decision"].astype(str).to_numpy()
    return table["predicted"].astype(str).to_numpy()


def compute_selective_metrics(labels: Sequence[int], decisions: Sequence[str]) -> dict:
    """What the decisions are worth: coverage (share answered), accuracy on the answered images,
    the confident-wrong rate (answered and wrong, over all images) and the count of unsure."""
    y = np.asarray(labels, dtype=int)
    decided = np.asarray(decisions, dtype=str)
    if y.shape != decided.shape or y.size == 0:
        raise ValueError("labels and decisions must be two non-empty arrays of the same length")
    unknown = set(np.unique(decided)) - {"real", "fake", "unsure"}
    if unknown:
        raise ValueError(f"unknown decisions {sorted(unknown)}; valid: real, fake, unsure")
    answered = decided != "unsure"
    wrong = answered & ((decided == "fake") != (y == 1))
    return {
        "coverage": float(answered.mean()),
        "answered": int(answered.sum()),
        "unsure": int((~answered).sum()),
        "selective_accuracy": float(1 - wrong.sum() / answered.sum()) if answered.any() else None,
        "confident_wrong_rate": float(wrong.mean()),
    }


def compute_risk_coverage(
    labels: Sequence[int], prob_fake: Sequence[float], *, threshold: float = 0.5
) -> pd.DataFrame:
    """The risk-coverage curve (Geifman & El-Yaniv, 2017): answering only the k most confident
    images (confidence: the probability of the called class), for every k. Columns coverage
    (k / N) and risk (errors among those k), most confident first."""
    y, p = _as_arrays(labels, prob_fake)
    if y.size == 0:
        raise ValueError("cannot draw a risk-coverage curve of zero samples")
    called = p >= threshold
    confidence = np.where(called, p, 1.0 - p)
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum((called != (y == 1))[order])
    k = np.arange(1, y.size + 1)
    return pd.DataFrame({"coverage": k / y.size, "risk": errors / k})


class IncompleteEvaluationError(ValueError):
    """An evaluation folder that a crash, or two runs writing into it, left unfinished or
    inconsistent; the message says which, and that evaluating again fixes it."""


PREDICTIONS_COLUMNS = ("path", "label", "prob_fake")


def write_evaluation(out_dir: str | Path, table: pd.DataFrame, metrics: dict) -> None:
    """Write `predictions.csv`, then `metrics.json`, each atomically. metrics.json comes last
    and records the table's SHA-256, so it marks a finished evaluation: a run killed in between
    leaves no metrics.json (or the older one, which no longer matches) and the pair is never
    read as complete."""
    out_dir = Path(out_dir)
    predictions = out_dir / "predictions.csv"
    write_atomic(predictions, lambda tmp: table.to_csv(tmp, index=False))
    record = {**metrics, "predictions_sha256": file_sha256(predictions)}
    write_text_atomic(out_dir / "metrics.json", json.dumps(record, indent=2) + "\n")


def read_evaluation(out_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The predictions table and metrics written by `write_evaluation`, checked to belong
    together; IncompleteEvaluationError if they do not (or one is missing)."""
    out_dir = Path(out_dir)
    metrics_file, predictions = out_dir / "metrics.json", out_dir / "predictions.csv"
    if not (metrics_file.is_file() and predictions.is_file()):
        raise IncompleteEvaluationError(
            f"{out_dir} holds no finished evaluation (metrics.json and predictions.csv)"
        )
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        table = pd.read_csv(predictions, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IncompleteEvaluationError(f"{out_dir}: unreadable evaluation files ({exc})") from None
    if not isinstance(metrics, dict):
        raise IncompleteEvaluationError(
            f"{out_dir}: metrics.json is not a JSON object; evaluate again"
        )
    recorded = metrics.get("predictions_sha256")
    mismatched = (
        (recorded is not None and recorded != file_sha256(predictions))
        or ("n" in metrics and metrics["n"] != len(table))
        or not set(PREDICTIONS_COLUMNS) <= set(table.columns)
    )
    if mismatched:
        raise IncompleteEvaluationError(
            f"{out_dir}: predictions.csv does not match metrics.json (an interrupted or mixed "
            "evaluation); evaluate again"
        )
    return table, metrics


def run_evaluation(
    detector,
    root: str | Path,
    manifest: pd.DataFrame,
    *,
    batch_size: int = 128,
    num_workers: int = 0,
    stability: bool = True,
    progress: bool = True,
    progress_callback=None,
    trust_unsigned_metadata: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Judge every manifest row with `detector`; returns (predictions table, metrics).

    Images go through the detector's own eval transform (the checkpoint's preprocessing), in
    batches, with every check of a single verdict (`stability=False` skips the perturbed
    copies, five times less work); `progress_callback(done, total)` lets a UI draw its own bar.
    Each file's recorded provenance is weighed into its decision (`summarize_verdicts`).
    """
    if manifest.empty:
        raise ValueError("nothing to evaluate: the selection holds no images")
    margins, features = score_rows(
        detector,
        root,
        manifest,
        batch_size=batch_size,
        num_workers=num_workers,
        stability=stability,
        progress=progress,
        progress_callback=progress_callback,
    )
    verdicts = detector.verdicts_from_scores(margins, features, manifest_infos(manifest))
    return summarize_verdicts(detector, manifest, verdicts,
                              trust_unsigned_metadata=trust_unsigned_metadata)  # fmt: skip


def predict_rows(detector, root: str | Path, manifest: pd.DataFrame, **options) -> list:
    """The Verdict of every manifest row, in row order (`score_rows`' options). A detector that
    chooses a checkpoint per image (`auto`) judges each file as `predict` would."""
    if routes_each_image(detector):
        return judge_files(detector, root, manifest, **options)
    margins, features = score_rows(detector, root, manifest, **options)
    return detector.verdicts_from_scores(margins, features, manifest_infos(manifest))


def routes_each_image(detector) -> bool:
    """Whether `detector` chooses a checkpoint per image (`auto`): it judges files one by one
    through `predict_batch`, not batches of pixels through `score_rows`."""
    return not hasattr(detector, "verdicts_from_scores")


def judge_files(detector, root: str | Path, manifest: pd.DataFrame, *, change=None,
                batch_size: int = 32, stability: bool = True, progress: bool = True,
                progress_callback=None, **_) -> list:  # fmt: skip
    """The Verdict of every manifest row's file, in row order, through `predict_batch` as
    `predict` judges an upload; `change(data) -> data` first turns each file into another (a
    perturbed copy, `forensics.perturb.perturb_file`)."""
    from tqdm.auto import tqdm

    from forensics.data import ImageStore

    store = ImageStore(root)
    verdicts: list = []
    with tqdm(total=len(manifest), desc="evaluating", unit="img", disable=not progress) as bar:
        for start in range(0, len(manifest), batch_size):
            paths = manifest["path"].iloc[start : start + batch_size]
            files = [store.read_bytes(path) for path in paths]
            if change is not None:
                files = [change(data) for data in files]
            verdicts += detector.predict_batch(files, batch_size=batch_size, stability=stability)
            bar.update(len(files))
            if progress_callback is not None:
                progress_callback(len(verdicts), len(manifest))
    return verdicts


def manifest_infos(manifest: pd.DataFrame) -> list[ImageInfo]:
    """What each row's file is, from the scan (no file is read again)."""
    quality = manifest["jpeg_quality"] if "jpeg_quality" in manifest else [None] * len(manifest)
    formats = manifest["format"] if "format" in manifest else [None] * len(manifest)
    return [
        ImageInfo(int(w), int(h), None if pd.isna(f) else str(f), None if pd.isna(q) else int(q))
        for w, h, f, q in zip(manifest["width"], manifest["height"], formats, quality, strict=True)
    ]


def score_rows(
    detector,
    root: str | Path,
    manifest: pd.DataFrame,
    *,
    batch_size: int = 128,
    num_workers: int = 0,
    stability: bool = True,
    progress: bool = True,
    progress_callback=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Margins (N, V) and penultimate features (N, D) of every manifest row, in row order: V is
    1, or with `stability` 1 + the stability check's perturbed copies (the detector's
    `verdicts_from_scores` turns them into verdicts)."""
    import torch
    from tqdm.auto import tqdm

    from forensics.data import ManifestDataset

    if manifest.empty:
        return np.zeros((0, 1)), np.zeros((0, 0), dtype=np.float32)
    if detector.patch_spec is not None:
        return _score_patched_rows(
            detector, root, manifest, num_workers, stability, progress, progress_callback
        )

    def views(rgb) -> torch.Tensor:  # (V, 3, H, W) uint8
        group = detector.stability_views(rgb) if stability else [rgb]
        return torch.stack([detector.geometry(view) for view in group])

    # uint8 images from the loader, normalised a batch at a time: cheaper than per image.
    dataset = ManifestDataset(root, manifest, views)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    margins: list[np.ndarray] = []
    features: list[np.ndarray] = []
    done = 0
    with tqdm(total=len(dataset), desc="evaluating", unit="img", disable=not progress) as bar:
        for images, _ in loader:
            count, per_image = images.shape[:2]
            margin, feature = detector.score_pixels(images.flatten(0, 1))
            margins.append(margin.reshape(count, per_image))
            features.append(feature.reshape(count, per_image, -1)[:, 0])
            done += count
            bar.update(count)
            if progress_callback is not None:
                progress_callback(done, len(dataset))
    return np.concatenate(margins), np.concatenate(features)


def _score_patched_rows(detector, root, manifest, num_workers, stability, progress, callback):
    """`score_rows` for a patch model: each image's patches are cut in the loader's workers
    and scored together (their number differs between images of different sizes)."""
    import torch
    from tqdm.auto import tqdm

    from forensics.data import ManifestDataset

    dataset = ManifestDataset(root, manifest, partial(detector.patch_views, stability=stability))
    # batch_size=None: one image's PatchViews at a time, as they are.
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    margins, features = [], []
    with tqdm(total=len(dataset), desc="evaluating", unit="img", disable=not progress) as bar:
        for views, _ in loader:
            margin, feature, _ = detector.score_patch_views(views)
            margins.append(margin)
            features.append(feature)
            bar.update(1)
            if callback is not None:
                callback(len(margins), len(dataset))
    return np.stack(margins), np.stack(features)


def summarize_verdicts(
    detector, manifest: pd.DataFrame, verdicts: Sequence, *, trust_unsigned_metadata: bool = True
) -> tuple[pd.DataFrame, dict]:
    """The predictions table and metrics of the N manifest rows' verdicts: the thresholded
    metrics on the calibrated probability, the same on the raw one (`raw_` prefix: calibration's
    effect), and what the decisions are worth (`compute_selective_metrics`) once each file's
    provenance, as its scan recorded it, is weighed in (`forensics.decision`); `decided_by`
    counts the decisions by what decided them."""
    from forensics.data import PROVENANCE_COLUMN
    from forensics.decision import weigh_records
    from forensics.verdicts import DECIDERS

    records = (
        list(manifest[PROVENANCE_COLUMN].fillna(""))
        if PROVENANCE_COLUMN in manifest
        else [None] * len(manifest)
    )
    verdicts = weigh_records(verdicts, records, trust_unsigned_metadata=trust_unsigned_metadata)
    labels = manifest["label"].to_numpy()
    prob_fake = np.array([v.prob_fake for v in verdicts], dtype=np.float64)
    table = build_predictions_table(
        manifest["path"],
        labels,
        prob_fake,
        threshold=detector.threshold,
        splits=manifest["split"],
        verdicts=verdicts,
    )
    metrics = compute_metrics(labels, prob_fake, threshold=detector.threshold)
    raw = compute_metrics(labels, table["prob_fake_raw"], threshold=detector.threshold)
    metrics.update({f"raw_{key}": raw[key] for key in ("ece", "log_loss", "accuracy")})
    metrics.update(compute_selective_metrics(labels, table["decision"]))
    metrics["decided_by"] = {by: int((table["decided_by"] == by).sum()) for by in DECIDERS}
    metrics.update(checkpoint=detector.name, checkpoint_id=detector.checkpoint_id,
                   trust_id=detector.trust_id)  # fmt: skip
    return table, metrics
