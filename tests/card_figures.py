"""Figures in a model card, and the values of the files it cites, for tests/test_card_figures.py.

A *figure* is a number standing on its own in the card's prose and tables: `97.32%`, `0.9964`,
`8,908`, `0.5`. Not figures, by rule:

- text in code (inline `code` and fenced blocks: commands, paths, fingerprints);
- numbers joined to a letter, `_`, `.`, `/` or to a word by `-` (ResNet18, layer4, CIFAR-10,
  3x3/1, 80/10/10, bf16, 2-core, 3e-05): they are parts of names or compound notations;
- years (1900-2099 standing alone), which date citations and measurements.

Every other figure must be one of the cited files' values, as the card renders them (an integer
with or without thousands separators; a fraction with 0-6 decimals, or as a percentage with 0-6
decimals), or a figure of the template's own text that the test lists with its source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import yaml

FIGURE = re.compile(
    r"(?<![A-Za-z0-9_./])(?<![A-Za-z]-)"  # not the tail of a name or compound
    r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%?)"
    r"(?![A-Za-z0-9_/]|\.\d|-[A-Za-z])"  # nor its head
)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
FIELD = re.compile(r"\{\w+(?:[:!][^}]*)?\}")


def figures(text: str) -> list[str]:
    """The figures of `text` (markdown), in order, as written (`97.32%`, `8,908`)."""
    prose = CODE.sub(" ", text)
    found = []
    for match in FIGURE.finditer(prose):
        whole, decimals, percent = match.groups()
        if not decimals and not percent and re.fullmatch(r"(19|20)\d\d", whole):
            continue  # a year
        found.append(match.group(0))
    return found


def static_figures(template: str) -> list[str]:
    """The figures of a card template's own text, outside its `{fields}`."""
    return figures(FIELD.sub(" ", template))


def renderings(values: Iterable[float]) -> set[str]:
    """Every way the card may print one of `values`."""
    shown: set[str] = set()
    for value in values:
        value = float(value)
        if value != value:  # NaN
            continue
        if value == int(value):
            shown |= {str(int(value)), f"{int(value):,}"}
        for decimals in range(7):
            shown.add(f"{value:.{decimals}f}")
            shown.add(f"{100 * value:.{decimals}f}%")
            shown.add(f"{value:,.{decimals}f}")
    return shown


def _numbers(node) -> Iterator[float]:
    if isinstance(node, bool):
        return
    if isinstance(node, int | float):
        yield float(node)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _numbers(value)


def table_numbers(table: pd.DataFrame) -> Iterator[float]:
    for column in table.columns:
        yield from pd.to_numeric(table[column], errors="coerce").dropna().tolist()


def checkpoint_values(folder: Path, benchmark: Path) -> list[float]:
    """The values of the files a generated card cites: its checkpoint folder's
    eval/metrics.json and eval/ood_*/metrics.json, history.csv, config.yaml, model.json and
    splits.csv.gz (image counts per split and label, and per label), and the benchmark record.
    Two derived values the card states: training minutes (the history's seconds / 60) and the
    number of epochs run (its rows)."""
    values: list[float] = []
    for path in [folder / "eval" / "metrics.json", *sorted(folder.glob("eval/ood_*/metrics.json")),
                 folder / "model.json"]:  # fmt: skip
        values += _numbers(json.loads(path.read_text()))
    values += _numbers(yaml.safe_load((folder / "config.yaml").read_text()))
    history = pd.read_csv(folder / "history.csv")
    values += table_numbers(history)
    values += [history["seconds"].sum() / 60, len(history)]
    splits = pd.read_csv(folder / "splits.csv.gz")
    values += splits.groupby(["split", "label"]).size().tolist()
    values += splits.groupby("label").size().tolist()
    values += table_numbers(pd.read_csv(benchmark))
    return values


def uncited(card: str, values: Iterable[float], static: Iterable[str]) -> list[str]:
    """The card's figures that are neither a rendering of `values` nor in `static`."""
    allowed = renderings(values) | set(static)
    return [figure for figure in figures(card) if figure not in allowed]


def template_part(card: str) -> str:
    """The card as the template renders it: before the sections other commands append
    (`<!-- trust:start -->` ...), which name their own sources."""
    return card.split("<!-- ", 1)[0]


def markdown_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line is `header`."""
    lines = text.splitlines()
    start = lines.index(header) + 2  # the header and its |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


# The figures of each card template's own text (outside its fields), with where each comes
# from. A figure added to a template's text must be added here with its source, and the
# template should then cite that source.
TEMPLATE_FIGURES = {
    "model_card_cifake.md": {
        "1.4": "Stable Diffusion 1.4, the generator CIFAKE's paper names",
        "45,000": "real images in CIFAKE's training part (its description; the split table counts)",
        "44,080": "fake images in CIFAKE's training part (idem)",
        "75": "CIFAKE's JPEG quality (its description)",
        "32": "CIFAKE's image side (its description), to which larger images are resized",
        "96.6%": "the CIFAKE ResNet18 study's accuracy, quoted and named where it stands",
        "224": "that study's input size",
        "256": "the side of the out-of-domain faces (the faces set's description)",
    },
}
