"""The Django admin of quantizer instances: list with filters and search, add, change, actions, delete rules.

The admin goes through the same services as the API, so what it does is checked through the API.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import typing
from html import escape, unescape
from html.parser import HTMLParser

import pytest

from engine import ConfigError, QuantizationConfig, QuantizationMode, QuantizationType
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


class FormReader(HTMLParser):
    """What a browser would submit from the admin's instance form, and the options of its selects."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.data: dict[str, str] = {}
        self.inputs: dict[str, dict[str, str | None]] = {}  # name -> the tag's attributes (with "tag")
        self.options: dict[str, list[str]] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attr_list)
        if tag == "form" and attrs.get("id") == "quantizerinstance_form":
            self.inside = True
        if not self.inside:
            return
        name = attrs.get("name") or ""
        if tag == "input" and name and attrs.get("type") not in ("submit", "button"):
            self.inputs[name] = {"tag": tag, **attrs}
            if attrs.get("type") != "checkbox":
                self.data[name] = attrs.get("value") or ""
            elif "checked" in attrs:
                self.data[name] = attrs.get("value") or "on"
        elif tag == "select":
            self.select = name
            self.inputs[name] = {"tag": tag, **attrs}
            self.options[name] = []
        elif tag == "option" and self.select:
            self.options[self.select].append(attrs.get("value") or "")
            if "selected" in attrs or self.select not in self.data:
                self.data[self.select] = attrs.get("value") or ""
        elif tag == "textarea":
            self.textarea = name
            self.inputs[name] = {"tag": tag, **attrs}
            self.data[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea" and self.textarea:
            self.data[self.textarea] = self.data[self.textarea].removeprefix("\n")  # as browsers read it
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.data[self.textarea] += data


def read_form(response) -> FormReader:
    assert response.status_code == 200, response.content[:300]
    reader = FormReader()
    reader.feed(response.content.decode())
    assert reader.inputs, "no instance form on the page"
    return reader


def submitted(response, **changes: str | None) -> dict[str, str]:
    """The form's data as rendered, with `changes` applied (None: a checkbox left unchecked)."""
    data = {k: v for k, v in read_form(response).data.items() if k != "csrfmiddlewaretoken"}
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def config_of(instance_id: str) -> dict:
    return QuantizerInstance.objects.get(pk=instance_id).config


def engine_error(config: dict) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        QuantizationConfig.from_dict(config)
    return caught.value


HINTS = typing.get_type_hints(QuantizationConfig)
CONFIG_FIELDS = [f.name for f in dataclasses.fields(QuantizationConfig)]
ENUM_FIELDS = [n for n in CONFIG_FIELDS if isinstance(HINTS[n], type) and issubclass(HINTS[n], enum.Enum)]
DEFAULTS = QuantizationConfig().to_dict()


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
def column(html: str, name: str) -> list[str]:
    """The text of a changelist column, row by row (tags dropped, whitespace collapsed)."""
    cells = re.findall(rf'<t[dh] class="field-{name}"[^>]*>(.*?)</t[dh]>', html, re.DOTALL)
    texts = (unescape(re.sub(r"<[^>]+>", " ", cell)) for cell in cells)
    return [re.sub(r"[ \t\n]+", " ", text).strip() for text in texts]  # (no-break spaces stay)


def test_changelist_lists_every_instance_with_its_columns(admin_client, fleet):
    ok_json(fleet.post("/instances/half/quantize", {"data": [[1.0, 2.0, 3.0, 4.0]]}))
    response = admin_client.get(CHANGELIST)
    assert listed(response) == ["cal16", "default", "half", "u8"]
    html = response.content.decode()
    for header in ("instance id", "type · mode", "flags", "calls", "clipped", "updated"):
        assert re.search(rf">\s*{header}\s*<", html, re.IGNORECASE), header
    # compact cells: type, bits and mode in one, the flags that are on in another (rows sorted by id)
    assert column(html, "instance_id") == ["cal16", "default", "half", "u8"]
    assert column(html, "quantization") == ["INT16 16\u00a0bit CALIBRATED", "INT8 8\u00a0bit DYNAMIC",
                                            "FLOAT16 16\u00a0bit DYNAMIC", "UINT8 8\u00a0bit STATIC"]
    assert column(html, "flags") == ["calibrated", "-", "-", "calibrated"]
    assert column(html, "calls") == ["0", "0", "1", "0"]
    assert column(html, "clipped_share") == ["-", "-", "0.000\u00a0%", "-"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cell) for cell in column(html, "updated"))


