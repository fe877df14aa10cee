"""The fused kernels against numpy written here: every layout (per tensor; per channel on every axis, long runs as
segments and short runs as rows; blocks along every axis, partial last blocks included), every code type, codes
and fake quantization, special values (NaN, +-inf, ties, huge and tiny), the clipped count, dequantize, min/max and
the warm-up that keeps compilation out of requests."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from engine import QParams, jit, kernels
from engine.qparams import STORAGE_DTYPES, qrange

F32 = np.float32
ROOT = Path(__file__).resolve().parents[2]
CODE_TYPES = [t for t in STORAGE_DTYPES if t.name in ("INT8", "UINT8", "INT16", "INT4", "UINT4")]
SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 127.5, -128.5, 255.5, 1e30,
           -1e30, 3.4028235e38, -3.4028235e38, 1e-45, 126.49999, 4194303.5, -4194304.5]


def reference(x: npt.NDArray[np.float32], scale: npt.NDArray[np.float32], zp: npt.NDArray[np.int64], qmin: int,
              qmax: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int]:
    """(codes as float32, fake-quantized values, clipped count) by the definition, with scale / zp broadcast to
    x's shape: clip(rint(x / s) + zp) with NaN -> zp; (q - zp) * s; outside [qmin, qmax] or NaN counts."""
    with np.errstate(all="ignore"):
        raw = np.rint(np.divide(x, scale, dtype=F32)) + zp.astype(F32)
        codes = np.clip(raw, F32(qmin), F32(qmax))
        codes = np.where(np.isnan(raw), zp.astype(F32), codes).astype(F32)
        fake = ((codes - zp.astype(F32)) * scale).astype(F32)
        clipped = int(np.count_nonzero(~((raw >= qmin) & (raw <= qmax))))
    return codes, fake, clipped


def broadcast(values: npt.NDArray[Any], shape: tuple[int, ...], axis: int | None, block: int | None
              ) -> npt.NDArray[Any]:
    """Per-tensor, per-channel or per-block parameters repeated to the data's shape."""
    if axis is None:
        return np.broadcast_to(values.reshape(()), shape)
    if block is None:
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return np.broadcast_to(values.reshape(view), shape)
    return np.take(np.repeat(values, block, axis=axis), np.arange(shape[axis]), axis=axis)


def check(x: npt.NDArray[np.float32], params: QParams, qtype: Any) -> None:
    qmin, qmax = qrange(qtype, qtype.width)
    dtype = STORAGE_DTYPES[qtype]
    s = broadcast(params.scale.astype(F32), x.shape, params.axis, params.block_size)
    z = broadcast(params.zero_point, x.shape, params.axis, params.block_size)
    codes, fake, clipped = reference(x, s, z, qmin, qmax)
    lay = kernels.layout(x.shape, params.axis, params.block_size)
    for report in (False, True):  # the report's kernels write the same codes and count the same
        got = np.empty(x.shape, dtype)
        assert kernels.run_quantize(x, got, lay, params.scale, params.zero_point, qmin, qmax, False,
                                    report=report)[0] == clipped
        assert got.tobytes() == codes.astype(dtype).tobytes()
        got_fake = np.empty(x.shape, F32)
        assert kernels.run_quantize(x, got_fake, lay, params.scale, params.zero_point, qmin, qmax, True,
                                    report=report)[0] == clipped
        assert got_fake.tobytes() == fake.tobytes()  # bits: +0.0 for zero, as (q - zp) * s
    with np.errstate(over="ignore"):
        dq = ((codes.astype(dtype).astype(F32) - z.astype(F32)) * s).astype(F32)
    assert kernels.dequantize(codes.astype(dtype), params).tobytes() == dq.tobytes()


