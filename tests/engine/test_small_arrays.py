"""engine/small.py's scalar shortcuts give the results of the array code they stand in for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from engine import QParams, QuantizationConfig, QuantizationType, Quantizer, kernels, qrange, ranges, small

F32 = np.float32
INTEGER_TYPES = (QuantizationType.INT8, QuantizationType.UINT8, QuantizationType.INT16)
SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 127.5, -128.5, 255.5, 1e30,
           -1e30, 3.4028235e38, -3.4028235e38, 1e-45, 126.49999, 4194303.5, -4194304.5]


# ---------------------------------------------------------------------- engine/small.py: scalars vs arrays
@pytest.mark.parametrize("fields", [{}, {"symmetric": True}, {"quantization_mode": "symmetric"},
                                    {"quantization_type": "uint8"}, {"quantization_type": "int16", "num_bits": 12}])
def test_scalar_dynamic_params_match_ranges(fields: dict[str, Any]) -> None:
    config = QuantizationConfig.from_dict(fields)
    plan = Quantizer(config).layer_plan(None)
    rng = np.random.default_rng(5)
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e30):
        x = (rng.standard_normal((3, 4)) * scale + rng.choice([-scale, 0, scale])).astype(F32)
        raw = kernels.minmax(x)
        assert small.dynamic_params(config, x, plan, None, raw) == ranges.dynamic_params(config, x, plan, None, raw)


# ---------------------------------------------------------------------- engine/small.py: quantize vs the kernel
# Every engine call below runs twice, on two fresh instances: once as it comes (a small per-tensor array takes
# small.quantize_dynamic or small.quantize) and once with small.MAX_ELEMENTS = 0 (the compiled kernel). A spy
# checks that the first run did take a small path and the second did not, so that these tests cannot quietly
# compare the kernel with itself.
PROPERTY = settings(max_examples=200, deadline=None, database=None)
ALL_INTEGER_TYPES = (*INTEGER_TYPES, QuantizationType.INT4, QuantizationType.UINT4)
RULES = ("onnx", "ort_tooling", "torch")
any_float = st.floats(width=32)  # NaN and +-inf included
small_shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@st.composite
def type_and_bits(draw: st.DrawFn) -> tuple[QuantizationType, int]:
    qtype = draw(st.sampled_from(ALL_INTEGER_TYPES))
    return qtype, draw(st.integers(2, qtype.width))


def fields_of(tb: tuple[QuantizationType, int], **fields: Any) -> dict[str, Any]:
    return {"quantization_type": tb[0].name, "num_bits": tb[1], "error_on_nan": False, "error_on_inf": False,
            **fields}


def both_paths(monkeypatch: pytest.MonkeyPatch, make: Callable[[], Quantizer], call: Callable[[Quantizer], Any]
               ) -> tuple[tuple[Any, Quantizer], tuple[Any, Quantizer]]:
    """((result, instance) by the small path, (result, instance) by the kernel) of `call` on fresh instances."""
    taken: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(small, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            answer = real(*args, **kwargs)
            if answer is not None:
                taken.append(name)
            return answer

        return run

    for name in ("quantize", "quantize_dynamic"):
        monkeypatch.setattr(small, name, spy(name))
    fast = make()
    fast_result = call(fast)
    assert taken, "the small path was not taken"
    taken.clear()
    monkeypatch.setattr(small, "MAX_ELEMENTS", 0)
    monkeypatch.setattr(small, "REPORT_MAX_ELEMENTS", 0)
    slow = make()
    slow_result = call(slow)
    assert not taken, "the kernel run went the small way"
    monkeypatch.undo()
    return (fast_result, fast), (slow_result, slow)


def assert_same_call(fast: tuple[Any, Quantizer], slow: tuple[Any, Quantizer]) -> None:
    """The same bits (codes or dequantized values, dtype), clipped count, parameters and statistics."""
    (a, qa), (b, qb) = fast, slow
    assert a.data.dtype == b.data.dtype
    assert a.data.shape == b.data.shape
    assert a.data.tobytes() == b.data.tobytes()
    assert a.params == b.params
    ignore = {"processing_time_ms"}
    assert {k: v for k, v in vars(a.delta).items() if k not in ignore} == \
           {k: v for k, v in vars(b.delta).items() if k not in ignore}
    assert {k: v for k, v in qa.stats.to_dict().items() if k not in ignore} == \
           {k: v for k, v in qb.stats.to_dict().items() if k not in ignore}
    if b.report is None:
        assert a.report is None
        return
    ra, rb = a.report.to_dict(), b.report.to_dict()
    # Float64 sums, possibly in another order: their last bits differ. So an SQNR near 0 dB (noise as strong as
    # the signal) differs by ~1e-15 dB, not by a share of itself, and a mean error that cancels to ~0 by a share
    # of the error's size.
    floor = {"sqnr_db": 1e-9, "rms_error": 0.0, "mean_error": 1e-12 * (rb["rms_error"] or 0.0)}
    for key in ("sqnr_db", "rms_error", "mean_error"):
        assert (ra[key] is None) == (rb[key] is None)
        if rb[key] is not None:
            assert ra[key] == pytest.approx(rb[key], rel=1e-9, abs=max(floor[key], 1e-300))
    for key in ("max_abs_error", "clipped", "clipped_share", "range", "values"):
        assert ra[key] == rb[key], key
    assert qa.quality.to_dict().keys() == qb.quality.to_dict().keys()


FLT_MAX = float(np.finfo(np.float32).max)


@PROPERTY
@given(tb=type_and_bits(), symmetric=st.booleans(), rule=st.sampled_from(RULES), fake=st.booleans(),
       report=st.booleans(), x=arrays(np.float32, small_shapes, elements=any_float))
# Found by the property once in a few runs: the range reaches FLT_MAX and an infinity is let through, so that a
# value dequantizes to +-inf (an overflow) and its error is inf - inf (NaN): the report is then redone, and no
# warning may escape.
@example(tb=(QuantizationType.INT16, 16), symmetric=False, rule="torch", fake=False, report=True,
         x=np.array([FLT_MAX, np.inf], np.float32))
@example(tb=(QuantizationType.INT4, 4), symmetric=True, rule="onnx", fake=True, report=True,
         x=np.array([FLT_MAX, -np.inf], np.float32))
def test_dynamic_small_path_matches_kernel(tb: tuple[QuantizationType, int], symmetric: bool, rule: str, fake: bool,
                                           report: bool, x: npt.NDArray[np.float32]) -> None:
    """Dynamic parameters from the data (NaN and +-inf allowed), codes or fake-quantized values."""
    config = QuantizationConfig.from_dict(fields_of(tb, symmetric=symmetric, qparams_rule=rule))
    with pytest.MonkeyPatch.context() as mp:
        fast, slow = both_paths(mp, lambda: Quantizer(config), lambda q: (
            q.quantize_dequantize(x, report=report) if fake else q.quantize(x, report=report)))
    assert_same_call(fast, slow)


@PROPERTY
@given(tb=type_and_bits(), zp_share=st.floats(0, 1), exponent=st.integers(-20, 20), fake=st.booleans(),
       report=st.booleans(), validate=st.booleans(), data=st.data())
def test_static_small_path_matches_kernel(tb: tuple[QuantizationType, int], zp_share: float, exponent: int,
                                          fake: bool, report: bool, validate: bool, data: st.DataObject) -> None:
    """Frozen parameters: values that clip at both ends, ties at .5 (a power-of-two scale makes (k + 0.5) * scale
    exact), NaN and +-inf, with and without validation."""
    qmin, qmax = qrange(*tb)
    zp = round(qmin + zp_share * (qmax - qmin))
    scale = 2.0 ** exponent
    ties = st.integers(2 * (qmin - zp) - 8, 2 * (qmax - zp) + 8).map(lambda k: (k + 0.5) * scale)
    values = st.one_of(ties, any_float, st.floats(-300 * scale, 300 * scale, width=32))
    x = data.draw(arrays(np.float32, small_shapes, elements=values))
    config = QuantizationConfig.from_dict(fields_of(tb, quantization_mode="STATIC"))
    with pytest.MonkeyPatch.context() as mp:
        fast, slow = both_paths(
            mp, lambda: Quantizer(config, parameters={"global_scale": scale, "global_zero_point": zp}),
            lambda q: (q.quantize_dequantize if fake else q.quantize)(x, validate=validate, report=report))
    assert_same_call(fast, slow)


def test_small_path_ties_round_half_to_even(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties at .5 go to the even code, the zero point added after rounding (numpy written here: np.rint is half to
    even), and values beyond the range saturate and count as clipped."""
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300.0, -300.0], F32)
    q = Quantizer(QuantizationConfig.from_dict({"quantization_mode": "STATIC"}),
                  parameters={"global_scale": 1.0, "global_zero_point": 3})
    taken: list[int] = []
    real = small.quantize
    monkeypatch.setattr(small, "quantize", lambda *a, **k: (taken.append(1), real(*a, **k))[1])
    result = q.quantize(x)
    assert taken
    assert result.data.tolist() == [3, 5, 5, 3, 1, 1, 127, -128]
    assert result.delta.clipped_values == 2