def test_changelist_cells_stay_narrow(admin_client, api):
    """Long modes break after their underscores and long ids anywhere, so the list fits a 1280 px screen."""
    make(api, "x" * 64, {"quantization_mode": "DYNAMIC_PER_CHANNEL", "symmetric": True, "per_channel": True})
    html = admin_client.get(CHANGELIST).content.decode()
    assert "DYNAMIC_<wbr>PER_<wbr>CHANNEL" in html
    assert "symmetric<br>per\u00a0channel" in html
    assert re.search(r"th\.field-instance_id \{[^}]*overflow-wrap: anywhere", html)


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
    values = [*(f"type={name}" for name in QuantizationType.__members__),
              *(f"mode={name}" for name in QuantizationMode.__members__), "calibrated=yes", "calibrated=no"]
    assert len(values) == len(QuantizationType) + len(QuantizationMode) + 2
    for value in values:
        assert f"?{value}" in html, value


# ---------------------------------------------------------------------------- add
def test_the_add_page_has_one_input_per_config_field(admin_client, db):
    reader = read_form(admin_client.get(ADD))
    assert set(reader.inputs) - {"csrfmiddlewaretoken", "_save", "_addanother", "_continue"} == {
        "instance_id", *CONFIG_FIELDS}
    assert "config" not in reader.inputs  # no JSON blob of the whole configuration