def params_for(rng: np.random.Generator, shape: tuple[int, ...], axis: int | None, block: int | None,
               qtype: Any) -> QParams:
    qmin, qmax = qrange(qtype, qtype.width)
    if axis is None:
        n: tuple[int, ...] = ()
    elif block is None:
        n = (shape[axis],)
    else:
        n = tuple(-(-d // block) if i == axis else d for i, d in enumerate(shape))
    scale = rng.choice(np.array([1.0, 0.5, 1 / 3, 1e-3, 1e3, 2.0**-20], F32), n).astype(F32)
    zp = rng.integers(qmin, qmax + 1, n)
    return QParams(np.asarray(scale, F32), np.asarray(zp, np.int64), axis, block)


SHAPES = [(23,), (1, 1), (2, 3), (23, 3), (5, 23), (3, 70), (70, 3), (2, 3, 100), (4, 65, 2), (4096,), (3, 1, 129)]


@pytest.mark.parametrize(("qtype", "shape"), list(itertools.product(CODE_TYPES, SHAPES)))
def test_every_layout_against_numpy(qtype: Any, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    values = np.array(SPECIAL, F32)
    with np.errstate(over="ignore"):
        x = (rng.choice(values, size=shape) * rng.choice(np.array([1, 1, 2, 0.25], F32), size=shape)).astype(F32)
    x = np.where(rng.random(shape) < 0.5, rng.standard_normal(shape).astype(F32) * F32(300), x).astype(F32)
    for axis in [None, *range(len(shape))]:
        check(x, params_for(rng, shape, axis, None, qtype), qtype)
        if axis is not None:
            for block in (1, 2, 7, 32, shape[axis], shape[axis] + 3):
                check(x, params_for(rng, shape, axis, block, qtype), qtype)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, ...]:
    qtype = draw(st.sampled_from(CODE_TYPES))
    x = draw(arrays(F32, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40),
                    elements=st.one_of(st.floats(width=32), st.sampled_from(SPECIAL).map(F32),
                                       st.integers(-300, 300).map(lambda v: F32(v + 0.5)))))
    axis = draw(st.one_of(st.none(), st.integers(0, x.ndim - 1)))
    block = None if axis is None else draw(st.one_of(st.none(), st.integers(1, x.shape[axis] + 2)))
    return x, qtype, axis, block, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=200, deadline=None, database=None)
@given(cases())
def test_random_arrays_against_numpy(case: tuple[Any, ...]) -> None:
    x, qtype, axis, block, seed = case
    check(x, params_for(np.random.default_rng(seed), x.shape, axis, block, qtype), qtype)


@pytest.mark.parametrize("dtype", [F32, np.float64, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64])
def test_minmax_as_numpy(dtype: Any) -> None:
    rng = np.random.default_rng(1)
    for shape in [(1,), (17,), (5, 3), (3, 70), (70, 3), (2, 3, 100), (4, 65, 2)]:
        x = (rng.standard_normal(shape) * 100).astype(dtype)
        for axis in [None, *range(len(shape))]:
            axes = None if axis is None else tuple(i for i in range(len(shape)) if i != axis)
            lo, hi = kernels.minmax(x, axis)
            np.testing.assert_array_equal(lo, np.min(x, axis=axes))
            np.testing.assert_array_equal(hi, np.max(x, axis=axes))
            if dtype in (F32, np.float64):
                y = x.copy()
                y.reshape(-1)[rng.integers(y.size)] = np.nan
                lo, hi = kernels.minmax(y, axis)
                np.testing.assert_array_equal(lo, np.min(y, axis=axes))  # NaN propagates, as numpy's
                np.testing.assert_array_equal(hi, np.max(y, axis=axes))


