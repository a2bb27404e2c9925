"""Named sections of a model card: a part of MODEL_CARD.md between `<!-- NAME:start -->` and
`<!-- NAME:end -->` that a command writes, and rewrites, without touching the rest of the card.

`training.fit_trust` writes the `trust` section and `training.robustness` the `robustness` one,
into a freshly published card or into a shipped checkpoint's card whose run folder is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

from forensics.atomic import write_text_atomic

CARD_FILE = "MODEL_CARD.md"


def section_markers(name: str) -> tuple[str, str]:
    """The HTML comments around section `name` (letters, digits, '-' and '_')."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"a card section name is letters, digits, '-' or '_', got {name!r}")
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_card_section(card: Path, name: str, body: str) -> None:
    """Put `body` into the card as section `name`, replacing that section where the card has
    it, else at the end of the card (the card is created where there is none). Atomic."""
    start, end = section_markers(name)
    section = f"{start}\n{body.strip(chr(10))}\n{end}"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if start in text and end in text.split(start, 1)[1]:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    write_text_atomic(card, text)


def read_card_section(card: Path, name: str) -> str | None:
    """The body of section `name`, or None where the card has none."""
    start, end = section_markers(name)
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")
