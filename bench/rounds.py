"""Round-robin timing shared by the engine benchmarks (bench/engine.py, bench/small.py)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def run_rounds(cases: list[tuple[str, Callable[[], object]]], reps: int, warmup: int) -> dict[str, float]:
    """Median seconds per case. The cases run round-robin, one call each per round, so that a slow spell of the
    machine (other processes, a noisy neighbour) touches every row alike instead of a few."""
    for _ in range(warmup):
        for _, fn in cases:
            fn()
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            for name, fn in cases:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(ts) for name, ts in times.items()}
