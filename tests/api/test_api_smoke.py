"""The spec's Testing section, verbatim."""

import pytest

SPEC_DATA = {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True}


def test_health(api):
    response = api.get("/")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "Quantizer API"}


@pytest.mark.parametrize("slash", ["", "/"])
def test_spec_examples_on_symmetric_int8_instance(api, slash):
    created = api.post(f"/instances/custom_quantizer{slash}",
                       {"quantization_type": "INT8", "num_bits": 8, "symmetric": True})
    assert created.status_code == 200
    assert created.json() == {"message": "Quantizer instance custom_quantizer created successfully"}
    response = api.post(f"/instances/custom_quantizer/quantize{slash}", SPEC_DATA)
    assert response.status_code == 200
    # scale = 9.0 / 127 (symmetric, calibration range [-127, 127]), zero point 0
    assert response.json() == {"data": [[17, 48, 79], [110, 127, 30]], "quantization_type": "INT8",
                               "original_shape": [2, 3]}