def test_the_add_form_starts_from_the_engine_defaults(admin_client, db):
    response = admin_client.get(ADD)
    form = response.context["adminform"].form
    assert {name: form.get_initial_for_field(form.fields[name], name) for name in CONFIG_FIELDS} == DEFAULTS
    # what the page shows, saved unchanged, is the default configuration
    response = admin_client.post(ADD, submitted(response, instance_id="plain"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert config_of("plain") == DEFAULTS


@pytest.mark.parametrize("name", CONFIG_FIELDS)
def test_each_config_field_has_a_typed_input(admin_client, db, name):
    reader = read_form(admin_client.get(ADD))
    attrs = reader.inputs[name]
    hint, optional = HINTS[name], type(None) in typing.get_args(HINTS[name])
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if name in ENUM_FIELDS:
        assert attrs["tag"] == "select"
        assert reader.options[name] == list(kind.__members__)
    elif kind is bool:
        assert attrs["type"] == "checkbox"
        assert ("checked" in attrs) is DEFAULTS[name]
    elif kind in (int, float):
        assert attrs["type"] == "number"
        assert ("required" in attrs) is not optional  # an optional number may stay blank
    elif typing.get_origin(kind) is tuple:
        assert (attrs["tag"], attrs["type"]) == ("input", "text")
    else:
        assert attrs["tag"] == "textarea"  # the per-layer overrides, as JSON


def test_help_texts_are_the_engines_field_descriptions(admin_client, db):
    html = admin_client.get(ADD).content.decode()
    texts = {n: t for n, t in QuantizationConfig.field_help().items() if t}
    assert texts  # else this test checks nothing
    for name, text in texts.items():
        assert re.search(rf'id="id_{name}_helptext">\s*<div>{re.escape(text)}', html), name


def test_add_of_an_id_created_meanwhile_says_so_and_changes_nothing(admin_client, api, monkeypatch):
    """The race between the form's uniqueness check and the INSERT: the API creates the id after the check (the
    check is passed here, as it is when the other request comes in between). The add page comes back with the
    reason (no server error) and the instance created first keeps its config."""
    from quantizers.forms import InstanceForm

    form_page = admin_client.get(ADD)
    ok_json(api.post("/instances/raced", {"quantization_type": "INT16"}))
    monkeypatch.setattr(InstanceForm, "validate_unique", lambda self: None)
    response = admin_client.post(ADD, submitted(form_page, instance_id="raced", quantization_type="UINT8"),
                                 follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(ADD, 302)]
    assert any("raced already exists (created while this form was being sent)" in m for m in messages_of(response))
    assert config_of("raced")["quantization_type"] == "INT16"


def test_add_creates_an_instance_with_the_posted_config(admin_client, api):
    changes = {"quantization_type": "UINT8", "quantization_mode": "STATIC", "num_bits": "6", "symmetric": "on",
               "enable_cache": None, "cache_size": "5", "min_percentile": "1.5", "outlier_threshold": "2.5",
               "skip_layers": "conv1, fc", "mixed_precision_layers": '["a,b", "c"]',
               "custom_quantization_config": '{"fc": {"num_bits": 4, "per_channel": true}}',
               "calibration_method": "PERCENTILE"}
    response = admin_client.post(ADD, submitted(admin_client.get(ADD), instance_id="from_admin", **changes))
    assert response.status_code == 302, response.context["adminform"].form.errors
    expected = {**DEFAULTS, "quantization_type": "UINT8", "quantization_mode": "STATIC", "num_bits": 6,
                "symmetric": True, "enable_cache": False, "cache_size": 5, "min_percentile": 1.5,
                "outlier_threshold": 2.5, "skip_layers": ["conv1", "fc"], "mixed_precision_layers": ["a,b", "c"],
                "custom_quantization_config": {"fc": {"num_bits": 4, "per_channel": True}},
                "calibration_method": "PERCENTILE"}
    assert config_of("from_admin") == expected
    assert ok_json(api.get("/instances/from_admin/config")) == expected


def test_an_added_instance_is_complete_and_quantizes(admin_client, api):
    response = admin_client.post(ADD, submitted(admin_client.get(ADD), instance_id="from_admin", symmetric="on"))
    assert response.status_code == 302
    # created through the services: parameters and statistics exist, and it quantizes (the spec's example)
    assert ok_json(api.get("/instances/from_admin/stats"))["quantize_calls"] == 0
    body = ok_json(api.post("/instances/from_admin/quantize", {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]}))
    assert body["data"] == [[17, 48, 79], [110, 127, 30]]


# (what the form posts, the same values as the engine gets them)
ENGINE_REFUSALS = [
    ({"num_bits": "99"}, {"num_bits": 99}),
    ({"quantization_type": "UINT8", "num_bits": "12"}, {"quantization_type": "UINT8", "num_bits": 12}),
    ({"cache_size": "-1"}, {"cache_size": -1}),
    ({"min_percentile": "60", "max_percentile": "50"}, {"min_percentile": 60.0, "max_percentile": 50.0}),
    ({"outlier_threshold": "-1"}, {"outlier_threshold": -1.0}),
    ({"requantization_threshold": "0"}, {"requantization_threshold": 0.0}),
    ({"skip_layers": "conv1,,fc"}, {"skip_layers": ["conv1", "", "fc"]}),
    ({"custom_quantization_config": '{"fc": {"num_bits": 99}}'},
     {"custom_quantization_config": {"fc": {"num_bits": 99}}}),
    ({"custom_quantization_config": '{"fc": {"bits": 4}}'}, {"custom_quantization_config": {"fc": {"bits": 4}}}),
    ({"custom_quantization_config": "[1]"}, {"custom_quantization_config": [1]}),
]


@pytest.mark.parametrize(("posted", "engine_values"), ENGINE_REFUSALS)
def test_add_shows_the_engine_error_on_its_field_and_stores_nothing(admin_client, api, posted, engine_values):
    expected = engine_error({**DEFAULTS, **engine_values})
    assert expected.field in CONFIG_FIELDS
    before = QuantizerInstance.objects.count()
    response = admin_client.post(ADD, submitted(admin_client.get(ADD), instance_id="refused", **posted))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {expected.field: [expected.message]}
    assert escape(expected.message) in response.content.decode()
    assert QuantizerInstance.objects.count() == before


@pytest.mark.parametrize(("posted", "error_field"), [
    ({"num_bits": "eight"}, "num_bits"),
    ({"num_bits": ""}, "num_bits"),
    ({"min_percentile": "inf"}, "min_percentile"),
    ({"quantization_type": "INT3"}, "quantization_type"),
    ({"calibration_method": "minmax"}, "calibration_method"),
    ({"custom_quantization_config": "{fc: 1"}, "custom_quantization_config"),
    ({"skip_layers": "[unclosed"}, "skip_layers"),
    ({"instance_id": "a b"}, "instance_id"),
    ({"instance_id": "a" * 65}, "instance_id"),
    ({"instance_id": ""}, "instance_id"),
    ({"instance_id": "default"}, "instance_id"),  # exists (and cannot be re-created)
])
def test_add_with_unreadable_input_is_a_form_error_not_a_500(admin_client, api, posted, error_field):
    before = QuantizerInstance.objects.count()
    response = admin_client.post(ADD, submitted(admin_client.get(ADD), **{"instance_id": "bad", **posted}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [error_field], errors
    assert QuantizerInstance.objects.count() == before
    assert ok_json(api.get("/instances/default/config"))["quantization_type"] == "INT8"


def test_add_of_the_default_id_leaves_the_default_untouched(admin_client, api):
    ok_json(api.post("/instances/default/quantize", {"data": [[0.0, 1.0]]}))
    before = (ok_json(api.get("/instances/default/config")), ok_json(api.get("/instances/default/stats")))
    data = submitted(admin_client.get(ADD), instance_id="default", quantization_type="UINT8")
    assert admin_client.post(ADD, data).status_code == 200
    assert (ok_json(api.get("/instances/default/config")), ok_json(api.get("/instances/default/stats"))) == before


# ---------------------------------------------------------------------------- change
def test_the_change_page_shows_parameters_and_stats_read_only(admin_client, fleet):
    ok_json(fleet.post("/instances/u8/quantize", {"data": [[1.0, 200.0]]}))
    response = admin_client.get(change_url("u8"))
    assert response.status_code == 200
    html = response.content.decode()
    # the id is read-only once created; the config settings are the only inputs
    assert set(read_form(response).inputs) - {"csrfmiddlewaretoken", "_save", "_addanother", "_continue"} == set(
        CONFIG_FIELDS)
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


UNUSUAL = {"quantization_type": "INT16", "quantization_mode": "SYMMETRIC", "num_bits": 12, "symmetric": True,
           "enable_cache": False, "cache_size": 7, "min_percentile": 0.5, "outlier_threshold": 3.25,
           "skip_layers": ["conv1", "odd,name"], "mixed_precision_layers": ["fc"],
           "custom_quantization_config": {"fc": {"quantization_type": "INT8", "num_bits": 4}},
           "calibration_method": "ENTROPY", "quantize_bias": False}


def test_the_change_form_shows_the_current_config(admin_client, api):
    make(api, "unusual", UNUSUAL)
    stored = config_of("unusual")
    assert stored != DEFAULTS
    response = admin_client.get(change_url("unusual"))
    form = response.context["adminform"].form
    assert {name: form.get_initial_for_field(form.fields[name], name) for name in CONFIG_FIELDS} == stored
    # saved as the page shows it, nothing changes (every kind of input round-trips, odd names included)
    response = admin_client.post(change_url("unusual"), submitted(response))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert config_of("unusual") == stored


def test_change_edits_the_config_through_the_services(admin_client, fleet):
    version = QuantizerInstance.objects.get(pk="u8").version
    before = config_of("u8")
    response = admin_client.post(change_url("u8"), submitted(admin_client.get(change_url("u8")), num_bits="4",
                                                             skip_layers="head"))
    assert response.status_code == 302
    assert config_of("u8") == {**before, "num_bits": 4, "skip_layers": ["head"]}  # the mode stays STATIC
    assert ok_json(fleet.get("/instances/u8/config")) == config_of("u8")
    assert QuantizerInstance.objects.get(pk="u8").version > version
    # parameters computed for 8 bits no longer apply
    assert ok_json(fleet.get("/instances/u8/parameters"))["global_scale"] is None


def test_change_keeps_the_parameters_when_nothing_they_depend_on_changes(admin_client, fleet):
    response = admin_client.post(change_url("u8"), submitted(admin_client.get(change_url("u8")), cache_size="3"))
    assert response.status_code == 302
    assert config_of("u8")["cache_size"] == 3
    assert ok_json(fleet.get("/instances/u8/parameters"))["global_scale"] == 0.5


def test_change_with_a_bad_config_shows_the_engine_error(admin_client, fleet):
    before = config_of("u8")
    expected = engine_error({**before, "num_bits": 99})
    response = admin_client.post(change_url("u8"), submitted(admin_client.get(change_url("u8")), num_bits="99"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"num_bits": [expected.message]}
    assert ok_json(fleet.get("/instances/u8/config")) == before


def test_change_cannot_rename_an_instance(admin_client, fleet):
    data = submitted(admin_client.get(change_url("u8")), instance_id="renamed")
    assert admin_client.post(change_url("u8"), data).status_code == 302
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