@pytest.mark.parametrize("threads", [1, 3])
def test_minmax_bits_as_numpy(threads: int) -> None:
    """The range by the values' bits (one pass of integer extremes): all negative, all non-negative, signed zeros,
    infinities, and NaN of either sign anywhere, per tensor and per channel, whole and split over threads."""
    rng = np.random.default_rng(3)
    negative_nan = np.array(0xFFC00000, np.uint32).view(F32)
    cases = {
        "mixed": rng.standard_normal(1 << 19).astype(F32),
        "negative": -np.abs(rng.standard_normal(1 << 19).astype(F32)) - F32(1e-3),
        "non-negative": np.abs(rng.standard_normal(1 << 19).astype(F32)),
        "zeros": np.where(rng.random(1 << 19) < 0.5, F32(0.0), F32(-0.0)).astype(F32),
        "infinite": np.concatenate([rng.standard_normal((1 << 19) - 2), [np.inf, -np.inf]]).astype(F32),
    }
    for name, x in cases.items():
        for nan in (None, np.float32(np.nan), negative_nan):
            y = x.copy()
            if nan is not None:
                y[rng.integers(y.size)] = nan
            for shape, axis in [((y.size,), None), ((512, y.size // 512), 0), ((64, 8192 // 64, y.size // 8192), 1)]:
                z = y.reshape(shape)
                axes = None if axis is None else tuple(i for i in range(z.ndim) if i != axis)
                with kernels.threads(threads):
                    lo, hi = kernels.minmax(z, axis)
                np.testing.assert_array_equal(lo, np.min(z, axis=axes), err_msg=name)
                np.testing.assert_array_equal(hi, np.max(z, axis=axes), err_msg=name)
                if nan is None and name != "zeros":  # the very bits (numpy itself may pick either zero)
                    assert np.asarray(lo).tobytes() == np.min(z, axis=axes).tobytes()
                    assert np.asarray(hi).tobytes() == np.max(z, axis=axes).tobytes()


def test_block_extremes_as_numpy() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 10, 4)).astype(F32)
    x[1, 9, 2] = np.nan
    for axis, block in [(1, 3), (1, 10), (2, 3), (0, 2)]:
        lo, hi = kernels.block_extremes(x, axis, block, absolute=False)
        a_lo, a_hi = kernels.block_extremes(x, axis, block, absolute=True)
        moved = np.moveaxis(x, axis, -1)
        nb = -(-x.shape[axis] // block)
        pad = np.concatenate([moved, np.repeat(moved[..., -1:], nb * block - x.shape[axis], axis=-1)], axis=-1)
        blocks = pad.reshape(*moved.shape[:-1], nb, block)
        expected_lo = np.moveaxis(blocks.min(axis=-1), -1, axis).reshape(-1)
        expected_hi = np.moveaxis(blocks.max(axis=-1), -1, axis).reshape(-1)
        expected_amax = np.moveaxis(np.abs(blocks).max(axis=-1), -1, axis).reshape(-1)
        np.testing.assert_array_equal(lo, expected_lo)
        np.testing.assert_array_equal(hi, expected_hi)
        np.testing.assert_array_equal(a_hi, expected_amax)
        np.testing.assert_array_equal(a_lo, -expected_amax)


# Counts numba's compilations from here on, in the script that follows (`compiled`).
COMPILE_LISTENER = """
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, ev): compiled.append(str(ev.data))
    def on_end(self, ev): pass
event.register("numba:compile", Listener())
"""

WARM_CHECK = """
import numpy as np
import engine
from engine import QuantizationConfig, Quantizer, warm_kernels
from engine.jit import compiled_signatures

warm_kernels()
before = compiled_signatures()
""" + COMPILE_LISTENER + """x = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
x16 = (x * 100).astype(np.int16)
x_ro = np.frombuffer(x.tobytes(), np.float32).reshape(x.shape)  # read-only, as over a `bytes` request body
for fields in [{}, {"quantization_type": "UINT8"}, {"quantization_type": "INT16"}, {"per_channel": True},
               {"quantization_type": "INT4", "group_size": 32}, {"quantization_type": "UINT4", "symmetric": True},
               {"quantization_type": "FP8_E4M3"}, {"quantization_type": "FP8_E5M2", "per_channel": True},
               {"quantization_type": "FP8_E4M3", "group_size": 16}, {"quantization_type": "BFLOAT16"},
               {"quantization_type": "FLOAT16"}, {"quantization_mode": "DYNAMIC_PER_CHANNEL"}]:
    for data in (x, x[:2, :3], x16, x_ro):
        q = Quantizer(QuantizationConfig.from_dict(fields))
        out = q.quantize(data, channel_dim=1 if "per_channel" in fields else None)
        q.quantize(data, channel_dim=1 if "per_channel" in fields else None, report=True)
        codes_ro = np.frombuffer(out.data.tobytes(), out.data.dtype).reshape(out.data.shape)
        q.dequantize(codes_ro, channel_dim=1 if "per_channel" in fields else None)
        q.quantize_dequantize(data, channel_dim=1 if "per_channel" in fields else None)
        q.dequantize(out.data, channel_dim=1 if "per_channel" in fields else None)
        q.dequantize(out.data.astype(np.int64) if out.data.dtype.kind in "iu" else out.data,
                     channel_dim=1 if "per_channel" in fields else None)
    if fields.get("quantization_type") not in ("BFLOAT16", "FLOAT16"):
        q.calibrate([x], channel_dim=1 if "per_channel" in fields else None)
        q.quantize(x, channel_dim=1 if "per_channel" in fields else None)
# a model job reads its tensors through a read-only file mapping
import os, tempfile
from safetensors.numpy import save_file
folder = tempfile.mkdtemp()
save_file({"w.weight": x, "w.bias": x[0].copy()}, os.path.join(folder, "m.safetensors"))
for fields in [{}, {"per_channel": True}, {"quantization_type": "INT4", "group_size": 32}]:
    engine.quantize_checkpoint(os.path.join(folder, "m.safetensors"), os.path.join(folder, "out.safetensors"),
                               QuantizationConfig.from_dict(fields))
print(before, compiled_signatures(), len(compiled))
"""


def test_warm_kernels_leaves_nothing_to_compile_for_requests() -> None:
    """After warm_kernels, the operations a request or a model job runs (every type, per tensor / channel / block,
    with and without the report, codes sent back in any integer dtype, inputs read-only as over a request body or
    a file mapping) compile nothing: numba's compile events, in a fresh interpreter, stay at zero."""
    result = subprocess.run([sys.executable, "-c", WARM_CHECK], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, events = (int(v) for v in result.stdout.split())
    assert before > 0
    assert (after, events) == (before, 0)


WARM_JOB_CHECK = """
import os, tempfile
import ml_dtypes
import numpy as np
import engine
from engine import QuantizationConfig, warm_job_kernels
from engine.jit import compiled_signatures

warm_job_kernels()
before = compiled_signatures()
""" + COMPILE_LISTENER + """rng = np.random.default_rng(0)
x = rng.standard_normal((64, 96)).astype(np.float32)
bad = x.copy()
bad[3, 5], bad[7, 1] = np.nan, np.inf
folder = tempfile.mkdtemp()
from safetensors.numpy import save_file
save_file({"a.weight": x, "b.weight": x.astype(np.float16), "c.weight": x.astype(ml_dtypes.bfloat16),
           "d.bias": x[0].copy(), "e.weight": x.reshape(64, 3, 32)}, os.path.join(folder, "m.safetensors"))
save_file({"f.weight": bad}, os.path.join(folder, "bad.safetensors"))
for fields in [{}, {"per_channel": True}, {"quantization_type": "UINT8", "per_channel": True},
               {"quantization_type": "INT16"}, {"quantization_type": "INT4", "group_size": 32},
               {"quantization_type": "UINT4", "group_size": 32}, {"quantization_type": "INT4", "group_size": 16,
                                                                  "symmetric": True},
               {"quantization_type": "FP8_E4M3"}, {"quantization_type": "FP8_E5M2", "per_channel": True},
               {"quantization_type": "FP8_E4M3", "group_size": 16}, {"quantization_type": "BFLOAT16"},
               {"quantization_type": "FLOAT16"}, {"calibration_method": "PERCENTILE", "per_channel": True},
               {"quantization_mode": "DYNAMIC_PER_CHANNEL"}]:
    for channel_dim in (None, -1):
        engine.quantize_checkpoint(os.path.join(folder, "m.safetensors"), os.path.join(folder, "out.safetensors"),
                                   QuantizationConfig.from_dict(fields), channel_dim=channel_dim)
    engine.quantize_checkpoint(os.path.join(folder, "bad.safetensors"), os.path.join(folder, "out.safetensors"),
                               QuantizationConfig.from_dict({**fields, "error_on_nan": False, "error_on_inf": False}))
print(before, compiled_signatures(), len(compiled))
"""


def test_warm_job_kernels_leaves_nothing_to_compile_for_jobs() -> None:
    """A job worker loads only the job's kernels (warm_job_kernels), and they are all a job runs: every type, per
    tensor / channel (first or last axis) / block, float32 / float16 / bfloat16 tensors, non-finite values; numba's
    compile events, in a fresh interpreter, stay at zero, with fewer signatures loaded than warm_kernels loads."""
    result = subprocess.run([sys.executable, "-c", WARM_JOB_CHECK], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, events = (int(v) for v in result.stdout.split())
    assert 0 < before < sum(len(sigs) for _, sigs in jit._REGISTRY)
    assert (after, events) == (before, 0)


LOAD_CHECK = """
import os, sys
import numpy as np
from engine import QuantizationConfig, Quantizer, warm_kernels
# modules that only numba's registry refresh imports (a loaded kernel's environment may import others of numba.np)
LOWERING = ("numba.np.polynomial.polynomial_functions", "numba.np.random.generator_methods", "numba.typed.dictimpl",
            "numba.cpython.setobj", "numba.misc.gdb_hook")
warm_kernels()
x = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
q = Quantizer(QuantizationConfig.from_dict({"symmetric": True}))
q.import_parameters({"global_scale": 0.05, "global_zero_point": 0})
codes = q.quantize(x).data
expected = np.clip(np.rint(x / np.float32(0.05)), -128, 127).astype(np.int8)
loaded = [name for name in LOWERING if name in sys.modules]
# a kernel the cache lacks (a new module of its own) compiles as before
sys.path.insert(0, sys.argv[1])
with open(os.path.join(sys.argv[1], "extra_kernel.py"), "w") as fh:
    fh.write("from engine.jit import kernel\\n@kernel('float64(float64[::1])')\\ndef total(x):\\n    return x.sum()\\n")
import extra_kernel
total = extra_kernel.total(np.arange(5.0))
print(int(np.array_equal(codes, expected)), len(loaded), total, int(all(name in sys.modules for name in LOWERING)))
"""


def test_loading_kernels_installs_no_lowering_and_a_missing_one_still_compiles(tmp_path: Path) -> None:
    """warm_kernels loads the kernels' machine code without numba's lowering registries (its math, numpy, typed
    containers ...: 9 MB of every worker, which only a compilation uses), and the kernels answer as numpy does. A
    kernel the cache lacks still compiles: numba's compiler installs the registries itself."""
    result = subprocess.run([sys.executable, "-c", LOAD_CHECK, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    exact, loaded_before, total, loaded_after = result.stdout.split()
    assert (exact, loaded_before) == ("1", "0")
    assert (float(total), loaded_after) == (10.0, "1")


FILL_CHECK = """
import os, sys
os.environ["QUANTIZER_KERNEL_CACHE_DIR"] = sys.argv[1]  # empty: something to compile
from engine import fill_kernel_cache, kernels, warm_kernels
""" + COMPILE_LISTENER + """filled = fill_kernel_cache((kernels.widen_all,))
ready = warm_kernels((kernels.widen_all,))
print(int(filled), ready, len(compiled), sum(kernels.widen_all.stats.cache_hits.values()))
"""


def test_fill_kernel_cache_compiles_in_a_child_and_the_caller_only_loads(tmp_path: Any) -> None:
    """fill_kernel_cache has a forked child compile into an empty cache folder: the caller then compiles nothing
    (numba's compile events stay at zero in it) and loads every signature from the cache."""
    result = subprocess.run([sys.executable, "-c", FILL_CHECK, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    filled, ready, events, hits = (int(v) for v in result.stdout.split())
    assert (filled, events) == (1, 0)
    assert ready == hits > 0
    assert any(tmp_path.rglob("*.nbi"))


def _engine_numba_functions() -> list[Any]:
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    import engine

    found = []
    for info in pkgutil.iter_modules(engine.__path__):
        module = importlib.import_module(f"engine.{info.name}")
        found += [v for v in vars(module).values()
                  if isinstance(v, Dispatcher) and v.py_func.__module__ == module.__name__]
    return found


def _names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def test_loaded_kernels_keep_no_linking_ir_and_no_compiled_function_calls_one() -> None:
    """warm_kernels drops the LLVM IR each loaded signature keeps so that other compiled functions could link it
    in (about half of the kernels' resident memory). That is safe while no compiled function calls a kernel: no
    numba function of the engine names one. (The kernels still answer: this file's other tests run after it.)"""
    kernel_ids = {id(dispatcher) for dispatcher, _ in jit._REGISTRY}
    assert all(compiled.library._shared_module is None
               for dispatcher, _ in jit._REGISTRY for compiled in dispatcher.overloads.values())
    functions = _engine_numba_functions()
    assert kernel_ids <= {id(f) for f in functions}
    callers = {(f.py_func.__name__, name) for f in functions for name in _names(f.py_func.__code__)
               if id(f.py_func.__globals__.get(name)) in kernel_ids}
    assert not callers


# ---------------------------------------------------------------------- FP8 clipped count, grouped calibration
@pytest.mark.parametrize("qtype", ["FP8_E4M3", "FP8_E5M2"])
def test_fp8_clipped_values_count_saturated_values(qtype: str) -> None:
    """clipped_values of a float8 quantize: the values whose x / scale rounds beyond the format's max (ml_dtypes'
    non-saturating cast gives them NaN / inf), +-inf and NaN; a value that rounds to max is not clipped."""
    import ml_dtypes

    from engine import QuantizationConfig, Quantizer

    fp8 = ml_dtypes.float8_e4m3fn if qtype == "FP8_E4M3" else ml_dtypes.float8_e5m2
    top = float(ml_dtypes.finfo(fp8).max)
    edge = [top, top * 1.03, top * 1.0357, top * 1.0714, top * 1.08, top * 1.2, 1e30, np.inf, -np.inf, np.nan]
    x = np.array([*edge, *(-v for v in edge), 0.5, -3.0], F32)
    scale = F32(2.0)
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": qtype, "error_on_nan": False,
                                                "error_on_inf": False}))
    q.import_parameters({"global_scale": float(scale), "global_zero_point": 0})
    result = q.quantize(x * scale)
    with np.errstate(over="ignore", invalid="ignore"):
        unsaturated = np.divide(x * scale, scale, dtype=F32).astype(fp8).astype(F32)
    assert result.delta.clipped_values == int(np.count_nonzero(~np.isfinite(unsaturated)))
    assert 0 < result.delta.clipped_values < x.size - 4


def onnx_params(lo: npt.NDArray[np.float32], hi: npt.NDArray[np.float32], qmin: int, qmax: int
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """ONNX DynamicQuantizeLinear's parameters of [lo, hi] (widened to 0), all in float32."""
    lo, hi = np.minimum(lo, F32(0)), np.maximum(hi, F32(0))
    scale = ((hi - lo) / F32(qmax - qmin)).astype(F32)
    zp = np.clip(np.rint(F32(qmin) - lo / scale), qmin, qmax).astype(np.int64)
    return scale, zp


def test_grouped_instances_calibrate_one_range_per_block() -> None:
    from engine import QuantizationConfig, Quantizer

    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((6, 20)).astype(F32) * F32(k + 1) for k in range(3)]
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "UINT4", "group_size": 8,
                                                "calibration_method": "MINMAX"}))
    params = q.calibrate(batches)
    stacked = np.stack(batches)
    padded = np.concatenate([stacked, np.repeat(stacked[..., -1:], 4, axis=-1)], axis=-1).reshape(3, 6, 3, 8)
    scale, zp = onnx_params(padded.min(axis=(0, 3)), padded.max(axis=(0, 3)), 0, 15)
    assert (params.axis, params.block_size) == (1, 8)
    np.testing.assert_array_equal(params.scale, scale)
    np.testing.assert_array_equal(params.zero_point, zp)
    assert q.config.quantization_mode.name == "CALIBRATED"
    x = rng.standard_normal((6, 20)).astype(F32) * F32(4)
    s, z = np.repeat(scale, 8, axis=1)[:, :20], np.repeat(zp, 8, axis=1)[:, :20]
    codes, _, clipped = reference(x, s, z, 0, 15)
    result = q.quantize(x)
    np.testing.assert_array_equal(result.data, codes.astype(np.uint8))
    assert result.delta.clipped_values == clipped > 0
    exported = q.export_parameters()
    assert exported["block_size"] == 8
    assert exported["block_axis"] == 1
    with pytest.raises(Exception, match="one shape"):
        q.calibrate([x, x[:, :16]])


def test_grouped_histogram_calibration_is_bounded() -> None:
    from engine import LimitError, QuantizationConfig, Quantizer

    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT4", "group_size": 2,
                                                "calibration_method": "PERCENTILE"}))
    with pytest.raises(LimitError):
        q.calibrate([np.zeros((100, 200), F32)])
    small = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT4", "group_size": 4,
                                                    "calibration_method": "PERCENTILE"}))
    assert small.calibrate([np.arange(32, dtype=F32).reshape(4, 8)]).scale.shape == (4, 2)


