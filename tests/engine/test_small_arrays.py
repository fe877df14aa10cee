"""engine/small.py's scalar shortcuts give the results of the array code they stand in for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine import QuantizationConfig, QuantizationType, Quantizer, kernels, ranges, small

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
