"""The simulated workers test what their names say: each multi-worker test fails when the coherence it is about
breaks (an engine object kept after a change, counts kept in a worker's memory, a dequantize that uses this
worker's own latest quantize instead of the stored one)."""

from __future__ import annotations

import importlib

import pytest

from engine import Quantizer
from quantizers import hotpath, services
from quantizers.registry import Registry
from tests.api.conftest import Workers


def stale_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that hands out whatever it built first: no rebuild on a new version or uid, no cache drop."""
    def current(self: Registry, instance_id: str, uid: object, version: int, cache_epoch: int) -> Quantizer | None:
        entry = self._entries.get(instance_id)
        return None if entry is None else entry.quantizer
    monkeypatch.setattr(Registry, "current", current)


def counts_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts that never reach the database (each worker would only know its own)."""
    monkeypatch.setattr(hotpath, "record_stats", lambda *args, **kwargs: None)


def own_latest_quantize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamic dequantize with this worker's own latest quantize rather than the stored one."""
    original = Quantizer.dequantize

    def dequantize(self: Quantizer, data: object, **kwargs: object) -> object:
        kwargs.pop("last_params", None)
        return original(self, data, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(Quantizer, "dequantize", dequantize)


def held_engine_errors_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error of a quantize on an engine object this worker holds answered as it is, before the row is read."""
    class Never(Exception):
        pass
    monkeypatch.setattr(services, "EngineError", Never)


MULTI_WORKER_TESTS = [
    ("test_api_calibration", "test_calibration_through_one_worker_is_used_by_another_holding_an_old_engine",
     stale_engines),
    ("test_api_instances", "test_a_delete_through_another_worker_is_seen_here", stale_engines),
    ("test_api_instances", "test_a_worker_holding_a_deleted_instances_engine_answers_404_before_the_datas_error",
     held_engine_errors_answered),
    ("test_api_config", "test_a_config_change_through_another_worker_is_seen_by_a_worker_holding_the_old_engine",
     stale_engines),
    ("test_api_stats", "test_stats_are_shared_by_every_worker", counts_in_memory),
    ("test_api_stats", "test_quality_is_shared_by_every_worker", counts_in_memory),
    ("test_api_stats", "test_clear_cache_through_another_worker_empties_this_workers_cache", stale_engines),
    ("test_api_quantize", "test_dynamic_dequantize_uses_the_latest_quantize_in_any_worker", own_latest_quantize),
]


@pytest.mark.parametrize(("module", "name", "breakage"), MULTI_WORKER_TESTS, ids=[t[1] for t in MULTI_WORKER_TESTS])
def test_each_multi_worker_test_fails_when_its_coherence_breaks(api, monkeypatch, module, name, breakage):
    test = getattr(importlib.import_module(f"tests.api.{module}"), name)
    breakage(monkeypatch)
    with pytest.raises(AssertionError):
        test(api, Workers())


def test_the_multi_worker_tests_are_all_listed():
    """A new multi-worker test joins the list above (and so gets its breakage)."""
    listed = {(module, name) for module, name, _ in MULTI_WORKER_TESTS}
    found = set()
    for module in ("test_api_calibration", "test_api_config", "test_api_instances", "test_api_parameters",
                   "test_api_quantize", "test_api_stats", "test_api_upload", "test_api_errors"):
        for name, value in vars(importlib.import_module(f"tests.api.{module}")).items():
            if name.startswith("test_") and "workers" in getattr(value, "__code__", None).co_varnames[
                    :value.__code__.co_argcount]:
                found.add((module, name))
    assert found == listed
