"""Measuring primitives for the benchmark: interleaved timing, peak memory, FLOPs, the machine's
matrix-product peak.

Timings on a shared 2-core machine are noisy, so things compared with each other are timed in
interleaved rounds (A, B, C, A, B, C, ...) and summarised by their median: a burst of other work
slows every contender alike instead of one of them.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn


def median_seconds(fn: Callable[[], object], *, repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn` (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_seconds(
    contenders: Mapping[str, Callable[[], object]], *, rounds: int = 3, seconds_per_round=0.6
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in interleaved rounds of about
    `seconds_per_round` each (at least one call per round), after one warm-up call each."""
    for fn in contenders.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            round_started = time.perf_counter()
            while True:
                started = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - started)
                if time.perf_counter() - round_started >= seconds_per_round:
                    break
    return {name: statistics.median(times) for name, times in samples.items()}


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux /proc; the peak so far elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Peak resident memory inside a `with` block, sampled every 5 ms by a thread:
    `.peak_mb` (absolute) and `.added_mb` (above the level when the block began)."""

    def __init__(self) -> None:
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    @property
    def added_mb(self) -> float:
        return self.peak_mb - self.start_mb


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass (torch's FlopCounterMode: a multiply-add
    counts as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape))
    return int(counter.get_total_flops())


def matmul_peak_gflops(size: int = 2048, *, seconds: float = 2.0) -> float:
    """The best FP32 GFLOP/s of a `size`x`size` matrix product on this machine (2 n^3 each)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
