"""YAML configs with command-line overrides (`--optim.lr 3e-4`), timm-style: the file gives the
defaults, flags override, and the resolved config is saved with the run."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "cifake_resnet18.yaml"


DEFAULTS = CONFIG_DIR / "defaults.yaml"


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The config in `path` (default: the shipped model's), on top of defaults.yaml, so every
    option exists (and can be overridden) even where an older or shorter file leaves it out."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    return merge_configs(_read_mapping(DEFAULTS), _read_mapping(path))


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a YAML mapping")
    return config


def merge_configs(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update`'s values; sections (mappings) are merged key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(config: Mapping[str, Any], args: Sequence[str]) -> dict[str, Any]:
    """Apply `--dotted.key value` pairs (values parsed as YAML) to a copy of `config`.

    Unknown keys raise ValueError naming the valid ones, so a typo never silently does nothing.
    """
    resolved = copy.deepcopy(dict(config))
    args = list(args)
    i = 0
    while i < len(args):
        flag = args[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise ValueError(f"expected --key value, got {flag!r}")
        key, _, inline = flag[2:].partition("=")
        if inline == "" and "=" not in flag:
            if i + 1 >= len(args):
                raise ValueError(f"{flag} needs a value")
            raw, i = args[i + 1], i + 2
        else:
            raw, i = inline, i + 1
        set_dotted(resolved, key.replace("-", "_"), parse_value(raw))
    return resolved


# YAML 1.1 (PyYAML) needs a dot in a float, so it reads `3e-4` as a string; we read it as a number.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def parse_value(raw: str) -> Any:
    """A command-line value read as YAML (`3`, `true`, `[0.8, 0.1]`, `null`); `3e-4` is a float."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
        return float(value)
    return value


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:depth]) or "top level"
            valid = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"unknown config key {key!r} (valid at {where}: {valid})")
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def dump_config(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)
