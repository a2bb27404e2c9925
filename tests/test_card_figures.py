"""Every figure of the default model card and of the README's model tables is a value of the
files they cite (tests/card_figures.py says what counts as a figure). A generated card is checked
in test_publish.py, on the card publish writes for a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.card_figures import (
    TEMPLATE_FIGURES,
    checkpoint_values,
    figures,
    markdown_rows,
    static_figures,
    template_part,
    uncited,
)

REPO = Path(__file__).resolve().parent.parent
BENCHMARK = REPO / "training" / "results" / "bench_stems.csv"
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_what_counts_as_a_figure() -> None:
    text = ("ResNet18 reaches 97.32% on 8,908 images of CIFAR-10 (3x3/1 stem, 80/10/10, seed 0; "
            "Bird, 2023; `--optim.lr 5`) at lr 3e-05 on a 2-core CPU, epochs 1-6 at 0.001.\n"
            "```\npython -m x --epochs 11\n```\n| a | 0.9964 |")  # fmt: skip
    assert figures(text) == ["97.32%", "8,908", "0", "1", "6", "0.001", "0.9964"]


@pytest.mark.parametrize("template", sorted(TEMPLATE_FIGURES))
def test_each_figure_of_a_template_text_has_its_source_listed(template: str) -> None:
    text = (REPO / "training" / template).read_text(encoding="utf-8")
    assert set(static_figures(text)) == set(TEMPLATE_FIGURES[template])


def test_every_figure_of_the_shipped_default_card_is_in_the_files_it_cites() -> None:
    folder = REPO / "checkpoints" / "default"
    card = template_part((folder / "MODEL_CARD.md").read_text(encoding="utf-8"))
    assert "training/results/bench_stems.csv" in card and "`history.csv`" in card
    values = checkpoint_values(folder, BENCHMARK)
    assert uncited(card, values, TEMPLATE_FIGURES["model_card_cifake.md"]) == []


def test_the_readme_stem_table_is_the_benchmark_record() -> None:
    header = "| stem | layer4 stride | input | layer4 map | float32 img/s | bf16 autocast img/s |"
    rows = markdown_rows(README, header)
    record = pd.read_csv(BENCHMARK)
    assert len(rows) == len(record)
    for row, (_, expected) in zip(rows, record.iterrows(), strict=True):
        stem = row[0].split("`")[1]
        assert stem == expected["stem"], row
        shown = [int(row[1]), int(row[2].split()[0]), row[3].split()[0], int(row[4]), int(row[5])]
        assert shown == [expected["layer4_stride"], expected["input"], expected["layer4_map"],
                         expected["fp32_img_s"], expected["bf16_img_s"]], row  # fmt: skip


def test_the_readme_cross_source_table_is_the_recorded_one() -> None:
    header = "| model | trained on | sdcoco | faces | CIFAKE |"
    rows = markdown_rows(README, header)
    record = pd.read_csv(REPO / "training/results/shipped_cross_source/cross_source.csv")
    record = record.set_index("run")
    assert [row[0].strip("`") for row in rows] == list(record.index)
    for row in rows:
        expected = record.loc[row[0].strip("`")]
        assert row[1] == expected["trained on"]
        for cell, name in zip(row[2:], ("sdcoco", "faces", "cifake"), strict=True):
            auc, accuracy = expected[f"{name} AUC"], expected[f"{name} acc"]
            assert cell == f"{auc:.3f} / {100 * accuracy:.1f}%", (row[0], name)


# The faces table's best validation losses come from each run's history.csv, kept only for the
# shipped run (checkpoints/faces/history.csv): the other runs' folders were not kept, as the
# README says beside the table, so only their test accuracy is checked.
FACES_SHIPPED_RUN = "whole_view_longer"


def test_the_readme_faces_table_is_the_recorded_results() -> None:
    header = "| run | idea | test accuracy | best val loss |"
    rows = markdown_rows(README, header)
    recorded = {}
    for row in markdown_rows(
        (REPO / "training/results/faces_ideas.md").read_text(encoding="utf-8"),
        "| run | accuracy | precision | recall | f1 | roc_auc | parameters | trainable "
        "| train_seconds | epochs | best_epoch |",
    ):
        recorded[row[0]] = float(row[1])
    faces = REPO / "checkpoints" / "faces"
    shipped = json.loads((faces / "eval" / "metrics.json").read_text())["accuracy"]
    history = pd.read_csv(faces / "history.csv")
    names = [row[0].strip("`") for row in rows]
    assert set(names) == {*recorded, FACES_SHIPPED_RUN}
    for name, row in zip(names, rows, strict=True):
        accuracy = shipped if name == FACES_SHIPPED_RUN else recorded[name]
        assert row[2] == f"{100 * accuracy:.2f}%", name
        if name == FACES_SHIPPED_RUN:
            assert row[3] == f"{history['val_loss'].min():.3f}"
    assert "history.csv` was kept only for the shipped run" in " ".join(README.split())


def test_bench_stems_records_what_it_measures(tmp_path: Path, monkeypatch) -> None:
    from training import bench_stems

    def measure(stem, stride, size, *, batch_size, steps, bf16):
        return (4, 4), size * (2.6 if bf16 else 1.2) + stride

    monkeypatch.setattr(bench_stems, "measure", measure)
    out = tmp_path / "stems.csv"
    bench_stems.main(["--out", str(out)])
    table = bench_stems.read_record(out)
    assert list(zip(table["stem"], table["layer4_stride"], table["input"], strict=True)) == [
        tuple(candidate) for candidate in bench_stems.CANDIDATES
    ]
    assert bench_stems.recorded_throughput("cifar", 2, 32, path=out) == round(32 * 2.6 + 2)
    assert list(table["fp32_img_s"]) == [round(s * 1.2 + r) for _, r, s in bench_stems.CANDIDATES]
    with pytest.raises(ValueError, match="no single row"):
        bench_stems.recorded_throughput("cifar", 1, 32, path=out)
