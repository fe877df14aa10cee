"""The Django admin of quantizer instances: list with filters and search, add, change, actions, delete rules.

The admin goes through the same services as the API, so what it does is checked through the API.
"""

from __future__ import annotations

import json
import re

import pytest

from quantizers.models import QuantizerInstance

CHANGELIST = "/admin/quantizers/quantizerinstance/"
ADD = CHANGELIST + "add/"


def change_url(instance_id: str) -> str:
    return f"{CHANGELIST}{instance_id}/change/"


def delete_url(instance_id: str) -> str:
    return f"{CHANGELIST}{instance_id}/delete/"


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    """The manifest storage of the production settings needs collectstatic; tests use plain static files."""
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


def ok_json(response):
    assert response.status_code == 200, response.content[:300]
    return response.json()


def make(api, instance_id, config=None):
    assert ok_json(api.post(f"/instances/{instance_id}", config or {}))["message"].endswith("created successfully")


def listed(response) -> list[str]:
    assert response.status_code == 200
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def action(client, name, ids, **extra):
    return client.post(CHANGELIST, {"action": name, "_selected_action": list(ids), **extra}, follow=True)


@pytest.fixture
def fleet(api):
    """default (INT8 DYNAMIC), u8 (UINT8 STATIC, imported), cal16 (INT16 calibrated), half (FLOAT16)."""
    make(api, "u8", {"quantization_type": "UINT8", "quantization_mode": "STATIC"})
    ok_json(api.post("/instances/u8/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 3}}))
    make(api, "cal16", {"quantization_type": "INT16"})
    ok_json(api.post("/instances/cal16/calibrate", {"data": [[[1.0, -2.0]]]}))
    make(api, "half", {"quantization_type": "FLOAT16"})
    return api


# ---------------------------------------------------------------------------- access
def test_the_admin_needs_a_login(client, db):
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_without_permissions_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 403


# ---------------------------------------------------------------------------- changelist, filters, search
def test_changelist_lists_every_instance_with_its_columns(admin_client, fleet):
    response = admin_client.get(CHANGELIST)
    assert listed(response) == ["cal16", "default", "half", "u8"]
    html = response.content.decode()
    for column in ("type", "mode", "bits", "symmetric", "per channel", "calibrated", "calls", "clipped"):
        assert re.search(rf">\s*{column}\s*<", html, re.IGNORECASE), column


@pytest.mark.parametrize(("query", "expected"), [
    ("type=INT8", ["default"]),
    ("type=UINT8", ["u8"]),
    ("type=INT16", ["cal16"]),
    ("type=FLOAT16", ["half"]),
    ("type=MIXED", []),
    ("mode=DYNAMIC", ["default", "half"]),
    ("mode=STATIC", ["u8"]),  # importing parameters keeps a STATIC instance STATIC
    ("mode=CALIBRATED", ["cal16"]),  # calibrating switches to CALIBRATED
    ("calibrated=yes", ["cal16", "u8"]),
    ("calibrated=no", ["default", "half"]),
    ("type=INT16&calibrated=yes", ["cal16"]),
    ("type=INT8&calibrated=yes", []),
    ("q=u8", ["u8"]),
    ("q=AL", ["cal16", "half"]),  # case-insensitive substring of the id
    ("q=nothing-like-this", []),
    ("q=a&type=FLOAT16", ["half"]),
])
def test_changelist_filters_and_search(admin_client, fleet, query, expected):
    assert listed(admin_client.get(f"{CHANGELIST}?{query}")) == expected


def test_filter_sidebar_offers_every_type_mode_and_calibration_choice(admin_client, fleet):
    html = admin_client.get(CHANGELIST).content.decode()
    for value in ("type=INT8", "type=UINT8", "type=INT16", "type=FLOAT16", "type=NONE", "type=MIXED",
                  "mode=DYNAMIC_PER_BATCH", "mode=STATIC", "mode=CALIBRATED", "mode=SYMMETRIC", "calibrated=yes",
                  "calibrated=no"):
        assert f"?{value}" in html, value


# ---------------------------------------------------------------------------- add
def test_the_add_page_renders(admin_client):
    response = admin_client.get(ADD)
    assert response.status_code == 200
    assert 'name="instance_id"' in response.content.decode()
    assert 'name="config"' in response.content.decode()


def test_add_creates_an_instance_through_the_services(admin_client, api):
    response = admin_client.post(ADD, {"instance_id": "from_admin",
                                       "config": json.dumps({"quantization_type": "int8", "symmetric": True})})
    assert response.status_code == 302
    config = ok_json(api.get("/instances/from_admin/config"))
    assert (config["quantization_type"], config["symmetric"], config["num_bits"]) == ("INT8", True, 8)
    # a complete instance: parameters and statistics exist, and it quantizes (the spec's example)
    assert ok_json(api.get("/instances/from_admin/stats"))["quantize_calls"] == 0
    body = ok_json(api.post("/instances/from_admin/quantize", {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]}))
    assert body["data"] == [[17, 48, 79], [110, 127, 30]]


def test_add_with_an_empty_object_takes_the_defaults(admin_client, api):
    assert admin_client.post(ADD, {"instance_id": "plain", "config": "{}"}).status_code == 302
    assert ok_json(api.get("/instances/plain/config")) == ok_json(api.get("/instances/default/config"))


@pytest.mark.parametrize(("fields", "error_field"), [
    ({"instance_id": "bad_bits", "config": '{"num_bits": 99}'}, "config"),
    ({"instance_id": "bad_type", "config": '{"quantization_type": "INT4"}'}, "config"),
    ({"instance_id": "bad_key", "config": '{"surprise": 1}'}, "config"),
    ({"instance_id": "bad_json", "config": "{num_bits: 8"}, "config"),
    ({"instance_id": "not_object", "config": "[1, 2]"}, "config"),
    ({"instance_id": "blank", "config": ""}, "config"),
    ({"instance_id": "a b", "config": "{}"}, "instance_id"),
    ({"instance_id": "a" * 65, "config": "{}"}, "instance_id"),
    ({"instance_id": "", "config": "{}"}, "instance_id"),
    ({"instance_id": "default", "config": "{}"}, "instance_id"),  # exists (and cannot be re-created)
])
def test_add_with_bad_input_is_a_form_error_not_a_500(admin_client, api, fields, error_field):
    before = QuantizerInstance.objects.count()
    response = admin_client.post(ADD, fields)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert error_field in errors, errors
    assert QuantizerInstance.objects.count() == before
    assert ok_json(api.get("/instances/default/config"))["quantization_type"] == "INT8"


def test_add_of_the_default_id_leaves_the_default_untouched(admin_client, api):
    ok_json(api.post("/instances/default/quantize", {"data": [[0.0, 1.0]]}))
    before = (ok_json(api.get("/instances/default/config")), ok_json(api.get("/instances/default/stats")))
    response = admin_client.post(ADD, {"instance_id": "default", "config": '{"quantization_type": "UINT8"}'})
    assert response.status_code == 200
    assert (ok_json(api.get("/instances/default/config")), ok_json(api.get("/instances/default/stats"))) == before


# ---------------------------------------------------------------------------- change
def test_the_change_page_shows_parameters_and_stats_read_only(admin_client, fleet):
    ok_json(fleet.post("/instances/u8/quantize", {"data": [[1.0, 200.0]]}))
    response = admin_client.get(change_url("u8"))
    assert response.status_code == 200
    html = response.content.decode()
    # the id is read-only once created; the config is the only input
    assert 'name="instance_id"' not in html
    assert 'name="config"' in html
    assert 'name="parameters_view"' not in html
    assert 'name="stats_view"' not in html
    params = re.search(r'field-parameters_view.*?<div class="readonly"><pre>(.*?)</pre>', html, re.DOTALL)
    stats = re.search(r'field-stats_view.*?<div class="readonly"><pre>(.*?)</pre>', html, re.DOTALL)
    assert params
    assert stats
    shown_params = json.loads(params.group(1).replace("&quot;", '"'))
    assert (shown_params["global_scale"], shown_params["global_zero_point"], shown_params["qmin"],
            shown_params["qmax"]) == (0.5, 3, 0, 255)
    shown_stats = json.loads(stats.group(1).replace("&quot;", '"'))
    # 1.0 / 0.5 + 3 = 5; 200 / 0.5 + 3 = 403 -> 255, clipped
    assert (shown_stats["quantize_calls"], shown_stats["total_values"], shown_stats["clipped_values"]) == (1, 2, 1)
    for field in ("version", "cache_epoch", "created_at", "updated_at"):
        assert f"field-{field}" in html, field


def test_change_replaces_the_config_through_the_services(admin_client, fleet):
    version = QuantizerInstance.objects.get(pk="u8").version
    response = admin_client.post(change_url("u8"), {"config": '{"quantization_type": "uint8", "num_bits": 4}'})
    assert response.status_code == 302
    config = ok_json(fleet.get("/instances/u8/config"))
    # the whole config is replaced: the mode goes back to the default
    assert (config["quantization_type"], config["num_bits"], config["quantization_mode"]) == ("UINT8", 4, "DYNAMIC")
    assert QuantizerInstance.objects.get(pk="u8").version > version
    # parameters computed for 8 bits no longer apply
    assert ok_json(fleet.get("/instances/u8/parameters"))["global_scale"] is None


def test_change_with_a_bad_config_is_a_form_error(admin_client, fleet):
    before = ok_json(fleet.get("/instances/u8/config"))
    response = admin_client.post(change_url("u8"), {"config": '{"num_bits": 99}'})
    assert response.status_code == 200
    assert "config" in response.context["adminform"].form.errors
    assert ok_json(fleet.get("/instances/u8/config")) == before


def test_change_cannot_rename_an_instance(admin_client, fleet):
    admin_client.post(change_url("u8"), {"instance_id": "renamed", "config": '{"quantization_type": "UINT8"}'})
    assert QuantizerInstance.objects.filter(pk="renamed").count() == 0
    assert QuantizerInstance.objects.filter(pk="u8").count() == 1


# ---------------------------------------------------------------------------- actions
def test_reset_statistics_action(admin_client, fleet):
    for instance_id in ("default", "u8"):
        ok_json(fleet.post(f"/instances/{instance_id}/quantize", {"data": [[1.0, 2.0]]}))
    response = action(admin_client, "reset_statistics", ["default", "u8"])
    assert response.status_code == 200
    assert "Statistics reset for 2 instance(s)." in messages_of(response)
    for instance_id in ("default", "u8"):
        stats = ok_json(fleet.get(f"/instances/{instance_id}/stats"))
        assert (stats["quantize_calls"], stats["total_values"], stats["last_scale"]) == (0, 0, 0.0)


def test_clear_cache_action_bumps_the_epoch(admin_client, fleet):
    epochs = {i: QuantizerInstance.objects.get(pk=i).cache_epoch for i in ("default", "u8", "half")}
    ok_json(fleet.post("/instances/u8/dequantize", {"data": [[4, 5]]}))
    ok_json(fleet.post("/instances/u8/dequantize", {"data": [[4, 5]]}))
    response = action(admin_client, "clear_cache", ["default", "u8"])
    assert "Cache cleared for 2 instance(s)." in messages_of(response)
    assert QuantizerInstance.objects.get(pk="default").cache_epoch == epochs["default"] + 1
    assert QuantizerInstance.objects.get(pk="u8").cache_epoch == epochs["u8"] + 1
    assert QuantizerInstance.objects.get(pk="half").cache_epoch == epochs["half"]
    # the cache this worker held for u8 is gone: the same codes are a miss again
    ok_json(fleet.post("/instances/u8/dequantize", {"data": [[4, 5]]}))
    stats = ok_json(fleet.get("/instances/u8/stats"))
    assert (stats["cache_misses"], stats["cache_hits"]) == (2, 1)


def test_export_parameters_action_downloads_json(admin_client, fleet):
    response = admin_client.post(CHANGELIST, {"action": "export_parameters", "_selected_action": ["u8", "cal16"]})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="quantizer-parameters.json"'
    payload = json.loads(response.content)
    assert set(payload) == {"u8", "cal16"}
    assert payload["u8"] == ok_json(fleet.get("/instances/u8/parameters"))
    assert payload["cal16"] == ok_json(fleet.get("/instances/cal16/parameters"))
    # what the admin exports, the API imports
    make(fleet, "restored", {"quantization_type": "UINT8"})
    ok_json(fleet.post("/instances/restored/parameters", {"parameters": payload["u8"]}))
    assert ok_json(fleet.get("/instances/restored/parameters")) == payload["u8"]


def test_duplicate_action_copies_config_and_parameters_with_fresh_stats(admin_client, fleet):
    ok_json(fleet.post("/instances/u8/quantize", {"data": [[1.0, 2.0]]}))
    response = action(admin_client, "duplicate", ["u8"])
    assert "Created u8_copy." in messages_of(response)
    assert ok_json(fleet.get("/instances/u8_copy/config")) == ok_json(fleet.get("/instances/u8/config"))
    assert ok_json(fleet.get("/instances/u8_copy/parameters")) == ok_json(fleet.get("/instances/u8/parameters"))
    assert ok_json(fleet.get("/instances/u8_copy/stats"))["quantize_calls"] == 0
    # the copy quantizes with the copied parameters: rint(1 / 0.5) + 3 = 5
    assert ok_json(fleet.post("/instances/u8_copy/quantize", {"data": [[1.0]]}))["data"] == [[5]]


def test_duplicate_twice_reports_the_conflict(admin_client, fleet):
    action(admin_client, "duplicate", ["default"])
    response = action(admin_client, "duplicate", ["default"])
    assert response.status_code == 200
    assert "default: Quantizer instance default_copy already exists" in messages_of(response)


def test_duplicate_of_a_64_character_id_stays_valid(admin_client, api):
    long_id = "x" * 64
    make(api, long_id)
    response = action(admin_client, "duplicate", [long_id])
    assert response.status_code == 200
    assert len(messages_of(response)) == 1  # created, or a clear conflict; never a 500


# ---------------------------------------------------------------------------- delete
def test_the_default_instance_cannot_be_deleted(admin_client, api):
    response = admin_client.get(delete_url("default"))
    assert response.status_code == 403
    response = admin_client.post(delete_url("default"), {"post": "yes"})
    assert response.status_code == 403
    assert QuantizerInstance.objects.filter(pk="default").exists()
    html = admin_client.get(change_url("default")).content.decode()
    assert delete_url("default") not in html  # no delete link on its page


def test_another_instance_can_be_deleted(admin_client, api):
    make(api, "doomed")
    ok_json(api.post("/instances/doomed/quantize", {"data": [[1.0]]}))
    assert admin_client.get(delete_url("doomed")).status_code == 200
    response = admin_client.post(delete_url("doomed"), {"post": "yes"})
    assert response.status_code == 302
    assert not QuantizerInstance.objects.filter(pk="doomed").exists()
    assert api.get("/instances/doomed/config").status_code == 404


def test_bulk_delete_including_default_is_refused(admin_client, api):
    make(api, "one")
    response = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ["default", "one"],
                                              "post": "yes"})
    assert response.status_code == 403
    assert set(QuantizerInstance.objects.values_list("pk", flat=True)) == {"default", "one"}


def test_bulk_delete_of_other_instances(admin_client, api):
    make(api, "one")
    make(api, "two")
    response = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ["one", "two"],
                                              "post": "yes"}, follow=True)
    assert response.status_code == 200
    assert set(QuantizerInstance.objects.values_list("pk", flat=True)) == {"default"}
    assert ok_json(api.get("/instances")) == ["default"]
