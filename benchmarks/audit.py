"""Throughput of a batch audit beside `evaluate` on the same files (the target: the audit, with
its Grad-CAM thumbnails, at least half of evaluate's images per second), and what the
faithfulness check costs per image.

    python -m benchmarks.audit --data ../shared/data/cifake/cifake-train.zip [--images 1000]
        [--checkpoint DIR] [--workdir DIR]

The first `--images` members of REAL/ and FAKE/ (half each) are copied out of the CIFAKE archive
into a folder (a temporary one unless `--workdir`), since an audit takes a folder. Then, one run
each, in this process, on the same checkpoint (loaded once, as both commands would load it):
`evaluate` (verdicts with the stability check, DataLoader batches), the audit as
`python -m forensics audit` runs it (verdict, Grad-CAM, evidence and a
case report per image, report.html), and the audit with `--faithfulness`. One run is one
figure: the machine's load moves it; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from forensics.cli import _judge_selection
from forensics.evaluation import run_evaluation
from forensics.report.audit import run_audit

TARGET_RATIO = 0.5


def extract_cifake(archive: Path, folder: Path, count: int) -> Path:
    """The first count/2 members of REAL/ and of FAKE/ as folder/REAL and folder/FAKE."""
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        for label in ("REAL", "FAKE"):
            members = [n for n in names if n.startswith(f"{label}/") and n.endswith(".jpg")]
            (folder / label).mkdir(parents=True, exist_ok=True)
            for member in members[: count // 2]:
                (folder / label / Path(member).name).write_bytes(zf.read(member))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAKE's cifake-train.zip")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        folder = extract_cifake(args.data, work / "images", args.images)
        namespace = argparse.Namespace(
            data=folder, splits=None, split="all", batch_size=128, checkpoint=args.checkpoint,
            engine=None, out=work / "eval",
        )  # fmt: skip
        detector, manifest, _ = _judge_selection(namespace)  # as `evaluate` loads and scans
        count = len(manifest)
        start = time.perf_counter()
        run_evaluation(detector, folder, manifest, batch_size=128, progress=False)
        evaluate_s = time.perf_counter() - start
        figures = {"evaluate": evaluate_s}
        for name, faithfulness in (("audit", False), ("audit --faithfulness", True)):
            out = work / name.replace(" ", "")
            start = time.perf_counter()
            run_audit(detector, folder, out, faithfulness=faithfulness, progress=False)
            figures[name] = time.perf_counter() - start
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{count} CIFAKE files, checkpoint {detector.name} ({detector.checkpoint_id})")
    print(f"{'command':<26}{'seconds':>10}{'images/s':>10}{'vs evaluate':>13}")
    for name, seconds in figures.items():
        ratio = evaluate_s / seconds
        print(f"{name:<26}{seconds:>10.1f}{count / seconds:>10.1f}{ratio:>12.0%}")
    per_image = (figures["audit --faithfulness"] - figures["audit"]) / count
    print(f"faithfulness check: {1000 * per_image:.1f} ms per image in the audit")
    for name in ("audit", "audit --faithfulness"):
        ratio = evaluate_s / figures[name]
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        print(f"{name} runs at {ratio:.0%} of evaluate's throughput: {verdict} the "
              f"{TARGET_RATIO:.0%} target")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
