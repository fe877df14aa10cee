"""The admin's SVG charts, parsed as XML: one bar per item with heights proportional to the values, marks at their
data positions, labels escaped, and the instance page's panel with the charts its state calls for."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from quantizers.charts import HEIGHT, PAD_BOTTOM, PAD_TOP, bar_chart, histogram_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The <svg> element of a chart (charts come in a <figure> with their caption)."""
    root = ET.fromstring(svg)
    return root if root.tag == f"{SVG}svg" else root.find(f"{SVG}svg")


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def test_bar_chart_draws_one_bar_per_item_proportional_to_its_value():
    items = [("a", 1.0), ("b", 4.0), ("c", 2.5), ("exact", None)]
    root = parse(bar_chart(items, title="t", unit=" dB"))
    rects = bars(root)
    assert len(rects) == len(items)
    heights = [float(r.get("height")) for r in rects]
    plot = HEIGHT - PAD_TOP - PAD_BOTTOM
    assert heights[1] == pytest.approx(plot, abs=0.01)  # the largest value spans the plot
    assert heights[0] / heights[1] == pytest.approx(0.25, abs=1e-3)
    assert heights[2] / heights[1] == pytest.approx(0.625, abs=1e-3)
    assert heights[3] == 0.0
    assert [r.find(f"{SVG}title").text for r in rects] == ["a: 1 dB", "b: 4 dB", "c: 2.5 dB", "exact: n/a"]
    xs = [float(r.get("x")) for r in rects]
    assert xs == sorted(xs)


def test_negative_values_hang_below_the_baseline():
    rects = bars(parse(bar_chart([("up", 3.0), ("down", -1.0)], title="t")))
    up, down = rects
    assert float(down.get("y")) == pytest.approx(float(up.get("y")) + float(up.get("height")), abs=0.01)
    assert float(down.get("height")) / float(up.get("height")) == pytest.approx(1 / 3, abs=1e-3)


def test_labels_are_escaped():
    svg = bar_chart([("<script>alert(1)</script>", 1.0)], title="<b>x</b>")
    assert "<script>" not in svg
    assert "<b>" not in svg
    parse(svg)  # still well-formed


def test_no_data_is_said_not_drawn():
    assert "no data" in bar_chart([], title="layers")
    assert "no data" in histogram_chart([], 0.0, 1.0, title="h")


def test_histogram_bins_and_marks_at_their_positions():
    counts = [1, 4, 2, 0, 3]
    root = parse(histogram_chart(counts, -1.0, 0.5, title="h", marks=[("clip", -0.8, "clip"), ("grid", 2.0, "grid")]))
    rects = bars(root)
    assert len(rects) == 5
    heights = [float(r.get("height")) for r in rects]
    assert heights[1] == pytest.approx(HEIGHT - PAD_TOP - PAD_BOTTOM, abs=0.01)
    assert [h / heights[1] for h in heights] == pytest.approx([c / 4 for c in counts], abs=1e-3)
    lines = {line.get("class"): float(line.get("x1")) for line in root.iter(f"{SVG}line")
             if line.get("class", "").startswith("mark")}
    left = [float(r.get("x")) for r in rects]
    # x is linear in the value: bins start every 0.5, so -0.8 sits 0.4 of a bin past the first bin's start
    per_unit = (left[1] - left[0]) / 0.5
    assert lines["mark clip"] == pytest.approx(left[0] + 0.2 * per_unit, abs=0.02)
    assert lines["mark grid"] == pytest.approx(left[0] + 3.0 * per_unit, abs=0.02)


# ---------------------------------------------------------------------------- the instance page
@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


def post(client, path, body):
    response = client.post(path, json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def panel_svgs(html: str) -> list[ET.Element]:
    start = html.index('<aside class="instance-panel"')
    panel = html[start:html.index("</aside>", start)]
    out, at = [], 0
    while (at := panel.find("<svg", at)) >= 0:
        end = panel.index("</svg>", at) + len("</svg>")
        out.append(parse(panel[at:end]))
        at = end
    return out


def test_the_instance_page_shows_parameters_statistics_and_charts(admin_client, client, db):
    data = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)
    post(client, "/instances/pc", {"per_channel": True})
    post(client, "/instances/pc/calibrate", {"data": [data.tolist()]})
    params = client.get("/instances/pc/parameters").json()
    report = post(client, "/instances/pc/quantize", {"data": data.tolist(), "report": True})["report"]
    html = admin_client.get("/admin/quantizers/quantizerinstance/pc/change/").content.decode()
    assert '<form' in html  # the form is still there, the panel beside it
    assert "per_channel_scales" in html
    assert "cache hit rate" in html
    assert f"{report['sqnr_db']:.2f} dB" in html
    histogram, scales = panel_svgs(html)
    assert len(bars(histogram)) == 64
    marks = [line for line in histogram.iter(f"{SVG}line") if line.get("class", "").startswith("mark")]
    assert sorted(m.get("class") for m in marks) == ["mark clip", "mark clip", "mark grid", "mark grid"]
    titles = [m.find(f"{SVG}title").text for m in marks]
    lo, hi = float(data.min()), float(data.max())
    assert f"clip range min: {lo:.4g}" in titles
    assert f"clip range max: {hi:.4g}" in titles
    scale, zp = params["global_scale"], params["global_zero_point"]
    assert f"grid min: {(-128 - zp) * scale:.4g}" in titles
    assert f"grid max: {(127 - zp) * scale:.4g}" in titles
    scale_bars = bars(scales)
    assert len(scale_bars) == 6
    heights = [float(b.get("height")) for b in scale_bars]
    ratios = np.array(heights) / max(heights)
    assert ratios == pytest.approx(np.array(params["per_channel_scales"]) / max(params["per_channel_scales"]),
                                   abs=1e-3)


def test_an_uncalibrated_instance_says_it_has_no_charts(admin_client, db):
    html = admin_client.get("/admin/quantizers/quantizerinstance/default/change/").content.decode()
    assert "No calibration, per-channel scales or model job yet." in html
    assert panel_svgs(html) == []


def test_the_latest_succeeded_jobs_layers_are_charted(admin_client, client, db):
    from django.utils import timezone

    from quantizers.models import Job, JobLayer, QuantizerInstance

    post(client, "/instances/m", {})
    instance = QuantizerInstance.objects.get(pk="m")
    older = Job.objects.create(instance=instance, status=Job.Status.SUCCEEDED,
                               finished_at=timezone.now() - timezone.timedelta(hours=1))
    JobLayer.objects.create(job=older, position=0, name="old", sqnr_db=1.0, row={})
    latest = Job.objects.create(instance=instance, status=Job.Status.SUCCEEDED, finished_at=timezone.now())
    Job.objects.create(instance=instance, status=Job.Status.RUNNING)  # not finished: not charted
    layers = [("embed.weight", 38.5), ("block.0.attn.weight", 41.25), ("block.0.bias", None), ("head.weight", 19.0)]
    for position, (name, sqnr) in enumerate(layers):
        JobLayer.objects.create(job=latest, position=position, name=name, sqnr_db=sqnr, row={})
    html = admin_client.get("/admin/quantizers/quantizerinstance/m/change/").content.decode()
    (chart,) = panel_svgs(html)
    rects = bars(chart)
    assert [r.find(f"{SVG}title").text for r in rects] == [
        "embed.weight: 38.5 dB", "block.0.attn.weight: 41.25 dB", "block.0.bias: n/a", "head.weight: 19 dB"]
    heights = [float(r.get("height")) for r in rects]
    assert heights[3] / heights[1] == pytest.approx(19.0 / 41.25, abs=1e-3)
