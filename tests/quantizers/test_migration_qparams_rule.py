"""0004_qparams_rule: rows stored before the rule existed get `ort_tooling`; a fresh `default` gets `onnx`."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from quantizers.models import QuantizerInstance

BEFORE = [("quantizers", "0003_stats_from_engine")]
AFTER = [("quantizers", "0004_qparams_rule")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_existing_rows_get_ort_tooling_and_fresh_default_onnx() -> None:
    assert QuantizerInstance.objects.get(instance_id="default").config["qparams_rule"] == "onnx"
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE)
        old_apps = executor.loader.project_state(BEFORE).apps
        Instance = old_apps.get_model("quantizers", "QuantizerInstance")
        Instance.objects.create(instance_id="legacy", config={"quantization_type": "INT8"}, uid=uuid.uuid4())
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        assert QuantizerInstance.objects.get(instance_id="legacy").config == {
            "quantization_type": "INT8", "qparams_rule": "ort_tooling"}
        # (the default, stored before 0004 in this round trip, is an existing row now)
        assert QuantizerInstance.objects.get(instance_id="default").config["qparams_rule"] == "ort_tooling"
    finally:  # the later migrations back, so that the tests after this one find the schema they expect
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
