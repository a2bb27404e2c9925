"""Self-describing checkpoints: a directory with `model.safetensors` (weights) and `model.json`
(everything needed to rebuild the model and its preprocessing).

Loading never unpickles: safetensors holds plain tensors and the metadata is JSON, so a
checkpoint from someone else is data, not code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from forensics.atomic import file_sha256, write_atomic, write_text_atomic
from forensics.ensemble import check_member_count
from forensics.models import ARCHITECTURES, HEADS, INPUT_FILTERS, STEMS, build_model
from forensics.patches import PatchSpec
from forensics.transforms import DataConfig

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
FORMAT_VERSION = 1
CLASS_NAMES = ("real", "fake")
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINTS / "default"
MAX_METADATA_BYTES = 5 * 1024 * 1024
# Nested records of how a checkpoint was made (paths included); never used to find files.
RECORD_FIELDS = ("training", "dataset", "metrics", "versions")


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, tampered with or incompatible; the message says which."""


def shipped_checkpoints() -> list[Path]:
    """The checkpoint folders that ship with the project: the default first, then by name."""
    if not SHIPPED_CHECKPOINTS.is_dir():
        return []
    found = sorted(path.parent for path in SHIPPED_CHECKPOINTS.glob(f"*/{METADATA_FILE}"))
    return sorted(found, key=lambda path: path != DEFAULT_CHECKPOINT)


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    metadata: Mapping[str, Any],
    *,
    half: bool = False,
) -> Path:
    """Write `model` and `metadata` as a checkpoint directory; returns the directory.

    `metadata` must name architecture, head and data config (input_size, resize, mean, std);
    `half=True` stores float16 weights (upcast on load) to keep shipped files small.
    """
    directory = Path(directory)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "class_names": list(CLASS_NAMES),
        "threshold": 0.5,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "forensics": _package_version()},
        **dict(metadata),
        "weights_dtype": "float16" if half else "float32",
    }
    validate_metadata(meta)
    write_atomic(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    # Each file is replaced atomically, but the pair is not: the weights' hash in model.json
    # lets loading detect a save interrupted between the two files (or a swapped weights file).
    meta["weights_sha256"] = file_sha256(directory / WEIGHTS_FILE)
    write_text_atomic(directory / METADATA_FILE, json.dumps(meta, indent=2, default=str) + "\n")
    return directory


def update_metadata(directory: str | Path, metadata: Mapping[str, Any]) -> None:
    """Replace a checkpoint's `model.json` (atomically) without touching its weights: for
    records added after training, such as the trust profile. The weights' recorded hash must
    still match the file."""
    directory = Path(directory)
    meta = dict(metadata)
    validate_metadata(meta)
    if meta.get("weights_sha256") != file_sha256(directory / WEIGHTS_FILE):
        raise CheckpointError(f"{directory}: the metadata does not belong to these weights")
    write_text_atomic(directory / METADATA_FILE, json.dumps(meta, indent=2, default=str) + "\n")


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The validated `model.json` of a checkpoint directory."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {METADATA_FILE}")
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise CheckpointError(f"{path} is implausibly large for checkpoint metadata")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    validate_metadata(meta)
    return meta


