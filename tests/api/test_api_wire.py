"""What goes over the wire at the edges: the float32 range in JSON, N-D arrays, non-finite results, explicit
dequantize parameters, per-channel parameter headers and .npz answers."""

from __future__ import annotations

import numpy as np
import pytest

from quantizers.arrays import parse_2d
from tests.api.helpers import F32, assert_error, create, ok

F32_MAX_TEXT = "3.4028235e+38"  # the shortest text of the float32 maximum, as numpy prints it


def test_the_float32_maximum_as_numpy_prints_it_is_accepted(api):
    assert str(np.finfo(np.float32).max) == F32_MAX_TEXT  # the premise, from numpy itself
    create(api, "wide", {"quantization_type": "INT8", "symmetric": True})
    body = f'{{"data": [[{F32_MAX_TEXT}, -{F32_MAX_TEXT}, 0.0]]}}'
    response = api.raw("post", "/instances/wide/quantize", body, "application/json")
    assert ok(response)["data"] == [[127, -127, 0]]
    # the careful (whole-list) parser agrees with the row-by-row one
    assert parse_2d([[float(F32_MAX_TEXT)]])[0, 0] == np.finfo(np.float32).max


@pytest.mark.parametrize("text", ["3.5e38", "-1e39", "3.4028236e+38"])
def test_values_that_round_to_infinity_in_float32_are_refused(api, text):
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(float(text)))  # independent check of the premise
    response = api.raw("post", "/instances/default/quantize", f'{{"data": [[1.0, {text}]]}}', "application/json")
    assert_error(response, 400, code="input.range")


def test_a_3d_json_array_is_told_to_use_a_binary_body(api):
    response = api.post("/instances/default/quantize", {"data": [[[1.0, 2.0]], [[3.0, 4.0]]]})
    body = assert_error(response, 400, code="input.shape")
    assert "2-D" in body["detail"]
    assert ".npy" in body["detail"]
    assert "octet-stream" in body["detail"]


def test_parse_2d_names_nested_rows_as_extra_dimensions():
    with pytest.raises(Exception, match="more than 2 dimensions"):
        parse_2d([[1.0], [[2.0]]])
    assert parse_2d([[1.0, 2.0]]).dtype == F32
