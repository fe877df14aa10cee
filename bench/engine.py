"""Engine throughput: quantize / dequantize through the Quantizer API, beside a memcpy of the same bytes.

Run from the repository root:

    python bench/engine.py                 # 1000x1000 and 4000x4000 float32, median of 15 rounds
    python bench/engine.py --reps 15 --sizes 1000x1000 2000x2000 4000x4000
    python bench/engine.py --sizes 4000x4000 --runs 5   # 5 runs of 15 rounds, the median of the run medians

Throughput is GB/s of float32 data (4 bytes per element): the input of quantize and quantize_dequantize, the
float32 output of dequantize (its int8 input is a quarter of that), so every row is comparable with the memcpy
row, `np.copyto` of the same float32 array into a preallocated one, measured in the same run. The rows run
round-robin, one call each per round (a slow spell of a shared machine then touches all rows alike), and each
figure is the median of `--reps` rounds after `--warmup` untimed ones. Every call allocates its result, as the
service does (a fresh float32 result is page-faulted in: dequantize and quantize_dequantize pay for that, the
memcpy row does not; a second floor, a memcpy into a fresh array (`np.copy`), pays it too, and those rows are
also printed as a share of it); the dequantization cache is disabled, so dequantize rows measure the kernel, not a cache
hit. The kernels are compiled (or loaded from numba's cache) before the first round (`warm_kernels`).

Rows:
  quantize fixed        per-tensor INT8 with calibrated (frozen) parameters
  quantize dynamic      per-tensor INT8, parameters from the call's data (the min/max range pass included)
  per-channel           axis 0, frozen per-channel parameters / dynamic per-channel parameters
  dequantize            INT8 codes back to float32, per tensor and per channel
  quantize_dequantize   per tensor, fused fake-quantization
  ... report=True       quantize (fixed, dynamic, per-channel) and quantize_dequantize with the quality report
                        (SQNR, errors, range: summed in the codes' own loop, compute, not memory); the issue's bound is
                        quantize with report <= 1.6x quantize without
  INT4 grouped (128)    symmetric INT4, one scale per 128 elements along the last axis, parameters from the data
  FP8 E4M3 dynamic      per-tensor amax scale, saturating float8 rounding
  BFLOAT16 cast         float32 -> bfloat16 (round to nearest even), answered as float32
validate=True is the API default (NaN/Inf checks and the clipped-value count); validate=False skips them, so
the difference is the cost of validation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402

from bench.rounds import run_rounds  # noqa: E402
from engine import QuantizationConfig, QuantizationMode, Quantizer, warm_kernels  # noqa: E402


def build_cases(x: np.ndarray) -> list[tuple[str, Callable[[], object]]]:
    def cfg(**kw: object) -> QuantizationConfig:
        return QuantizationConfig.from_dict(
            {"quantization_type": "INT8", "enable_cache": False, **kw}
        )

    fixed = Quantizer(cfg())
    fixed.calibrate([x])  # -> CALIBRATED mode, frozen per-tensor parameters
    fixed_pc = Quantizer(cfg(per_channel=True))
    fixed_pc.calibrate([x], channel_dim=0)  # -> CALIBRATED, one (scale, zero point) per row
    dyn = Quantizer(cfg())
    dyn_pc = Quantizer(cfg(quantization_mode=QuantizationMode.DYNAMIC_PER_CHANNEL.name))
    assert dyn.config.quantization_mode is QuantizationMode.DYNAMIC
    assert fixed.config.quantization_mode is QuantizationMode.CALIBRATED

    int4_grouped = Quantizer(cfg(quantization_type="INT4", symmetric=True, group_size=128))
    fp8 = Quantizer(cfg(quantization_type="FP8_E4M3"))
    bf16 = Quantizer(cfg(quantization_type="BFLOAT16"))

    codes = fixed.quantize(x).data
    codes_pc = fixed_pc.quantize(x, channel_dim=0).data
    assert codes.dtype == np.int8
    assert codes_pc.dtype == np.int8

    return [
        ("quantize fixed, validate=True", lambda: fixed.quantize(x)),
        ("quantize fixed, validate=False", lambda: fixed.quantize(x, validate=False)),
        ("quantize fixed, report=True", lambda: fixed.quantize(x, report=True)),
        ("quantize dynamic, validate=True", lambda: dyn.quantize(x)),
        ("quantize dynamic, validate=False", lambda: dyn.quantize(x, validate=False)),
        ("quantize dynamic, report=True", lambda: dyn.quantize(x, report=True)),
        ("per-channel fixed, validate=True", lambda: fixed_pc.quantize(x, channel_dim=0)),
        ("per-channel fixed, validate=False", lambda: fixed_pc.quantize(x, channel_dim=0, validate=False)),
        ("per-channel dynamic, validate=True", lambda: dyn_pc.quantize(x, channel_dim=0)),
        ("per-channel dynamic, validate=False", lambda: dyn_pc.quantize(x, channel_dim=0, validate=False)),
        ("per-channel dynamic, report=True", lambda: dyn_pc.quantize(x, channel_dim=0, report=True)),
        ("dequantize per tensor", lambda: fixed.dequantize(codes)),
        ("dequantize per channel", lambda: fixed_pc.dequantize(codes_pc, channel_dim=0)),
        ("quantize_dequantize fixed", lambda: fixed.quantize_dequantize(x)),
        ("quantize_dequantize fixed, report=True", lambda: fixed.quantize_dequantize(x, report=True)),
        ("quantize_dequantize dynamic", lambda: dyn.quantize_dequantize(x)),
        ("quantize_dequantize dynamic, report=True", lambda: dyn.quantize_dequantize(x, report=True)),
        ("INT4 grouped (128) dynamic", lambda: int4_grouped.quantize(x)),
        ("FP8 E4M3 dynamic", lambda: fp8.quantize(x)),
        ("BFLOAT16 cast", lambda: bf16.quantize(x)),
    ]


MEMCPY = "memcpy (np.copyto, float32)"
# The service allocates every answer, so an operation whose answer is a float32 array as large as the input
# (dequantize, quantize_dequantize) writes a fresh buffer, whose pages the kernel zeroes on first touch: the fair
# floor for those rows is a memcpy into a fresh array too (np.copy), which pays the same. Both floors are shown.
MEMCPY_FRESH = "memcpy into a fresh array (np.copy)"
FRESH_ROWS = ["dequantize per tensor", "dequantize per channel", "quantize_dequantize fixed",
              "quantize_dequantize fixed, report=True", "quantize_dequantize dynamic",
              "quantize_dequantize dynamic, report=True"]
# (with report, the same call without): the bound is a ratio of at most REPORT_BOUND
REPORT_PAIRS = [
    ("quantize fixed, report=True", "quantize fixed, validate=True"),
    ("quantize dynamic, report=True", "quantize dynamic, validate=True"),
    ("per-channel dynamic, report=True", "per-channel dynamic, validate=True"),
    ("quantize_dequantize fixed, report=True", "quantize_dequantize fixed"),
    ("quantize_dequantize dynamic, report=True", "quantize_dequantize dynamic"),
]
REPORT_BOUND = 1.6


def measure(x: np.ndarray, reps: int, warmup: int) -> dict[str, float]:
    """Median seconds of memcpy and of every case for one input array, memcpy in every round."""
    dst = np.empty_like(x)

    def copy() -> None:
        np.copyto(dst, x)

    return run_rounds([(MEMCPY, copy), (MEMCPY_FRESH, lambda: np.copy(x)), *build_cases(x)], reps, warmup)


def cpu_ticks() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = float(os.sysconf("SC_CLK_TCK"))
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def parse_size(text: str) -> tuple[int, int]:
    rows, _, cols = text.lower().partition("x")
    return int(rows), int(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1000x1000", "4000x4000"], help="2-D shapes, ROWSxCOLS")
    ap.add_argument("--reps", type=int, default=15, help="timed rounds (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds before the timed ones")
    ap.add_argument("--runs", type=int, default=1, help="independent runs; figures are the medians over runs")
    args = ap.parse_args()

    shapes = [parse_size(s) for s in args.sizes]
    warm_kernels()
    results: dict[str, dict[tuple[int, int], float]] = {}
    order: list[str] = []
    rng = np.random.default_rng(0)
    ticks0, own0, wall0 = cpu_ticks(), time.process_time(), time.perf_counter()
    for shape in shapes:
        x = rng.standard_normal(shape, dtype=np.float32)
        runs = [measure(x, args.reps, args.warmup) for _ in range(args.runs)]
        for name in runs[0]:
            if name not in order:
                order.append(name)
            # Each run's share of its own memcpy, then the median over runs (kept as seconds against the
            # median memcpy, so that the table's ms and GB/s columns stay consistent with the share).
            share = statistics.median(run[MEMCPY] / run[name] for run in runs)
            results.setdefault(name, {})[shape] = statistics.median(run[MEMCPY] for run in runs) / share
        del x
    memcpy = results[MEMCPY]
    ticks1, own1, wall1 = cpu_ticks(), time.process_time(), time.perf_counter()

    def label(shape: tuple[int, int]) -> str:
        n = shape[0] * shape[1]
        return f"{shape[0]}x{shape[1]} ({n / 1e6:.0f}M)" if n >= 1e6 else f"{shape[0]}x{shape[1]} ({n / 1e3:.0f}K)"

    cpus = os.cpu_count()
    print(f"engine throughput: numpy {np.__version__}, numba {numba.__version__}, {cpus} CPUs, median of "
          f"{args.reps} rounds after {args.warmup} warm-up (x {args.runs} runs); GB/s of float32 data (4 B/element)")
    name_w = max(len(n) for n in order)
    head = "".join(f" | {label(s):^25}" for s in shapes)
    if ticks0 is not None and ticks1 is not None:
        others = max(0.0, (ticks1[0] - ticks0[0]) - (own1 - own0)) / (wall1 - wall0)
        note = "  <- the figures are unreliable, rerun on a quiet machine" if others > 0.2 else ""
        print(f"other processes used {others:.2f} CPUs on average during the run{note}")
    print(f"{'':<{name_w}}{head}")
    sub = "".join(f" | {'ms':>7} {'GB/s':>7} {'memcpy':>8}" for _ in shapes)
    print(f"{'operation':<{name_w}}{sub}")
    print("-" * (name_w + 28 * len(shapes)))

    def row(name: str, seconds: dict[tuple[int, int], float]) -> str:
        cells = []
        for s in shapes:
            t = seconds[s]
            gbs = s[0] * s[1] * 4 / t / 1e9
            cells.append(f" | {t * 1e3:7.2f} {gbs:7.2f} {memcpy[s] / t * 100:7.1f}%")
        return f"{name:<{name_w}}{''.join(cells)}"

    for name in order:
        print(row(name, results[name]))
    print(f"\nfloat32 answers against a memcpy into a fresh array ({MEMCPY_FRESH}: "
          + ", ".join(f"{results[MEMCPY_FRESH][s] * 1e3:.2f} ms" for s in shapes) + ")")
    for name in FRESH_ROWS:
        shares = "".join(f" | {results[MEMCPY_FRESH][s] / results[name][s] * 100:>24.1f}%" for s in shapes)
        print(f"{name:<{name_w}}{shares}")
    print(f"\nreport cost: time with report / time without (bound {REPORT_BOUND}x)")
    for with_report, without in REPORT_PAIRS:
        ratios = "".join(f" | {results[with_report][s] / results[without][s]:>25.2f}x" for s in shapes)
        print(f"{with_report:<{name_w}}{ratios}")


if __name__ == "__main__":
    main()
