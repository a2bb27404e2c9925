"""Named sections of a model card: a part of MODEL_CARD.md between `<!-- NAME:start -->` and
`<!-- NAME:end -->` that a command writes, and rewrites, without touching the rest of the card.

`training.fit_trust` writes the `trust` section and `training.robustness` the `robustness` one,
into a freshly published card or into a shipped checkpoint's card whose run folder is gone;
`training.publish` writes the `decision` section (what a decision rests on, the same for every
model), which `python -m training.card CHECKPOINT...` writes into an existing card.
Reading a section is `forensics.card`'s (the library's case report reads the `limits` one).
"""

from __future__ import annotations

from pathlib import Path

from forensics.atomic import write_text_atomic
from forensics.card import CARD_FILE, read_card_section, section_markers

__all__ = [
    "CARD_FILE",
    "DECISION_SECTION",
    "read_card_section",
    "section_markers",
    "write_card_section",
    "write_decision_section",
]
DECISION_SECTION = "decision"
DECISION_TEXT = """## What a decision rests on

A decision on a file weighs what is known about it in this order (`forensics.decision`), as a
careful analyst does: provenance first, then the pixels.

1. **A valid C2PA content credential** that declares AI-generated media (an action's IPTC
   digital source type, a known generator named as an action's software agent, or the
   credential of an ingredient it was made from): `fake`, shown as "partly AI-generated" for a
   composite or a generative fill, whatever the model scores. One that records a camera capture
   and no generative step: `real`, unless the model answers `fake` with every check passed,
   then `unsure` with both reasons side by side. The reason names the signer and whether it is
   on a trust list (`$FORENSICS_C2PA_TRUST_ANCHORS`, a PEM file of root certificates); without
   one, a valid signature shows that the file is unchanged since it was signed, not who signed
   it.
2. **An invalid, tampered or unreadable credential** decides nothing, and says so in a reason
   of its own ("the content credential no longer matches the pixels: edited after signing").
3. **A generator's unsigned metadata** (a Stable Diffusion `parameters` chunk, a ComfyUI graph,
   an XMP `CreatorTool` or IPTC digital source type of a generator): `fake`, with the reason
   that it is unsigned and anyone could have written it. `--ignore-unsigned-metadata` (the
   sidebar's switch; `predict(..., trust_unsigned_metadata=False)`) lets only the pixels and
   signed credentials decide.
4. **The model's score and its checks** for everything else: most files, since most platforms
   strip metadata, and an absent tag proves nothing (the reasons say that it said nothing).

The model's score, its own decision and its reasons are kept beside whatever decided
(`decided_by`: `credential`, `metadata` or `model`; `model_decision`, `model_reasons`), so
nothing is hidden. The figures on this card are the model's own: the shared data's files carry
no provenance, so every decision measured there is the model's.
"""


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


def write_decision_section(card: Path) -> None:
    """What a decision on a file rests on (`forensics.decision`), in the card's own words."""
    write_card_section(card, DECISION_SECTION, DECISION_TEXT)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m training.card",
        description="Write the 'what a decision rests on' section into checkpoints' cards.",
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders")
    for checkpoint in parser.parse_args(argv).checkpoints:
        write_decision_section(checkpoint / CARD_FILE)
        print(f"-> {checkpoint / CARD_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
