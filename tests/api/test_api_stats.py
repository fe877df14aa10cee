"""stats, clear_cache, reset_stats: counters persisted across workers, the cache epoch."""

from __future__ import annotations

import pytest

from quantizers import registry
from quantizers.models import QuantizerInstance
from tests.api.helpers import STATS_FIELDS, assert_error, create, ok, snapshot

SLASHES = pytest.mark.parametrize("slash", ["", "/"])
ZERO = {"clipped_values": 0, "total_values": 0, "quantize_calls": 0, "dequantize_calls": 0, "cache_hits": 0,
        "cache_misses": 0, "last_scale": 0.0, "last_zero_point": 0.0, "processing_time_ms": 0.0}


def stats(api, instance_id="default"):
    return ok(api.get(f"/instances/{instance_id}/stats"))


def counters(api, instance_id="default"):
    s = stats(api, instance_id)
    return {k: s[k] for k in ("clipped_values", "total_values", "quantize_calls", "dequantize_calls", "cache_hits",
                              "cache_misses")}


def static_instance(api, instance_id="st", **config):
    """STATIC INT8 with scale 0.1, zero point 0: x -> rint(10 x), saturating beyond +-12.7."""
    create(api, instance_id, {"quantization_mode": "STATIC", **config})
    ok(api.post(f"/instances/{instance_id}/parameters",
                {"parameters": {"global_scale": 0.1, "global_zero_point": 0}}))


# ---------------------------------------------------------------------------- stats
@SLASHES
def test_fresh_stats_are_zero(api, slash):
    body = ok(api.get(f"/instances/default/stats{slash}"))
    assert set(body) == STATS_FIELDS | {"last_channel_scales", "last_channel_zero_points", "quality"}
    assert {k: body[k] for k in STATS_FIELDS} == ZERO
    assert body["quality"] == {"latest_sqnr_db": None, "min_sqnr_db": None, "clipped_share": None,
                               "reported_calls": 0}
    assert body["last_channel_scales"] is None
    assert body["last_channel_zero_points"] is None
    for name in ("clipped_values", "total_values", "quantize_calls", "dequantize_calls", "cache_hits", "cache_misses"):
        assert type(body[name]) is int


def test_stats_count_every_operation(api):
    static_instance(api)
    ok(api.post("/instances/st/quantize", {"data": [[100.0, 1.0, -100.0]]}))  # 2 saturate
    ok(api.post("/instances/st/quantize", {"data": [[1.0, 2.0]], "validate": True}))
    ok(api.post("/instances/st/quantize_dequantize", {"data": [[50.0], [0.5]]}))  # 1 saturates
    ok(api.post("/instances/st/dequantize", {"data": [[1, 2, 3]]}))
    assert counters(api, "st") == {"clipped_values": 3, "total_values": 7, "quantize_calls": 3,
                                   "dequantize_calls": 2, "cache_hits": 0, "cache_misses": 1}
    body = stats(api, "st")
    assert body["last_scale"] == 0.1
    assert body["last_zero_point"] == 0
    assert body["processing_time_ms"] > 0


def test_failed_requests_count_nothing(api):
    static_instance(api)
    before = stats(api, "st")
    assert_error(api.post("/instances/st/quantize", {"data": [[1.0], [2.0, 3.0]]}), 400)
    assert_error(api.post("/instances/st/dequantize", {"data": [[1000]]}), 400)
    assert_error(api.post("/instances/st/quantize", {"data": [[1.0]], "channel_dim": 5}), 400)
    assert stats(api, "st") == before


def test_stats_are_shared_by_every_worker(api, workers):
    static_instance(api)
    for name in ("a", "b", "a", "c"):
        with workers(name):
            ok(api.post("/instances/st/quantize", {"data": [[1.0, 2.0, 300.0]]}))
    registry.active().clear()
    assert counters(api, "st") == {"clipped_values": 4, "total_values": 12, "quantize_calls": 4,
                                   "dequantize_calls": 0, "cache_hits": 0, "cache_misses": 0}


def test_quality_is_shared_by_every_worker(api, workers):
    """The quality figures of reported calls through several workers add up in the database, as the counters do."""
    static_instance(api)
    sqnrs = []
    for name, data in (("a", [[1.04, 2.0, 300.0]]), ("b", [[0.33, -0.71]]), ("a", [[5.55, 1.0]]), ("c", [[0.1]])):
        with workers(name):
            sqnrs.append(ok(api.post("/instances/st/quantize", {"data": data, "report": True}))["report"]["sqnr_db"])
    registry.active().clear()
    quality = stats(api, "st")["quality"]
    assert quality["reported_calls"] == 4
    assert quality["clipped_share"] == 1 / 8
    assert quality["latest_sqnr_db"] is None  # 0.1 at scale 0.1: exact
    assert quality["min_sqnr_db"] == min(s for s in sqnrs if s is not None)


