"""A picture of the Cloud Monitoring dashboard, rendered from its JSON (no browser, no network).

The JSON is what Terraform plans for `google_monitoring_dashboard.main` of the example (planned
with the stand-in providers: `dashboard_json` is known at plan time). Every tile is drawn where
the mosaic layout puts it, with its title, its chart kind (stacked bars or lines), its threshold
line, its y-axis label and the metric it queries; the series themselves are illustrative
(deterministic, seeded by the title), since no real data exists offline, and the picture says so.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UNIT = 16  # pixels per mosaic column / row unit (48 columns)
COLORS = ["#1a73e8", "#e8710a", "#12b5cb", "#9334e6", "#d01884", "#188038", "#f9ab00", "#5f6368"]
SAMPLE_GROUPS = {
    "metric.label.outcome": [
        "DISPATCHED",
        "SKIPPED_FIX_NOT_DEPLOYED",
        "SKIPPED_DUPLICATE",
        "NOT_FOUND",
    ],
    "metric.label.response_code": ["OK", "INTERNAL", "UNAVAILABLE"],
    "resource.label.service_name": ["redrive-signal", "redrive-job"],
    "metric.label.response_code_class": ["2xx", "5xx"],
}
POINTS = 24


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def dumps(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def plan_example_dashboard() -> dict[str, Any]:
    """The dashboard JSON of the example's plan (terraform + the stand-in providers)."""
    from tfstandin.check import check

    result = check(
        ROOT / "terraform" / "examples" / "complete",
        variables={"project_id": "acme-prod", "notification_email": "oncall@example.com"},
    )
    if not result.ok:
        raise RuntimeError(result.output)
    planned = result.planned_resources()["module.redrive.google_monitoring_dashboard.main[0]"]
    data: dict[str, Any] = json.loads(planned["dashboard_json"])
    return data


def _series_names(query: dict[str, Any]) -> list[str]:
    aggregation = query.get("aggregation", {})
    groups = aggregation.get("groupByFields") or []
    one_of = re.search(r"outcome=one_of\(([^)]*)\)", query["filter"])
    single = re.search(r'outcome="([A-Z_]+)"', query["filter"])
    if "metric.label.outcome" in groups and one_of:
        return re.findall(r'"([A-Z_]+)"', one_of.group(1))
    if "metric.label.outcome" in groups and single:
        return [single.group(1)]
    if not groups:
        return ["all"]
    names = [""]
    for field in groups:
        values = SAMPLE_GROUPS.get(field, ["a", "b"])
        names = [f"{n} {v}".strip() for n in names for v in values]
    return names[:6]


def _metric(query: dict[str, Any]) -> str:
    m = re.search(r'metric\.type="([^"]+)"', query["filter"])
    return m.group(1) if m else ""


def _data(title: str, names: list[str], stacked: bool) -> list[list[float]]:
    rng = random.Random(hashlib.sha256(title.encode()).hexdigest())
    series = []
    for i, _ in enumerate(names):
        level = rng.uniform(2, 10) / (i + 1)
        values = []
        for t in range(POINTS):
            burst = 3.0 if 8 <= t <= 12 else 1.0
            values.append(
                max(
                    0.0,
                    level * burst * rng.uniform(0.6, 1.4)
                    if stacked
                    else level + 3 * burst + rng.uniform(-1, 1),
                )
            )
        series.append(values)
    return series


def _fit(text: str, width: int, char_px: float = 6.8) -> str:
    """`text` cut to what fits in a tile `width` pixels wide."""
    room = int((width - 40) / char_px)
    return text if len(text) <= room else text[: room - 1] + "…"


def _num(value: float | int | str) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def el(tag: str, text: str | None = None, **attrs: float | int | str) -> str:
    """One SVG element; attribute names use _ for - (stroke_width -> stroke-width)."""
    rendered = " ".join(f'{k.rstrip("_").replace("_", "-")}="{_num(v)}"' for k, v in attrs.items())
    if text is None:
        return f"<{tag} {rendered}/>"
    return f"<{tag} {rendered}>{escape(text)}</{tag}>"


GREY, DARK, RED = "#5f6368", "#202124", "#d93025"


