"""The models hold exactly the engine's facts: its statistics and quality fields and its stored parameter keys."""

from __future__ import annotations

import dataclasses

from engine import STATE_KEYS, QualityStats, Stats
from quantizers.models import LayerParameters, QuantizerParameters, QuantizerStats


def test_parameter_columns_are_the_engines_state_keys():
    # layer_params is kept as LayerParameters rows, one per layer; every other key is a column.
    columns = {f.name for f in QuantizerParameters._meta.concrete_fields} - {"instance", "updated_at"}
    assert columns | {"layer_params"} == set(STATE_KEYS)
    assert {f.name for f in LayerParameters._meta.concrete_fields} >= {"instance", "layer_name", "params",
                                                                        "source_job"}


def test_statistics_columns_are_the_engines_stats_fields():
    columns = {f.name for f in QuantizerStats._meta.concrete_fields} - {"instance", "updated_at", "last_params"}
    assert columns == {f.name for f in dataclasses.fields(Stats)} | {f.name for f in dataclasses.fields(QualityStats)}
    assert QuantizerStats._meta.get_field("last_zero_point").get_internal_type() == "BigIntegerField"
