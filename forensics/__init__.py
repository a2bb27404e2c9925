"""Explainable real-vs-AI-generated image forensics: ResNet verdicts with Grad-CAM heatmaps.

Public API::

    from forensics import load_detector
    det = load_detector()              # the shipped default checkpoint
    det.predict("photo.jpg")           # Verdict(label, prob_fake, threshold)
    det.explain("photo.jpg", method="gradcam", target="predicted")  # Explanation
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "Detector",
    "Explanation",
    "ImageLoadError",
    "Verdict",
    "__version__",
    "load_detector",
]

_LAZY = {
    "CheckpointError": "forensics.checkpoint",
    "Detector": "forensics.detector",
    "Explanation": "forensics.detector",
    "ImageLoadError": "forensics.images",
    "Verdict": "forensics.detector",
    "load_detector": "forensics.detector",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import forensics` (and the CLI's argument errors) stay fast: torch loads on use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