def _tile(tile: dict[str, Any]) -> list[str]:
    x, y = tile.get("xPos", 0) * UNIT, tile.get("yPos", 0) * UNIT
    w, h = tile["width"] * UNIT, tile["height"] * UNIT
    widget = tile["widget"]
    chart = widget["xyChart"]
    data_set = chart["dataSets"][0]
    query = data_set["timeSeriesQuery"]["timeSeriesFilter"]
    stacked = data_set.get("plotType") == "STACKED_BAR"
    names = _series_names(query)
    series = _data(widget["title"], names, stacked)
    thresholds = [float(t["value"]) for t in chart.get("thresholds", [])]
    out = [
        f'<g transform="translate({x + 8},{y + 8})">',
        el("rect", width=w - 16, height=h - 16, rx=6, fill="#fff", stroke="#dadce0"),
        el("text", _fit(widget["title"], w), x=12, y=22, font_size=12, font_weight=600, fill=DARK),
        el("text", _fit(_metric(query), w, 5.6), x=12, y=38, font_size=10, fill=GREY),
    ]
    px, py, pw, ph = 44, 50, w - 16 - 60, h - 16 - 100
    totals = [
        sum(s[t] for s in series) if stacked else max(s[t] for s in series) for t in range(POINTS)
    ]
    top = max([*totals, *thresholds, 1.0]) * 1.15
    out.append(el("line", x1=px, y1=py + ph, x2=px + pw, y2=py + ph, stroke="#9aa0a6"))
    out.append(el("line", x1=px, y1=py, x2=px, y2=py + ph, stroke="#9aa0a6"))
    for frac in (0.5, 1.0):
        gy = py + ph - frac * ph
        out.append(el("line", x1=px, y1=gy, x2=px + pw, y2=gy, stroke="#f1f3f4"))
        out.append(
            el(
                "text",
                f"{top * frac:.0f}",
                x=px - 4,
                y=gy + 3,
                font_size=9,
                text_anchor="end",
                fill=GREY,
            )
        )
    y_label = chart.get("yAxis", {}).get("label", "")
    mid = py + ph / 2
    out.append(
        el(
            "text",
            y_label,
            x=12,
            y=mid,
            font_size=9,
            fill=GREY,
            transform=f"rotate(-90 12 {mid:.1f})",
            text_anchor="middle",
        )
    )
    step = pw / POINTS
    if stacked:
        base = [0.0] * POINTS
        for i, values in enumerate(series):
            for t, v in enumerate(values):
                top_y = py + ph - (base[t] + v) / top * ph
                out.append(
                    el(
                        "rect",
                        x=px + t * step + 1,
                        y=top_y,
                        width=step - 2,
                        height=v / top * ph,
                        fill=COLORS[i % len(COLORS)],
                    )
                )
                base[t] += v
    else:
        for i, values in enumerate(series):
            pts = " ".join(
                f"{px + (t + 0.5) * step:.1f},{py + ph - v / top * ph:.1f}"
                for t, v in enumerate(values)
            )
            out.append(
                el(
                    "polyline",
                    points=pts,
                    fill="none",
                    stroke=COLORS[i % len(COLORS)],
                    stroke_width=2,
                )
            )
    for value in thresholds:
        ty = py + ph - value / top * ph
        out.append(el("line", x1=px, y1=ty, x2=px + pw, y2=ty, stroke=RED, stroke_dasharray="5,3"))
        out.append(
            el(
                "text",
                f"threshold {value:g}",
                x=px + pw,
                y=ty - 4,
                font_size=9,
                text_anchor="end",
                fill=RED,
            )
        )
    lx, ly = float(px), py + ph + 14
    for i, name in enumerate(names):
        room = 18 + 6.2 * len(name)
        if lx + room > w - 16 and lx > px:
            lx, ly = float(px), ly + 14
        out.append(el("rect", x=lx, y=ly, width=9, height=9, fill=COLORS[i % len(COLORS)]))
        out.append(el("text", name, x=lx + 12, y=ly + 8, font_size=9, fill="#3c4043"))
        lx += room
    out.append("</g>")
    return out


def render(dashboard: dict[str, Any]) -> str:
    tiles = dashboard["mosaicLayout"]["tiles"]
    width = dashboard["mosaicLayout"].get("columns", 48) * UNIT + 16
    height = max(t.get("yPos", 0) + t["height"] for t in tiles) * UNIT + 70
    caption = (
        "Rendered from terraform/docs/dashboard.json: layout, titles, queries, chart kinds and "
        "thresholds are the module's; the series are illustrative."
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        el("rect", width=width, height=height, fill="#f8f9fa"),
        el("text", dashboard["displayName"], x=16, y=26, font_size=18, font_weight=600, fill=DARK),
        el("text", caption, x=16, y=44, font_size=10, fill=GREY),
        '<g transform="translate(0,54)">',
    ]
    for tile in tiles:
        parts += _tile(tile)
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)
