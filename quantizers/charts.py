"""Server-rendered SVG charts for the admin: no JavaScript, no CDN, so they work offline and in any browser.

`bar_chart(items)` draws one bar per (label, value) (a value of None draws an empty bar of height 0, so that the
bars always match the items); `histogram_chart(counts, first_edge, bin_width, marks)` draws the bins of a
histogram on a numeric axis with vertical marks (clip range, grid extent) at data positions. Every bar is a
`<rect class="bar">` carrying a `<title>` (its tooltip), every mark a `<line class="mark ...">`: the tests count
them. Text goes through format_html, so labels are escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 480, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 8, 8, 34


def _f(value: float) -> str:
    """A coordinate (format_html escapes its arguments into strings: numbers are formatted first)."""
    return f"{value:.2f}"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _svg(title: str, body: SafeString, css_class: str) -> SafeString:
    """The chart in a figure whose caption is its title (also the SVG's accessible name)."""
    return format_html(
        '<figure class="chart"><figcaption>{}</figcaption>'
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart {}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="img" aria-label="{}"><title>{}</title>{}</svg></figure>',
        title, css_class, WIDTH, HEIGHT, WIDTH, HEIGHT, title, title, body)


def _axis(lo: float, hi: float, y_of: object) -> SafeString:
    """The value axis: a baseline at 0 and the extremes written at the left."""
    assert callable(y_of)
    return format_html(
        '<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>'
        '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
        PAD_LEFT, WIDTH - PAD_RIGHT, _f(y_of(0.0)), _f(y_of(0.0)),
        PAD_LEFT - 4, _f(y_of(hi) + 8), _number(hi), PAD_LEFT - 4, _f(y_of(lo)), _number(lo))


def bar_chart(items: Sequence[tuple[str, float | None]], *, title: str, unit: str = "",
              css_class: str = "bars") -> SafeString:
    """One bar per item, from 0 to its value (negative values below the baseline); None: an empty bar."""
    if not items:
        return format_html('<p class="chart-empty">{}: no data</p>', title)
    values = [v for _, v in items if v is not None and math.isfinite(v)]
    lo, hi = min([0.0, *values]), max([0.0, *values])
    if hi == lo:
        hi = lo + 1.0
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = (WIDTH - PAD_LEFT - PAD_RIGHT) / len(items)
    gap = min(2.0, step * 0.2)

    def y_of(v: float) -> float:
        return PAD_TOP + (hi - v) / (hi - lo) * plot_h

    bars = []
    for index, (label, value) in enumerate(items):
        v = 0.0 if value is None or not math.isfinite(value) else value
        top, bottom = sorted((y_of(v), y_of(0.0)))
        shown = "n/a" if value is None else f"{_number(value)}{unit}"
        bars.append((_f(index * step + PAD_LEFT + gap / 2), _f(top), _f(max(step - gap, 0.5)), _f(bottom - top),
                     label, shown))
    rects = format_html_join(
        "", '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
        bars)
    labels = mark_safe("")
    if len(items) <= 24:  # few bars: their labels fit below them
        labels = format_html_join("", '<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>', (
            (_f(PAD_LEFT + (i + 0.5) * step), HEIGHT - PAD_BOTTOM + 14, label[:12])
            for i, (label, _) in enumerate(items)))
    return _svg(title, format_html("{}{}{}", _axis(lo, hi, y_of), rects, labels), css_class)


def histogram_chart(counts: Sequence[int], first_edge: float, bin_width: float, *, title: str,
                    marks: Sequence[tuple[str, float, str]] = ()) -> SafeString:
    """Bins on a numeric axis spanning the bins and the marks; each mark (label, position, css class) a vertical
    line with its label in the tooltip."""
    if not counts:
        return format_html('<p class="chart-empty">{}: no data</p>', title)
    width = bin_width if bin_width > 0 else 1.0  # all values equal: one bin of nominal width at that value
    left, right = first_edge, first_edge + width * len(counts)
    finite_marks = [m for m in marks if math.isfinite(m[1])]
    left = min([left, *(m[1] for m in finite_marks)])
    right = max([right, *(m[1] for m in finite_marks)])
    span = right - left or 1.0
    left, right = left - span * 0.02, right + span * 0.02
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    top_count = max(max(counts), 1)

    def x_of(v: float) -> float:
        return PAD_LEFT + (v - left) / (right - left) * plot_w

    def y_of(c: float) -> float:
        return PAD_TOP + (1 - c / top_count) * plot_h

    rects = format_html_join(
        "", '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>[{}, {}): {}</title></rect>',
        ((_f(x_of(first_edge + i * width)), _f(y_of(c)),
          _f(max(x_of(first_edge + (i + 1) * width) - x_of(first_edge + i * width) - 0.3, 0.3)), _f(y_of(0) - y_of(c)),
          _number(first_edge + i * width), _number(first_edge + (i + 1) * width), c) for i, c in enumerate(counts)))
    lines = format_html_join(
        "", '<line class="mark {}" x1="{}" x2="{}" y1="{}" y2="{}"><title>{}: {}</title></line>',
        ((css, _f(x_of(pos)), _f(x_of(pos)), PAD_TOP, HEIGHT - PAD_BOTTOM, label, _number(pos))
         for label, pos, css in finite_marks))
    axis = format_html(
        '<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="tick" x="{}" y="{}" text-anchor="start">{}</text>'
        '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>'
        '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
        PAD_LEFT, WIDTH - PAD_RIGHT, _f(y_of(0)), _f(y_of(0)), PAD_LEFT, HEIGHT - PAD_BOTTOM + 14, _number(left),
        WIDTH - PAD_RIGHT, HEIGHT - PAD_BOTTOM + 14, _number(right), PAD_LEFT - 4, PAD_TOP + 8, top_count)
    legend = format_html_join(" ", '<tspan class="{}">{} {}</tspan>',
                              ((css, "\u2502", label) for label, _, css in finite_marks))
    caption = format_html('<text class="legend" x="{}" y="{}">{}</text>', PAD_LEFT, HEIGHT - 4, legend)
    return _svg(title, format_html("{}{}{}{}", axis, rects, lines, caption), "histogram")
