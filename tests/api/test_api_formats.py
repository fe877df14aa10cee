"""The number formats through the JSON API: INT4 codes as integers, FP8 / BFLOAT16 answers as the decoded float
numbers, grouped parameters exported as block parameters."""

import numpy as np

from tests.api.helpers import create, ok

X = [[0.1, -0.5, 2.0, 0.75], [1.5, -3.0, 0.0, 0.3]]


def test_int4_grouped_quantize_answers_integer_codes_and_block_parameters(api):
    create(api, "i4", {"quantization_type": "INT4", "symmetric": True, "group_size": 2})
    body = ok(api.post("/instances/i4/quantize", {"data": X}))
    codes = np.asarray(body["data"])
    assert codes.dtype.kind == "i"
    assert codes.min() >= -8
    assert codes.max() <= 7
    back = ok(api.post("/instances/i4/dequantize", {"data": body["data"]}))["data"]
    assert np.asarray(back).shape == (2, 4)


def test_fp8_and_bfloat16_answer_decoded_floats(api):
    create(api, "f8", {"quantization_type": "FP8_E4M3"})
    body = ok(api.post("/instances/f8/quantize", {"data": X}))
    # amax 3.0: scale float32(3) / 448; 3.0 / scale = 448 exactly
    assert body["data"][1][1] == -448.0
    create(api, "bf", {"quantization_type": "BFLOAT16"})
    answer = ok(api.post("/instances/bf/quantize", {"data": [[0.1]]}))["data"]
    assert np.float32(answer[0][0]) == np.float32(0.10009765625)  # bfloat16 0x3DCD
