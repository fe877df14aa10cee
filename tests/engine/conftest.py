"""Fixtures for the engine tests: no database, no Django."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from engine import QuantizationConfig, Quantizer


@pytest.fixture
def make_quantizer() -> Callable[..., Quantizer]:
    """`make_quantizer(quantization_type="UINT8", per_channel=True)`: a Quantizer from config fields."""

    def make(**config: Any) -> Quantizer:
        return Quantizer(QuantizationConfig.from_dict(config))

    return make


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