def test_the_kernel_cache_folder_is_configurable(tmp_path: Path) -> None:
    """QUANTIZER_KERNEL_CACHE_DIR reaches numba before it is first imported, whichever engine module loads first."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "QUANTIZER_KERNEL_CACHE_DIR")}
    env["QUANTIZER_KERNEL_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", "import engine.config, numba; print(numba.config.CACHE_DIR)"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(tmp_path)


@pytest.mark.parametrize(("shape", "axis"), [((600, 1024), None), ((600, 1024), 0), ((4, 300, 256), 1)])
def test_threads_give_the_same_codes_and_report(shape: tuple[int, ...], axis: int | None) -> None:
    """Rows split over threads (model jobs): the same bits, the same clipped count, the same report sums."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3).astype(F32)
    channels = 1 if axis is None else shape[axis]
    scale = rng.uniform(0.005, 0.03, channels).astype(F32)
    lay = kernels.layout(x.shape, axis)
    single, split = np.empty(shape, np.int8), np.empty(shape, np.int8)
    clipped, sums = kernels.run_quantize(x, single, lay, scale, np.zeros(channels, F32), -128, 127, False,
                                         report=True)
    lo, hi = kernels.minmax(x, axis)
    with kernels.threads(3):
        assert kernels.minmax(x, axis)[0].tobytes() == np.asarray(lo).tobytes()
        assert kernels.minmax(x, axis)[1].tobytes() == np.asarray(hi).tobytes()
        clipped3, sums3 = kernels.run_quantize(x, split, lay, scale, np.zeros(channels, F32), -128, 127, False,
                                               report=True)
    assert split.tobytes() == single.tobytes()
    assert clipped3 == clipped > 0
    assert sums is not None
    assert sums3 is not None
    np.testing.assert_allclose(sums3.signal, sums.signal, rtol=1e-12)
    np.testing.assert_allclose(sums3.noise, sums.noise, rtol=1e-12)
    assert (sums3.worst, sums3.lo, sums3.hi, sums3.compared) == (sums.worst, sums.lo, sums.hi, sums.compared)
    assert sums3.error == pytest.approx(sums.error, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("shift", [-50.0, 50.0, 0.0])
@pytest.mark.parametrize("size", [5003, 37])
def test_report_extremes_as_numpy(shift: float, size: int) -> None:
    """The fused report's max |e|, min x and max x (taken from the bits of whole chunks, lanes for the tails)
    against numpy: all negative, all positive and mixed data, signed zeros, chunked and tail-only sizes."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(size) + shift).astype(F32)
    x[::7] = -0.0
    x[3::11] = 0.0
    scale = F32(0.5)
    out = np.empty(size, np.int8)
    _, sums = kernels.run_quantize(x, out, kernels.layout(x.shape, None), scale, F32(0), -128, 127, False,
                                   report=True)
    assert sums is not None
    codes = np.clip(np.rint(x / scale), -128, 127)
    np.testing.assert_array_equal(out, codes.astype(np.int8))
    error = (codes.astype(F32) * scale) - x
    assert sums.lo == x.min()
    assert sums.hi == x.max()
    assert sums.worst == np.abs(error).max()
    assert sums.finite