def validate_metadata(meta: Any) -> None:
    """Raise CheckpointError unless `meta` describes a model this code can build safely."""
    if not isinstance(meta, dict):
        raise CheckpointError("checkpoint metadata must be a JSON object")
    arch = meta.get("architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"unknown architecture {arch!r} in checkpoint; valid: {list(ARCHITECTURES)}"
        )
    if meta.get("head", "linear") not in HEADS:
        raise CheckpointError(f"unknown head {meta.get('head')!r}; valid: {list(HEADS)}")
    if meta.get("stem", "imagenet") not in STEMS:
        raise CheckpointError(f"unknown stem {meta.get('stem')!r}; valid: {list(STEMS)}")
    if meta.get("input_filter", "none") not in INPUT_FILTERS:
        raise CheckpointError(
            f"unknown input filter {meta.get('input_filter')!r}; valid: {list(INPUT_FILTERS)}"
        )
    if meta.get("patches") is not None:
        try:
            PatchSpec.from_dict(meta["patches"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"invalid patch settings in checkpoint: {exc}") from None
    members = meta.get("members", 1)
    if type(members) is not int or members != 1:  # not one model: then a valid ensemble
        try:
            check_member_count(members)
        except ValueError as exc:
            raise CheckpointError(
                f"invalid ensemble in checkpoint: 'members' is 1 (one model) or a count ({exc})"
            ) from None
    if meta.get("layer4_stride", 2) not in (1, 2):
        raise CheckpointError(f"layer4_stride must be 1 or 2, got {meta.get('layer4_stride')!r}")
    if list(meta.get("class_names", CLASS_NAMES)) != list(CLASS_NAMES):
        raise CheckpointError(f"class_names must be {list(CLASS_NAMES)} (0 = real, 1 = fake)")
    threshold = meta.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise CheckpointError(f"threshold must be a number in [0, 1], got {threshold!r}")
    # A checkpoint never names a file to read: its files are model.safetensors and model.json
    # beside each other. The nested training and dataset records hold where it was trained,
    # for people to read; a path in one of the fields the loader acts on is a forgery.
    for key, value in meta.items():
        if key not in RECORD_FIELDS and isinstance(value, str) and _looks_like_path(value):
            raise CheckpointError(
                f"model.json field {key!r} holds a path ({value!r}); a checkpoint never names "
                "files, it is read only from its own folder"
            )
    if not isinstance(meta.get("data", {}), dict):
        raise CheckpointError(
            "invalid preprocessing settings in checkpoint: 'data' must be a JSON object"
        )
    try:
        data_config_from_metadata(meta)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid preprocessing settings in checkpoint: {exc}") from None


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or ".." in value or value.startswith("~")


def architecture_name(meta: Mapping[str, Any]) -> str:
    """The architecture as people read it: "resnet18", or "3 x resnet18" for a seed ensemble."""
    members = meta.get("members", 1)
    return meta["architecture"] if members == 1 else f"{members} x {meta['architecture']}"


def data_config_from_metadata(meta: Mapping[str, Any]) -> DataConfig:
    return DataConfig.from_dict(meta.get("data", {}))


def build_model_from_metadata(meta: Mapping[str, Any]) -> nn.Module:
    return build_model(
        meta["architecture"],
        head=meta.get("head", "linear"),
        stem=meta.get("stem", "imagenet"),
        layer4_stride=meta.get("layer4_stride", 2),
        input_filter=meta.get("input_filter", "none"),
        members=meta.get("members", 1),
    )


def load_checkpoint(directory: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model (float32, eval mode, CPU) and return it with its metadata.

    None loads the shipped default checkpoint. Raises CheckpointError for anything wrong.
    """
    directory = Path(directory) if directory is not None else DEFAULT_CHECKPOINT
    meta = read_metadata(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_FILE}")
    digest = file_sha256(weights)
    if meta.get("weights_sha256", digest) != digest:
        raise CheckpointError(
            f"{weights} is corrupt or truncated, or is not the file {METADATA_FILE} was saved "
            "with (its SHA-256 differs from the recorded one; was a save interrupted?)"
        )
    meta["weights_sha256"] = digest
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is corrupt or truncated ({exc})") from None
    model = build_model_from_metadata(meta)
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tensor.dtype != expected[key].dtype:
            if not (tensor.is_floating_point() and expected[key].is_floating_point()):
                raise CheckpointError(
                    f"{weights}: tensor {key} has dtype {tensor.dtype}, "
                    f"expected {expected[key].dtype}"
                )
            state[key] = tensor.to(expected[key].dtype)  # float16 on disk -> float32 in memory
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise CheckpointError(
            f"weights in {weights} do not match architecture {meta['architecture']!r}: {detail}"
        ) from None
    model.eval()
    return model, meta


def _package_version() -> str:
    from forensics import __version__

    return __version__
