"""Per-layer decisions: which type, bits, symmetry and granularity a named layer gets, or whether it is skipped.

Order of the rules, first match wins for skipping:
1. `skip_layers` names the layer -> skipped (identity);
2. `quantize_bias` is false and the name contains "bias" -> skipped;
3. `quantize_weights_only` is true and the name does not contain "weight" -> skipped (activations pass through).
Then, when the instance's type is MIXED or `enable_mixed_precision` is on, the overrides apply:
`custom_quantization_config[layer]` sets any of type / bits / symmetric / per_channel; otherwise a layer listed
in `mixed_precision_layers` is kept at higher precision, FLOAT16. A MIXED instance quantizes every other layer
(and requests without a layer name) as INT8. A request without a layer name gets the instance's own settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import QuantizationConfig, QuantizationType

MIXED_PRECISION_TYPE = QuantizationType.FLOAT16


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    layer_name: str | None
    quantization_type: QuantizationType
    num_bits: int
    symmetric: bool
    per_channel: bool
    skip: bool = False
    reason: str = "instance settings"

    @property
    def effective_type(self) -> QuantizationType:
        return QuantizationType.NONE if self.skip else self.quantization_type

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer_name": self.layer_name,
            "quantization_type": self.effective_type.name,
            "num_bits": self.num_bits,
            "symmetric": self.symmetric,
            "per_channel": self.per_channel,
            "skip": self.skip,
            "reason": self.reason,
        }


def resolve_layer(config: QuantizationConfig, layer_name: str | None) -> LayerPlan:
    qtype = config.quantization_type
    base = LayerPlan(
        layer_name=layer_name,
        quantization_type=QuantizationType.INT8 if qtype is QuantizationType.MIXED else qtype,
        num_bits=config.num_bits,
        symmetric=config.symmetric,
        per_channel=config.per_channel,
    )
    if layer_name is None:
        return base
    if layer_name in config.skip_layers:
        return dataclasses.replace(base, skip=True, reason="listed in skip_layers")
    if not config.quantize_bias and "bias" in layer_name.lower():
        return dataclasses.replace(base, skip=True, reason="bias layer and quantize_bias is false")
    if config.quantize_weights_only and "weight" not in layer_name.lower():
        return dataclasses.replace(base, skip=True, reason="not a weight layer and quantize_weights_only is true")
    if not (qtype is QuantizationType.MIXED or config.enable_mixed_precision):
        return base
    override = config.custom_quantization_config.get(layer_name)
    if override is not None:
        new_type = override.quantization_type or base.quantization_type
        bits = override.num_bits
        if bits is None:
            # A layer given a type of its own without bits gets that type's width, as in the configuration.
            bits = base.num_bits if override.quantization_type is None else new_type.width
        return dataclasses.replace(
            base,
            quantization_type=new_type,
            num_bits=bits,
            symmetric=base.symmetric if override.symmetric is None else override.symmetric,
            per_channel=base.per_channel if override.per_channel is None else override.per_channel,
            reason="custom_quantization_config",
        )
    if layer_name in config.mixed_precision_layers:
        return dataclasses.replace(base, quantization_type=MIXED_PRECISION_TYPE, num_bits=16,
                                   reason="listed in mixed_precision_layers")
    return base
