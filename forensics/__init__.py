"""Explainable real-vs-AI-generated image forensics: ResNet verdicts with Grad-CAM heatmaps.

Public API::

    from forensics import load_detector
    det = load_detector()              # the shipped default checkpoint ("auto": chosen per image)
    det.predict("photo.jpg")           # Verdict(decision, reasons, label, prob_fake, ...)
    det.explain("photo.jpg", method="gradcam", target="predicted")  # Explanation
    predict(det, "photo.jpg")          # the decision with the file's own evidence weighed in:
                                       # a signed credential or a generator's metadata first
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "AutoDetector",
    "CheckpointError",
    "Detector",
    "Explanation",
    "ImageLoadError",
    "PatchMap",
    "Verdict",
    "__version__",
    "load_detector",
    "predict",
    "predict_batch",
]

_LAZY = {
    "CheckpointError": "forensics.checkpoint",
    "Detector": "forensics.detector",
    "Explanation": "forensics.verdicts",
    "ImageLoadError": "forensics.images",
    "Verdict": "forensics.verdicts",
    "PatchMap": "forensics.verdicts",
    "load_detector": "forensics.router",
    "AutoDetector": "forensics.router",
    "predict": "forensics.decision",
    "predict_batch": "forensics.decision",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import forensics` (and the CLI's argument errors) stay fast: torch loads on use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
