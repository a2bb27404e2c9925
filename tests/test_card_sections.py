"""training.card's named sections, and training.robustness writing a finished sweep into the card
of an existing checkpoint (whose training run is gone) without republishing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensics.cli import main as cli_main
from forensics.robustness import read_sweep
from training.card import read_card_section, section_markers, write_card_section
from training.robustness import main as robustness_main


def test_named_sections_are_written_replaced_and_kept_apart(tmp_path: Path) -> None:
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# Model card\n\nWritten by hand.\n")
    write_card_section(card, "trust", "## Trust\n\nfirst")
    write_card_section(card, "robustness", "## Robustness\n\nfirst")
    write_card_section(card, "trust", "## Trust\n\nsecond")
    text = card.read_text()
    assert text.startswith("# Model card\n\nWritten by hand.\n\n<!-- trust:start -->\n## Trust")
    assert text.count("<!-- trust:start -->") == 1 and "first" in text.split("robustness")[1]
    assert read_card_section(card, "trust") == "## Trust\n\nsecond"
    assert read_card_section(card, "robustness") == "## Robustness\n\nfirst"
    assert read_card_section(card, "other") is None
    new = tmp_path / "NEW.md"
    write_card_section(new, "trust", "body")
    assert new.read_text() == "<!-- trust:start -->\nbody\n<!-- trust:end -->\n"
    with pytest.raises(ValueError, match="letters, digits"):
        section_markers("two words")


def test_a_sweep_goes_into_an_existing_card_without_republishing(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    assert cli_main(["robustness", "--data", str(tiny_dataset), "--checkpoint",
                     str(tiny_checkpoint), "--perturbation", "jpeg=70", "--perturbation",
                     "blur=1", "--out", str(sweep)]) == 0  # fmt: skip
    card = tiny_checkpoint / "MODEL_CARD.md"
    card.write_text("# Card\n\n<!-- trust:start -->\nthe trust section\n<!-- trust:end -->\n")
    weights = (tiny_checkpoint / "model.safetensors").read_bytes()
    assert robustness_main([str(tiny_checkpoint), "--sweep", str(sweep), "--store"]) == 0
    assert "JPEG quality 70: accuracy" in capsys.readouterr().out
    text = card.read_text()
    assert text.startswith("# Card\n\n<!-- trust:start -->\nthe trust section\n<!-- trust:end -->")
    section = read_card_section(card, "robustness")
    table, record = read_sweep(sweep)
    assert record["command"] in section and "python -m forensics robustness" in section
    jpeg = table[table["perturbation"] == "jpeg"].iloc[0]
    assert f"JPEG quality 70: accuracy {jpeg['accuracy']:.2f}, " in section
    assert f"{jpeg['share_flipped']:.0%} of verdicts flip" in section
    assert section.count("\n| ") == 1 + len(table)  # the header and one row per setting
    uncaught = table[table["confident_wrong"] > 0.05]
    if uncaught.empty:
        assert "No change here leaves more than 5% of the images confidently wrong" in section
    else:
        assert "**Not caught by the trust checks**" in section
    stored, _ = read_sweep(tiny_checkpoint / "robustness")
    assert stored.equals(table)
    assert (tiny_checkpoint / "model.safetensors").read_bytes() == weights
    # Again: the section is replaced, not added.
    assert robustness_main([str(tiny_checkpoint), "--sweep", str(sweep)]) == 0
    assert card.read_text().count("<!-- robustness:start -->") == 1


def test_a_sweep_of_other_weights_or_an_unfinished_one_is_refused(
    tiny_dataset: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert robustness_main([str(tiny_checkpoint), "--sweep", str(tmp_path / "none")]) == 2
    assert "no finished robustness sweep" in capsys.readouterr().err
    sweep = tmp_path / "sweep"
    assert (
        cli_main(
            [
                "robustness",
                "--data",
                str(tiny_dataset),
                "--perturbation",
                "jpeg=70",
                "--max-images",
                "2",
                "--out",
                str(sweep),
            ]
        )
        == 0
    )  # fmt: skip (shipped model)
    capsys.readouterr()
    assert robustness_main([str(tiny_checkpoint), "--sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "is a sweep of checkpoint" in err and not (tiny_checkpoint / "MODEL_CARD.md").exists()


def test_the_section_names_the_changes_the_trust_checks_miss() -> None:
    import pandas as pd

    from forensics.robustness import COLUMNS
    from training.robustness import describe_robustness

    rows = [
        ("clean", None, "clean (as stored)", 10, 0.9, 0.95, 0.0, 0.9, 0.95, 0.02),
        ("jpeg", 70.0, "JPEG quality 70", 10, 0.9, 0.95, 0.1, 0.8, 0.95, 0.03),
        ("blur", 1.0, "blur sigma 1 px", 10, 0.6, 0.7, 0.4, 0.9, 0.6, 0.36),
    ]
    summary = pd.DataFrame(rows, columns=list(COLUMNS))
    text = describe_robustness(summary, {"command": "python -m forensics robustness X"})
    assert (
        "Key figures: JPEG quality 70: accuracy 0.90, 10% of verdicts flip, 80% answered; " in text
    )
    assert "confident, wrong answer (share of all images): blur sigma 1 px (36%)." in text
    assert "JPEG quality 70 (" not in text.split("Not caught")[1]
    calm = describe_robustness(summary.iloc[:2], {})
    assert "No change here leaves more than 5% of the images confidently wrong" in calm
    assert "(command not recorded)" in calm


def test_every_shipped_card_names_where_its_model_must_not_be_trusted() -> None:
    """The case report quotes this section; a card without it would say nothing there."""
    from forensics.card import LIMITS_HEADING, read_card_limits
    from forensics.checkpoint import shipped_checkpoints

    for checkpoint in shipped_checkpoints():
        limits = read_card_limits(checkpoint)
        assert limits is not None and limits.startswith(LIMITS_HEADING), checkpoint
        assert "- " in limits and "Library versions" not in limits


def test_a_card_without_the_named_section_is_read_by_its_heading(tmp_path: Path) -> None:
    from forensics.card import read_card_limits

    (tmp_path / "MODEL_CARD.md").write_text(
        "# Card\n\n## Where it must not be trusted\n\n- on faces\n\nLibrary versions: x\n\n"
        "## Next\n\nmore\n"
    )
    assert read_card_limits(tmp_path) == (
        "## Where it must not be trusted\n\n- on faces\n\nLibrary versions: x"
    )
    assert read_card_limits(tmp_path / "none") is None


def test_cross_source_rewrites_the_table_a_model_card_quotes(tmp_path: Path, capsys) -> None:
    import pandas as pd

    from training import cross_source

    table = pd.DataFrame({"run": ["a"], "trained on": ["x"], "x AUC": [0.9], "x acc": [0.8]})
    command = "python -m training.cross_source SUITE --set x=X"
    markdown = cross_source.write_table(table, tmp_path / "results", commands=[command])
    card = tmp_path / "ckpt" / "MODEL_CARD.md"
    card.parent.mkdir()
    card.write_text("# Card\n\nbefore\n\n<!-- cross_source:start -->\n| old | row |\n"
                    "<!-- cross_source:end -->\n\nafter\n")  # fmt: skip
    cross_source.update_cards([card], markdown)
    text = card.read_text()
    assert "| old | row |" not in text and "| a | x | 0.900 | 0.800 |" in text
    assert f"`{command}`" in text
    assert text.startswith("# Card\n\nbefore\n") and text.endswith("\n\nafter\n")
    # A card without the section is refused before any run is scored.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "MODEL_CARD.md").write_text("# Card without the table\n")
    argv = [str(tmp_path), "--set", "x=/nowhere", "--card", str(bare)]
    assert cross_source.main(argv) == 2
    assert "has no cross_source section to rewrite" in capsys.readouterr().err


def test_every_shipped_card_says_what_a_decision_rests_on(tmp_path: Path) -> None:
    from forensics.checkpoint import shipped_checkpoints
    from training.card import DECISION_SECTION, DECISION_TEXT, main, read_card_section

    for checkpoint in shipped_checkpoints():
        section = read_card_section(checkpoint / "MODEL_CARD.md", DECISION_SECTION)
        assert section == DECISION_TEXT.strip("\n"), checkpoint
    # The command writes it into a card of any checkpoint, once however often it runs.
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# A card\n", encoding="utf-8")
    assert main([str(tmp_path)]) == 0 and main([str(tmp_path)]) == 0
    text = card.read_text(encoding="utf-8")
    assert text.startswith("# A card\n") and text.count("## What a decision rests on") == 1
