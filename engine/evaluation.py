"""Compare configurations on the same data, and recommend the smallest that is good enough.

`evaluate(x, base, candidates, min_sqnr_db, max_values)` builds each candidate's full configuration (a partial
config over `base`, as PATCH applies one), runs it on a fresh Quantizer (calibrated first with `x` when its mode
takes frozen parameters: STATIC or CALIBRATED), fake-quantizes `x` with a quality report, and lists per
candidate its full config, bits per value, bytes (codes at their bit width plus 4 bytes per scale and per zero
point), SQNR, max error, clipped share and time. Nothing outside the fresh Quantizers changes.

Without candidates, `standard_grid()`: the types x per-tensor / per-channel x symmetric / asymmetric x the
calibration methods MINMAX, PERCENTILE and MSE, as applicable (a float type has no range to calibrate; FP8 has
no zero point, so it is symmetric only, and its range is not searched by MSE, whose error model is an integer
grid).

`recommended`: among the candidates meeting the target (SQNR >= min_sqnr_db; an exact reconstruction, SQNR
null, meets any), the fewest bytes; ties go to the higher SQNR, then to the earlier candidate. None without a
target or when none meets it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .casts import as_float
from .config import CalibrationMethod, QuantizationConfig, QuantizationMode
from .errors import ConfigError, EngineError, LimitError
from .quantizer import Quantizer

INTEGER_GRID = (("INT8", 8), ("UINT8", 8), ("INT16", 16), ("INT8", 4), ("INT4", 4), ("UINT4", 4))
FP8_GRID = ("FP8_E4M3", "FP8_E5M2")
FLOAT_GRID = ("FLOAT16", "BFLOAT16")
GRID_METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE, CalibrationMethod.MSE)
FP8_METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE)
PARAMETER_BYTES = 4  # per scale and per zero point

MSG_TOO_MUCH = ("evaluating {candidates} candidate(s) on {values} values processes {work} values, more than "
                "QUANTIZER_MAX_ELEMENTS ({limit}): send fewer candidates or less data")


def standard_grid() -> list[dict[str, Any]]:
    """The partial configs tried when no candidates are given, in the order ties are broken by."""
    grid: list[dict[str, Any]] = []
    calibrated = {"quantization_mode": QuantizationMode.CALIBRATED.name, "group_size": 0}
    for qtype, bits in INTEGER_GRID:
        for per_channel in (False, True):
            for symmetric in (True, False):
                grid += [{"quantization_type": qtype, "num_bits": bits, "per_channel": per_channel,
                          "symmetric": symmetric, "calibration_method": method.name, **calibrated}
                         for method in GRID_METHODS]
    for qtype in FP8_GRID:
        for per_channel in (False, True):
            grid += [{"quantization_type": qtype, "num_bits": 8, "per_channel": per_channel, "symmetric": True,
                      "calibration_method": method.name, **calibrated} for method in FP8_METHODS]
    grid += [{"quantization_type": qtype, "num_bits": 16, "per_channel": False, "symmetric": False,
              "quantization_mode": QuantizationMode.DYNAMIC.name, "group_size": 0} for qtype in FLOAT_GRID]
    return grid


@dataclasses.dataclass(frozen=True)
class Candidate:
    config: dict[str, Any]
    bits: int
    bytes: int
    sqnr_db: float | None
    max_abs_error: float
    clipped_share: float
    ms: float

    def meets(self, min_sqnr_db: float) -> bool:
        return self.sqnr_db is None or self.sqnr_db >= min_sqnr_db


@dataclasses.dataclass(frozen=True)
class Evaluation:
    candidates: list[Candidate]
    recommended: Candidate | None
    min_sqnr_db: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": [dataclasses.asdict(c) for c in self.candidates],
                "recommended": None if self.recommended is None else dataclasses.asdict(self.recommended),
                "target": None if self.min_sqnr_db is None else {"min_sqnr_db": self.min_sqnr_db}}


def needs_calibration(config: QuantizationConfig) -> bool:
    """Frozen parameters (STATIC / CALIBRATED) of a type that has a range: the candidate is calibrated first."""
    qtype = config.quantization_type
    return config.quantization_mode.needs_parameters and (qtype.is_integer or qtype.is_float8)


def bits_per_value(config: QuantizationConfig) -> int:
    return config.num_bits if config.quantization_type.is_integer else config.quantization_type.width


def configs(base: QuantizationConfig, candidates: Sequence[Mapping[str, Any]] | None) -> list[QuantizationConfig]:
    """Each candidate's full configuration; an invalid one is a ConfigError naming it (`candidates[i]`)."""
    out = []
    for index, partial in enumerate(standard_grid() if candidates is None else candidates):
        try:
            out.append(QuantizationConfig.from_dict(partial, base=base))
        except ConfigError as exc:
            raise ConfigError(f"candidates[{index}]: {exc.message}", code=exc.code,
                              field=f"candidates[{index}]" + (f".{exc.field}" if exc.field else "")) from None
    return out


def run_candidate(x: npt.NDArray[np.float32], config: QuantizationConfig) -> Candidate:
    started = time.perf_counter()
    quantizer = Quantizer(config.replace(enable_cache=False))
    if needs_calibration(config):
        quantizer.calibrate([x])
    result = quantizer.quantize_dequantize(x, report=True)
    ms = (time.perf_counter() - started) * 1000.0
    report = result.report
    assert report is not None  # asked for
    bits = bits_per_value(config)
    parameters = 0 if result.params is None else result.params.scale.size * (
        1 if config.quantization_type.is_float8 else 2)
    return Candidate(config=config.to_dict(), bits=bits,
                     bytes=math.ceil(x.size * bits / 8) + PARAMETER_BYTES * parameters, sqnr_db=report.sqnr_db,
                     max_abs_error=report.max_abs_error, clipped_share=report.clipped_share, ms=ms)


def recommend(candidates: Sequence[Candidate], min_sqnr_db: float | None) -> Candidate | None:
    if min_sqnr_db is None:
        return None
    meeting = [(c.bytes, -(math.inf if c.sqnr_db is None else c.sqnr_db), i)
               for i, c in enumerate(candidates) if c.meets(min_sqnr_db)]
    return candidates[min(meeting)[2]] if meeting else None


def evaluate(data: npt.ArrayLike, base: QuantizationConfig, candidates: Sequence[Mapping[str, Any]] | None = None,
             min_sqnr_db: float | None = None, max_values: int | None = None) -> Evaluation:
    """Run every candidate on `data` (see the module docstring). `max_values` bounds values x candidates: beyond
    it a LimitError is raised before anything is computed."""
    x = as_float(data)
    full = configs(base, candidates)
    if max_values is not None and x.size * len(full) > max_values:
        raise LimitError(MSG_TOO_MUCH.format(candidates=len(full), values=x.size, work=x.size * len(full),
                                             limit=max_values), field="candidates")
    rows = []
    for index, config in enumerate(full):
        try:
            rows.append(run_candidate(x, config))
        except EngineError as exc:
            raise type(exc)(f"candidates[{index}]: {exc.message}", code=exc.code, field=exc.field) from None
    return Evaluation(rows, recommend(rows, min_sqnr_db), min_sqnr_db)