def test_stats_of_an_unknown_instance_is_404(api):
    assert_error(api.get("/instances/ghost/stats"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_stats_is_read_only(api, method):
    response = getattr(api.client, method)("/instances/default/stats", data="{}", content_type="application/json")
    assert_error(response, 405, code="http.method_not_allowed", detail=f'Method "{method.upper()}" not allowed.')


# ---------------------------------------------------------------------------- the dequantization cache
def test_repeated_dequantize_hits_the_cache(api):
    static_instance(api)
    for _ in range(3):
        ok(api.post("/instances/st/dequantize", {"data": [[1, 2, 3]]}))
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (1, 2)
    ok(api.post("/instances/st/dequantize", {"data": [[3, 2, 1]]}))  # other codes: a miss
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (2, 2)


def test_a_disabled_cache_counts_neither_hits_nor_misses(api):
    static_instance(api, enable_cache=False)
    for _ in range(2):
        ok(api.post("/instances/st/dequantize", {"data": [[1, 2, 3]]}))
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (0, 0)


@SLASHES
def test_clear_cache_bumps_the_epoch_and_the_cache_refills(api, slash):
    static_instance(api)
    codes = {"data": [[1, 2, 3]]}
    ok(api.post("/instances/st/dequantize", codes))
    ok(api.post("/instances/st/dequantize", codes))
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (1, 1)
    epoch = QuantizerInstance.objects.get(pk="st").cache_epoch
    assert ok(api.post(f"/instances/st/clear_cache{slash}")) == {"message": "Cache cleared successfully"}
    assert QuantizerInstance.objects.get(pk="st").cache_epoch == epoch + 1
    ok(api.post("/instances/st/dequantize", codes))  # the cache was dropped: a miss, hits stop increasing
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (2, 1)
    ok(api.post("/instances/st/dequantize", codes))  # re-cached
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (2, 2)


def test_clear_cache_through_another_worker_empties_this_workers_cache(api, workers):
    static_instance(api)
    codes = {"data": [[4, 5, 6]]}
    with workers("a"):
        ok(api.post("/instances/st/dequantize", codes))
        ok(api.post("/instances/st/dequantize", codes))
    assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (1, 1)
    with workers("b"):
        ok(api.post("/instances/st/clear_cache"))
    with workers("a"):
        ok(api.post("/instances/st/dequantize", codes))
        assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (2, 1)
        ok(api.post("/instances/st/dequantize", codes))
        assert (counters(api, "st")["cache_misses"], counters(api, "st")["cache_hits"]) == (2, 2)


def test_clear_cache_keeps_statistics_parameters_and_config(api):
    static_instance(api)
    ok(api.post("/instances/st/quantize", {"data": [[1.0, 200.0]]}))
    before = snapshot(api, "st")
    ok(api.post("/instances/st/clear_cache"))
    assert snapshot(api, "st") == before


def test_clear_cache_of_an_unknown_instance_is_404(api):
    assert_error(api.post("/instances/ghost/clear_cache"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


# ---------------------------------------------------------------------------- reset_stats
@SLASHES
def test_reset_stats_zeroes_every_counter(api, slash):
    static_instance(api)
    ok(api.post("/instances/st/quantize", {"data": [[1.0, 200.0]]}))
    ok(api.post("/instances/st/dequantize", {"data": [[1]]}))
    ok(api.post("/instances/st/dequantize", {"data": [[1]]}))
    assert ok(api.post(f"/instances/st/reset_stats{slash}")) == {"message": "Statistics reset successfully"}
    body = stats(api, "st")
    assert {k: body[k] for k in STATS_FIELDS} == ZERO
    registry.active().clear()  # it is stored, not only in this worker
    assert {k: stats(api, "st")[k] for k in STATS_FIELDS} == ZERO
    ok(api.post("/instances/st/quantize", {"data": [[1.0]]}))
    assert counters(api, "st")["quantize_calls"] == 1


def test_reset_stats_keeps_config_and_parameters(api):
    static_instance(api)
    before = snapshot(api, "st")
    ok(api.post("/instances/st/quantize", {"data": [[1.0]]}))
    ok(api.post("/instances/st/reset_stats"))
    after = snapshot(api, "st")
    assert (after["config"], after["parameters"]) == (before["config"], before["parameters"])


def test_reset_stats_of_an_unknown_instance_is_404(api):
    assert_error(api.post("/instances/ghost/reset_stats"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


@pytest.mark.parametrize("route", ["clear_cache", "reset_stats"])
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_cache_and_reset_routes_take_post_only(api, route, method):
    response = getattr(api.client, method)(f"/instances/default/{route}")
    assert_error(response, 405, code="http.method_not_allowed", detail=f'Method "{method.upper()}" not allowed.')
