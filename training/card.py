"""Named sections of a model card: a part of MODEL_CARD.md between `<!-- NAME:start -->` and
`<!-- NAME:end -->` that a command writes, and rewrites, without touching the rest of the card.

`training.fit_trust` writes the `trust` section and `training.robustness` the `robustness` one,
into a freshly published card or into a shipped checkpoint's card whose run folder is gone.
Reading a section is `forensics.card`'s (the library's case report reads the `limits` one).
"""

from __future__ import annotations

from pathlib import Path

from forensics.atomic import write_text_atomic
from forensics.card import CARD_FILE, read_card_section, section_markers

__all__ = ["CARD_FILE", "read_card_section", "section_markers", "write_card_section"]


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
