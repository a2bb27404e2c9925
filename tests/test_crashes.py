"""Crashes lose nothing: training and evaluation processes killed with SIGKILL part-way, then
run again. Training resumes to the weights of an uninterrupted run; evaluation leaves the
previous complete result readable (never a half-written one) and the rerun replaces it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import write_dataset
from safetensors.torch import load_file

from forensics.evaluation import read_evaluation

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "training" / "configs" / "smoke.yaml"
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
]


class Watched:
    """A child process whose stderr is read as it comes, so a test can kill it at a moment
    it announces (a progress bar reaching some count, a file appearing)."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO_ROOT, env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.process.stderr.read1(4096):
            self.stderr += chunk

    def kill_when(self, ready, *, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self):
            assert self.process.poll() is None, self.stderr.decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.01)
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL
        self._reader.join(timeout=10)


def _run(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=ENV,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def _train_argv(run: Path, data: Path, *extra: str) -> list[str]:
    return ["-m", "training.train", "--config", str(SMOKE), "--data.root", str(data),
            "--out", str(run), "--model.architecture", "resnet18", "--optim.epochs", "4",
            *extra]  # fmt: skip


def test_training_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=40)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run(_train_argv(whole, data))

    child = Watched(_train_argv(killed, data))
    # After epoch 1's files are written, and a few batches into epoch 2.
    child.kill_when(lambda c: (killed / "history.csv").is_file() and b"epoch 2 train" in c.stderr
                    and re.search(rb"epoch 2 train:\s+\d+%\|[^|]*\| [3-9]/", c.stderr))  # fmt: skip
    assert len(pd.read_csv(killed / "history.csv")) == 1  # killed inside epoch 2

    _run([*_train_argv(killed, data), "--resume"])
    assert list(pd.read_csv(killed / "history.csv")["epoch"]) == [1, 2, 3, 4]
    for name in ("best", "last"):
        expected = load_file(str(whole / name / "model.safetensors"))
        got = load_file(str(killed / name / "model.safetensors"))
        assert expected.keys() == got.keys()
        for key, tensor in expected.items():
            torch.testing.assert_close(got[key], tensor, rtol=1e-5, atol=1e-6, msg=key)
    assert not list(killed.rglob("*.tmp*"))  # no temporary file left behind by the kill


def _evaluate_argv(data: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["-m", "forensics", "evaluate", "--data", str(data), "--checkpoint", str(checkpoint),
            "--out", str(out), "--batch-size", "2"]  # fmt: skip


def test_evaluation_killed_midway_leaves_the_previous_result_whole(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    small = write_dataset(tmp_path / "small", per_class=3)
    large = write_dataset(tmp_path / "large", per_class=150)
    out = tmp_path / "eval"
    _run(_evaluate_argv(small, tiny_checkpoint, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(read_evaluation(out)[0]) == 6

    child = Watched(_evaluate_argv(large, tiny_checkpoint, out))
    child.kill_when(lambda c: re.search(rb"evaluating:\s+\d+%\|[^|]*\| [1-9]\d+/300", c.stderr))
    # The killed run wrote nothing: the previous evaluation is still there, whole and valid.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(read_evaluation(out)[0]) == 6

    _run(_evaluate_argv(large, tiny_checkpoint, out))
    table, metrics = read_evaluation(out)
    assert len(table) == metrics["n"] == 300
    assert not list(out.glob("*.tmp*"))