def test_small_path_nan_gets_the_zero_point() -> None:
    q = Quantizer(QuantizationConfig.from_dict({"quantization_mode": "STATIC", "error_on_nan": False,
                                                "error_on_inf": False}),
                  parameters={"global_scale": 0.5, "global_zero_point": -7})
    result = q.quantize(np.array([np.nan, np.inf, -np.inf, 1.0], F32))
    assert result.data.tolist() == [-7, 127, -128, -5]
    assert result.delta.clipped_values == 3
    assert q.quantize_dequantize(np.array([np.nan, 1.0], F32)).data.tolist() == [0.0, 1.0]


def test_small_path_is_only_for_small_per_tensor_arrays() -> None:
    x = np.zeros(small.MAX_ELEMENTS, F32)
    per_tensor = QParams.of(1.0, 0)
    assert small.applies(x, per_tensor, report=False)
    assert not small.applies(np.zeros(small.MAX_ELEMENTS + 1, F32), per_tensor, report=False)
    assert not small.applies(np.zeros(small.REPORT_MAX_ELEMENTS + 1, F32), per_tensor, report=True)
    assert not small.applies(x[:4].reshape(2, 2), QParams.of([1.0, 1.0], [0, 0], axis=0), report=False)


# ---------------------------------------------------------------------- kernels.quantize_blocks: one flat block
@PROPERTY
@given(x=arrays(F32, st.integers(1, 64), elements=st.floats(-1e6, 1e6, width=32)), tb=type_and_bits(),
       symmetric=st.booleans(), torch=st.booleans())
