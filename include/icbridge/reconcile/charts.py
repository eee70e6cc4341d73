"""The run page's two charts as inline SVG, rendered on the server.

Why SVG from Python and not a JS chart library: the Airflow hosts have no internet (no CDN),
the page must work under a strict Content-Security-Policy without scripts, and the charts
are simple (a histogram and a bar chart). An SVG string needs no dependency, prints, scales,
and carries its numbers in ``<title>`` tooltips. See docs/balance-all.md.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 680, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 48
BAR = "#2f7ed8"
BAR_CURRENT = "#e4572e"
LINE = "#e4572e"


def _svg(label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" class="icb-chart" font-family="sans-serif" font-size="11">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _axes(y_max_label: str, y_label: str) -> list[str]:
    bottom = HEIGHT - BOTTOM
    return [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#555"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{escape(y_max_label)}</text>',
        f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end">0</text>',
        f'<text x="12" y="{(TOP + bottom) / 2:.0f}" transform="rotate(-90 12 {(TOP + bottom) / 2:.0f})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]


def _money(value: float) -> str:
    return f"{value:,.2f}"


def histogram_svg(differences: Iterable[Decimal | float], bins: int = 24) -> str:
    """Distribution of a run's mismatches' own differences (IC − CIS: the balance's, the total
    due's for a total-due mismatch; ReconcileStore.differences)."""
    values = array("d", (float(v) for v in differences))
    if not values:
        return _svg("Difference distribution: no differences", [
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No balance differences in this run</text>'
        ])
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - lo) / width), bins - 1)] += 1
    peak = max(counts)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / bins
    body = _axes(str(peak), "accounts")
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * count / peak
        x = LEFT + i * bar_w
        start, end = lo + i * width, lo + (i + 1) * width
        body.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{BAR}"><title>{_money(start)} to {_money(end)}: {count} accounts</title></rect>'
        )
    bottom = HEIGHT - BOTTOM
    body.append(f'<text x="{LEFT}" y="{bottom + 16}" text-anchor="start">{_money(lo)}</text>')
    body.append(f'<text x="{WIDTH - RIGHT}" y="{bottom + 16}" text-anchor="end">{_money(hi)}</text>')
    if lo < 0 < hi:
        zero_x = LEFT + plot_w * (0 - lo) / (hi - lo)
        body.append(f'<line x1="{zero_x:.1f}" y1="{TOP}" x2="{zero_x:.1f}" y2="{bottom}" stroke="#999" '
                    'stroke-dasharray="3,3"/>')
        body.append(f'<text x="{zero_x:.1f}" y="{bottom + 16}" text-anchor="middle">0</text>')
    body.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"difference IC − CIS ({len(values)} accounts)</text>")
    return _svg("Difference distribution: each mismatch's own difference, IC − CIS (BalanceDue − Balance; "
                "TotalAmountDue − FutureBalance for a total-due mismatch)", body)


CHAR_W = 6.5
"""The widest a character of the charts' 11 px sans-serif labels runs, in px (label spacing)."""


def label_slots(xs: Sequence[float], labels: Sequence[str], keep: Sequence[bool]) -> set[int]:
    """Which axis labels to draw so none overlaps another: the ``keep`` ones (this run) always,
    the others from the right while there is room (centres at least both half-widths apart)."""
    def half(i: int) -> float:
        return len(labels[i]) * CHAR_W / 2 + 4

    shown = {i for i, k in enumerate(keep) if k}
    for i in reversed(range(len(xs))):
        if i not in shown and all(abs(xs[i] - xs[j]) >= half(i) + half(j) for j in shown):
            shown.add(i)
    return shown


@dataclass(frozen=True)
class RatePoint:
    label: str  # the week
    mismatch_pct: float
    error_pct: float
    current: bool = False


def mismatch_rate_svg(points: Sequence[RatePoint]) -> str:
    """Mismatch rate per run over the past weeks (bars), with the `cis_error` rate (line)."""
    if not points:
        return _svg("Mismatch rate: no finished runs", [
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No finished runs yet</text>'
        ])
    top = max(max(p.mismatch_pct for p in points), max(p.error_pct for p in points), 1.0)
    top = float(int(top) + 1) if top > 1 else top
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(points)
    body = _axes(f"{top:g} %", "% of accounts")
    line = []
    bottom = HEIGHT - BOTTOM
    shown = label_slots([LEFT + i * slot + slot / 2 for i in range(len(points))], [p.label for p in points],
                        [p.current for p in points])
    for i, point in enumerate(points):
        x = LEFT + i * slot
        h = plot_h * point.mismatch_pct / top
        fill = BAR_CURRENT if point.current else BAR
        body.append(
            f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{fill}"><title>{escape(point.label)}: mismatches {point.mismatch_pct:.2f} %, '
            f"CIS errors {point.error_pct:.2f} %</title></rect>"
        )
        line.append(f"{x + slot / 2:.1f},{TOP + plot_h - plot_h * point.error_pct / top:.1f}")
        if i in shown:
            body.append(f'<text x="{x + slot / 2:.1f}" y="{bottom + 14}" text-anchor="middle">'
                        f"{escape(point.label)}</text>")
    body.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{LINE}" stroke-width="1.5" '
                'stroke-dasharray="4,2"><title>CIS error rate</title></polyline>')
    body.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">bars: mismatch rate; '
                "dashed line: CIS error rate</text>")
    return _svg("Mismatch rate over past weeks", body)


TREND_W, TREND_H = 140, 30


def trend_svg(points: Sequence[tuple[str, int]]) -> str:
    """A small line of one value per weekly run, oldest first (the index's 12-week trend of
    mismatches): each point carries its label and value in a ``<title>`` tooltip."""
    if not points:
        return ""
    top = max(max(v for _, v in points), 1)
    step = (TREND_W - 8) / max(len(points) - 1, 1)
    xy = [(4 + i * step, TREND_H - 4 - (TREND_H - 8) * value / top) for i, (_, value) in enumerate(points)]
    body = [f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}" fill="none" stroke="{BAR}" '
            'stroke-width="1.5"/>']
    for (label, value), (x, y) in zip(points, xy, strict=True):
        body.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{BAR}">'
                    f"<title>{escape(label)}: {value}</title></circle>")
    label = f"Mismatches, last {len(points)} weekly runs: " + ", ".join(str(v) for _, v in points)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {TREND_W} {TREND_H}" width="{TREND_W}" '
            f'height="{TREND_H}" role="img" aria-label="{escape(label)}" class="icb-trend">'
            f"<title>{escape(label)}</title>" + "".join(body) + "</svg>")
