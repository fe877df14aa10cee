"""The engine on a small array: microseconds per call of the spec's 2x3 quantize, beside a floor of plain numpy.

Run from the repository root:

    python bench/small.py                      # the 2x3 rows, median of 31 rounds of 200 calls each
    python bench/small.py --runs 5             # 5 runs; every figure is the median of the run medians
    python bench/small.py --crossover          # per-tensor INT8 quantize by engine/small.py and by the kernel,
                                               # at sizes around small.MAX_ELEMENTS

The floor is the same formula in plain numpy, independent of our code:
`np.clip(np.rint(x / s), -128, 127).astype(np.int8)` with `s = np.abs(x).max() / 127` (symmetric INT8, no zero
point, no checks, no statistics): what any Python quantize of these six values costs at least. The rows run
round-robin (each round times `--calls` calls of every row in turn, so that a slow spell of a shared machine touches
all rows alike); each figure is the median over `--reps` rounds, also printed as a multiple of the floor.

Rows (a dynamic per-tensor INT8 instance from the default config, the dequantization cache off):
  quantize                  validate=True (the API's default: NaN / Inf checks, the clipped count)
  quantize, validate=False
  quantize, report=True     with the quality report (SQNR, errors, range)
  quantize_dequantize       fake quantization, float32 answer
  quantize_dequantize, report=True
--crossover: `quantize` with frozen per-tensor parameters of float32 arrays of each size, through engine/small.py's
numpy path and with it switched off (small.MAX_ELEMENTS = 0: the compiled kernel), to place MAX_ELEMENTS where the
kernel starts to win.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.rounds import run_rounds  # noqa: E402
from engine import QuantizationConfig, Quantizer, small, warm_kernels  # noqa: E402

SPEC_2X3 = [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]
FLOOR = "floor: plain numpy"

Case = tuple[str, Callable[[], object]]


def per_call(cases: list[Case], reps: int, calls: int) -> dict[str, float]:
    """Median microseconds per call of each case, round-robin: every round times `calls` calls of each case."""

    def repeated(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn()

        return run

    seconds = run_rounds([(name, repeated(fn)) for name, fn in cases], reps, warmup=1)
    return {name: t / calls * 1e6 for name, t in seconds.items()}


def floor_case(x: np.ndarray) -> Case:
    def quantize() -> np.ndarray:
        s = np.abs(x).max() / np.float32(127)
        return np.clip(np.rint(x / s), -128, 127).astype(np.int8)

    return FLOOR, quantize


def spec_cases() -> list[Case]:
    x = np.array(SPEC_2X3, np.float32)
    q = Quantizer(QuantizationConfig.from_dict({"enable_cache": False}))
    return [
        floor_case(x),
        ("quantize", lambda: q.quantize(x)),
        ("quantize, validate=False", lambda: q.quantize(x, validate=False)),
        ("quantize, report=True", lambda: q.quantize(x, report=True)),
        ("quantize_dequantize", lambda: q.quantize_dequantize(x)),
        ("quantize_dequantize, report=True", lambda: q.quantize_dequantize(x, report=True)),
    ]


def crossover_cases(sizes: list[int]) -> list[Case]:
    """Frozen parameters (the numpy path of small.quantize; a dynamic onnx / torch quantize is one compiled call
    either way)."""
    q = Quantizer(QuantizationConfig.from_dict({"enable_cache": False, "quantization_mode": "STATIC"}),
                  parameters={"global_scale": 4.0 / 127, "global_zero_point": 0})
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    for n in sizes:
        x = rng.standard_normal(n, dtype=np.float32)

        def kernel(x: np.ndarray = x) -> object:
            saved, small.MAX_ELEMENTS = small.MAX_ELEMENTS, 0
            try:
                return q.quantize(x)
            finally:
                small.MAX_ELEMENTS = saved

        def numpy_path(x: np.ndarray = x, n: int = n) -> object:
            saved, small.MAX_ELEMENTS = small.MAX_ELEMENTS, n
            try:
                return q.quantize(x)
            finally:
                small.MAX_ELEMENTS = saved

        cases += [(f"{n:>6} small.py", numpy_path), (f"{n:>6} kernel", kernel)]
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=31, help="timed rounds (the median is reported)")
    ap.add_argument("--calls", type=int, default=200, help="calls of each row per round")
    ap.add_argument("--runs", type=int, default=1, help="independent runs; figures are the medians over runs")
    ap.add_argument("--crossover", action="store_true", help="small.py against the kernel by array size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[6, 64, 256, 512, 1024, 2048, 4096, 16384],
                    help="element counts for --crossover")
    args = ap.parse_args()

    warm_kernels()
    x = np.array(SPEC_2X3, np.float32)
    cases = [floor_case(x), *(crossover_cases(args.sizes) if args.crossover else spec_cases()[1:])]
    runs = [per_call(cases, args.reps, args.calls) for _ in range(args.runs)]
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    print(f"numpy {np.__version__}; {args.runs} run(s) x {args.reps} rounds x {args.calls} calls; "
          f"load average {' '.join(load)}")
    print(f"{'row':40s} {'us/call':>9s} {'x floor':>8s}")
    for name, _ in cases:
        us = statistics.median(run[name] for run in runs)
        share = statistics.median(run[name] / run[FLOOR] for run in runs)
        print(f"{name:40s} {us:9.1f} {share:8.2f}")


if __name__ == "__main__":
    main()