def test_one_flat_block_takes_one_kernel_call_with_the_blocks_answer(x: npt.NDArray[np.float32],
                                                                     tb: tuple[QuantizationType, int],
                                                                     symmetric: bool, torch: bool) -> None:
    """A flat array as one block (engine/small.py's dynamic quantize) skips the blocks' layout: the same answer as
    the same values as one row of blocks, and codes that are numpy's formula with the parameters it gives."""
    qmin, qmax = qrange(tb[0], tb[1])
    dtype = np.dtype(np.int16)
    one = kernels.quantize_blocks(x, 0, x.size, (qmin, qmax), (qmin, qmax), symmetric, torch, dtype)
    row = kernels.quantize_blocks(x.reshape(1, -1), 1, x.size, (qmin, qmax), (qmin, qmax), symmetric, torch, dtype)
    assert (one is None) == (row is None)
    if one is None or row is None:
        return
    assert one.clipped == row.clipped
    np.testing.assert_array_equal(one.scale, row.scale)
    np.testing.assert_array_equal(one.zp, row.zp)
    np.testing.assert_array_equal(one.out, row.out.reshape(-1))
    codes = np.clip(np.rint(x / one.scale[0]) + one.zp[0], qmin, qmax)
    np.testing.assert_array_equal(one.out, codes.astype(dtype))
