"""Named sections of a model card: a part of MODEL_CARD.md between `<!-- NAME:start -->` and
`<!-- NAME:end -->`. Reading them lives here, in the library (the case report quotes the card's
`limits` section: where the model must not be trusted); `training.card` writes them.
"""

from __future__ import annotations

import re
from pathlib import Path

CARD_FILE = "MODEL_CARD.md"
LIMITS_SECTION = "limits"
# Cards published before the section was named carry it under this heading alone.
LIMITS_HEADING = "## Where it must not be trusted"


def section_markers(name: str) -> tuple[str, str]:
    """The HTML comments around section `name` (letters, digits, '-' and '_')."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"a card section name is letters, digits, '-' or '_', got {name!r}")
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_card_section(card: Path, name: str) -> str | None:
    """The body of section `name`, or None where the card has none."""
    start, end = section_markers(name)
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def read_card_limits(checkpoint_dir: Path | None) -> str | None:
    """Markdown of where the checkpoint's model must not be trusted: its card's `limits`
    section, else the part under LIMITS_HEADING up to the next heading or section; None where
    the checkpoint has no card or its card says nothing of the kind."""
    if checkpoint_dir is None:
        return None
    card = Path(checkpoint_dir) / CARD_FILE
    section = read_card_section(card, LIMITS_SECTION)
    if section is not None or not card.is_file():
        return section
    text = card.read_text(encoding="utf-8")
    if LIMITS_HEADING not in text:
        return None
    rest = text.split(LIMITS_HEADING, 1)[1]
    body = re.split(r"^(?:#{1,2} |<!-- )", rest, maxsplit=1, flags=re.MULTILINE)[0]
    return (LIMITS_HEADING + rest[: len(body)]).strip("\n")
