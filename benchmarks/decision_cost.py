"""What weighing a file's own evidence costs beside its verdict, on files without provenance.

    python -m benchmarks.decision_cost [--checkpoint auto] [--rounds 3] [--out DIR]

For each file (made in memory, no metadata: what most uploads are), the time of the model's
verdict alone (`Detector.predict` on the file's bytes) and of the decision
(`forensics.decision.predict`: the same verdict plus the file's metadata and content credential
read from the same bytes), timed in interleaved rounds, and the provenance reading alone. The
target (evidence issue): nothing slower on files without provenance, within noise.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.photo_verdict import synthetic_photograph
from forensics.atomic import write_text_atomic
from forensics.decision import predict as decide
from forensics.evidence.board import read_provenance
from forensics.measure import cpu_name, interleaved_seconds
from forensics.router import load_detector


def sample_files() -> dict[str, bytes]:
    """Uploads without provenance at the shipped models' sizes, and a photograph's."""
    rng = np.random.default_rng(0)

    def encoded(size: int, fmt: str, **options) -> bytes:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, **options)
        return buffer.getvalue()

    return {
        "32 px JPEG q75 (CIFAKE's format)": encoded(32, "JPEG", quality=75),
        "256 px JPEG q75 (faces' format)": encoded(256, "JPEG", quality=75),
        "512 px JPEG q95 (sdcoco's format)": encoded(512, "JPEG", quality=95),
        "1024 px PNG": encoded(1024, "PNG"),
        "12 MP JPEG q92 (a photograph)": synthetic_photograph(12),
    }


def measure(detector, files: dict[str, bytes], *, rounds: int) -> list[dict]:
    rows = []
    for name, data in files.items():
        times = interleaved_seconds(
            {
                "verdict": lambda data=data: detector.predict(data),
                "decision": lambda data=data: decide(detector, data),
                "provenance": lambda data=data: read_provenance(data),
            },
            rounds=rounds,
        )
        rows.append({"file": name, "bytes": len(data), **times,
                     "ratio": times["decision"] / times["verdict"]})  # fmt: skip
    return rows


def render(rows: list[dict], checkpoint: str) -> str:
    lines = [
        f"Decision cost on {cpu_name()}, checkpoint {checkpoint} (files without provenance):",
        "",
        "| file | verdict (s) | decision (s) | decision / verdict | provenance read (ms) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['file']} | {r['verdict']:.4f} | {r['decision']:.4f} | {r['ratio']:.3f} | "
        f"{r['provenance'] * 1000:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="auto", help="checkpoint folder or auto")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per file")
    parser.add_argument("--out", type=Path, default=None, help="also write decision_cost.json")
    args = parser.parse_args(argv)
    detector = load_detector(args.checkpoint)
    rows = measure(detector, sample_files(), rounds=args.rounds)
    print(render(rows, str(args.checkpoint)))
    if args.out is not None:
        write_text_atomic(args.out / "decision_cost.json", json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
