"""engine.pages.fresh_array: an np.empty whose huge pages are touched at their last byte, and the large answers
written into it (quantize_dequantize, dequantize, float8, the one-pass blocks) against numpy written here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine import QParams, formats, kernels, pages

F32 = np.float32
MB = 1 << 20


@pytest.mark.parametrize("count", [MB - 1, MB, 3 * MB + 5])
def test_fresh_array_touches_the_last_byte_of_each_huge_page(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    made: list[np.ndarray[Any, Any]] = []
    empty = np.empty

    def marked(shape: Any, dtype: Any) -> np.ndarray[Any, Any]:  # memory that shows which bytes were written
        out = empty(shape, dtype)
        out.reshape(-1).view(np.uint8)[:] = 0xFF
        made.append(out)
        return out

    monkeypatch.setattr(pages.np, "empty", marked)
    out = pages.fresh_array((count,), F32)
    assert out is made[0]
    assert out.shape == (count,)
    assert out.dtype == F32
    written = np.flatnonzero(out.view(np.uint8) == 0)
    if out.nbytes < 4 * MB:
        assert written.size == 0
        return
    address = np.arange(out.nbytes) + out.ctypes.data
    assert np.array_equal(written, np.flatnonzero(address % (2 * MB) == 2 * MB - 1))


def test_large_answers_written_into_fresh_arrays_match_numpy() -> None:
    x = np.random.default_rng(5).standard_normal(3 * MB + 7).astype(F32) * F32(3)
    s, z = F32(0.02), 3
    fake = kernels.quantize(x, QParams(np.asarray(s), np.asarray(z)), -128, 127, np.int8, dequantize_after=True)
    codes = np.clip(np.rint(x / s) + F32(z), F32(-128), F32(127))
    assert np.array_equal(fake, (codes - F32(z)) * s)
    back = kernels.dequantize(codes.astype(np.int8), QParams(np.asarray(s), np.asarray(z)))
    assert np.array_equal(back, (codes - F32(z)) * s)
    fp8, _, _ = formats.quantize_fp8(x, s, None, None, "e4m3fn", False)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert np.array_equal(fp8, np.clip(x / s, F32(-448), F32(448)).astype(ml_dtypes.float8_e4m3fn).astype(F32))


def test_large_per_channel_one_pass_answer_matches_numpy() -> None:
    """The one-pass blocked kernel writes a fresh float32 answer too (per channel, dynamic, fake-quantized)."""
    x = np.random.default_rng(6).standard_normal((16, MB // 4 + 3)).astype(F32)  # 16 channels, 16 MB of answer
    done = kernels.quantize_blocks(x, 1, x.shape[1], (-128, 127), (-128, 127), False, False, np.dtype(F32))
    assert done is not None
    lo, hi = np.minimum(x.min(axis=1), F32(0)), np.maximum(x.max(axis=1), F32(0))
    scale = (hi - lo) / F32(255)  # the onnx rule in float32 (docs/numerics.md)
    zp = np.clip(np.rint(F32(-128) - lo / scale), F32(-128), F32(127))
    assert np.array_equal(done.scale, scale)
    assert np.array_equal(done.zp, zp)
    codes = np.clip(np.rint(x / scale[:, None]) + zp[:, None], F32(-128), F32(127))
    assert np.array_equal(done.out, (codes - zp[:, None]) * scale[:, None])
