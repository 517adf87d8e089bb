"""Self-contained HTML reports with inline SVG plots: one file, no scripts, no network, opens anywhere.

`render_run(report)` draws a `dpf run` report (the runner's JSON report with its `timeseries`): DPUs by
phase over time, a rollout Gantt of sampled DPUs, BFB server and trunk link bandwidth, per-phase duration
distributions, controller queue depth and reconcile rate. `render_sweep(...)` draws a sweep: the makespan
(and each await's duration) against each parameter with 95% confidence bands across replications, and the
rollout progress of each parameter point.

Every plot is SVG built here as text; tooltips are SVG <title> elements, so the page needs no JavaScript.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .timeseries import phase_rank

# Okabe-Ito first (colour-blind safe), then Tableau for more series.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#4E79A7", "#F28E2B", "#59A14F", "#B07AA1", "#9C755F", "#BAB0AC"]
PHASE_COLOURS = {
    "Initializing": "#BAB0AC", "Node Effect": "#9C755F", "Pending": "#F0E442", "DMS Deployment": "#56B4E9",
    "OS Installing": "#E69F00", "Rebooting": "#D55E00", "Host Network Configuration": "#CC79A7",
    "DPU Cluster Config": "#0072B2", "Ready": "#009E73", "Error": "#B2182B", "Deleting": "#000000",
}

W, H = 860, 300
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 64, 16, 14, 40


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def phase_colour(phase: str, i: int) -> str:
    return PHASE_COLOURS.get(phase, colour(i))


# --- scales and ticks -------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 times a power of ten)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def time_unit(span: float) -> tuple[float, str]:
    if span >= 3 * 3600:
        return 3600.0, "h"
    if span >= 180:
        return 60.0, "min"
    return 1.0, "s"


def fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:g}G"
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = float(s)
    if s < 120:
        return f"{s:.1f}s"
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


@dataclass
class Frame:
    """A plot area: data ranges mapped onto the SVG box inside the margins."""

    x0: float
    x1: float
    y0: float
    y1: float
    w: int = W
    h: int = H
    left: int = M_LEFT

    def x(self, v: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (v - self.x0) / span * (self.w - self.left - M_RIGHT)

    def y(self, v: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.h - M_BOTTOM - (v - self.y0) / span * (self.h - M_TOP - M_BOTTOM)


def axes(f: Frame, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]], xlabel: str,
         ylabel: str) -> list[str]:
    out = ['<g class="axes" font-size="11" fill="#333">']
    bottom, top = f.h - M_BOTTOM, M_TOP
    for v, label in yticks:
        y = f.y(v)
        out.append(f'<line x1="{f.left}" x2="{f.w - M_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    for v, label in xticks:
        x = f.x(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#555"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{esc(label)}</text>')
    out.append(f'<line x1="{f.left}" x2="{f.w - M_RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#555"/>')
    out.append(f'<line x1="{f.left}" x2="{f.left}" y1="{top}" y2="{bottom}" stroke="#555"/>')
    out.append(f'<text x="{(f.left + f.w - M_RIGHT) / 2:.0f}" y="{f.h - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text transform="translate(13,{(top + bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">{esc(ylabel)}</text>')
    out.append("</g>")
    return out


def svg(parts: list[str], w: int = W, h: int = H, label: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{esc(label)}" font-family="system-ui, sans-serif">' + "".join(parts) + "</svg>")


def legend(items: Sequence[tuple[str, str]]) -> str:
    spans = "".join(f'<span><i style="background:{c}"></i>{esc(n)}</span>' for n, c in items)
    return f'<div class="legend">{spans}</div>'


def figure(name: str, title: str, body: str, note: str = "") -> str:
    caption = f"<figcaption>{esc(title)}</figcaption>"
    extra = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<figure class="plot" data-plot="{esc(name)}">{caption}{body}{extra}</figure>'


def empty_plot(name: str, title: str, why: str) -> str:
    body = svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#777" font-size="14">{esc(why)}</text>',
                f'<rect x="1" y="1" width="{W - 2}" height="{H - 2}" fill="none" stroke="#ddd"/>'], label=why)
    return figure(name, title, body).replace('<figure class="plot"', '<figure class="plot" data-empty="1"', 1)


def time_frame(t: Sequence[float], ymax: float, w: int = W, h: int = H) -> tuple[Frame, list[tuple[float, str]], str]:
    t0, t1 = (t[0], t[-1]) if t else (0.0, 1.0)
    unit, uname = time_unit(t1 - t0)
    f = Frame(t0, t1 if t1 > t0 else t0 + 1.0, 0.0, ymax if ymax > 0 else 1.0, w, h)
    xt = [(v * unit, fmt_num(v)) for v in nice_ticks(t0 / unit, f.x1 / unit) if t0 <= v * unit <= f.x1 + 1e-9]
    return f, xt, f"simulated time ({uname})"


def yticks_for(f: Frame, fmt: Callable[[float], str] = fmt_num) -> list[tuple[float, str]]:
    return [(v, fmt(v)) for v in nice_ticks(f.y0, f.y1, 5) if f.y0 <= v <= f.y1 + 1e-9]


def polyline(points: Sequence[tuple[float, float]], stroke: str, width: float = 1.8, tip: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return f'<polyline fill="none" stroke="{stroke}" stroke-width="{width}" points="{pts}">{title}</polyline>'


# --- run plots ---------------------------------------------------------------------------------------------


def plot_phases(ts: Mapping[str, Any]) -> str:
    t: list[float] = ts.get("t", [])
    phases: dict[str, list[int]] = ts.get("phases", {})
    title = "DPUs by phase over time"
    if len(t) < 2 or not phases:
        return empty_plot("phases", title, "no DPU events recorded")
    names = sorted(phases, key=phase_rank)
    totals = [sum(phases[p][k] for p in names) for k in range(len(t))]
    f, xt, xl = time_frame(t, max(totals))
    parts = axes(f, xt, yticks_for(f), xl, "DPUs")
    base = [0.0] * len(t)
    items = []
    for i, p in enumerate(names):
        top = [base[k] + phases[p][k] for k in range(len(t))]
        upper = [(f.x(t[k]), f.y(top[k])) for k in range(len(t))]
        lower = [(f.x(t[k]), f.y(base[k])) for k in reversed(range(len(t)))]
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower) + " Z"
        c = phase_colour(p, i)
        parts.append(f'<path d="{d}" fill="{c}" fill-opacity="0.85" stroke="none"><title>{esc(p)} (max '
                     f'{max(phases[p])})</title></path>')
        items.append((p, c))
        base = top
    return figure("phases", title, svg(parts, label=title) + legend(items))


def plot_gantt(ts: Mapping[str, Any]) -> str:
    rows: list[dict[str, Any]] = ts.get("gantt", [])
    title = f"Rollout Gantt: {len(rows)} sampled DPUs"
    if not rows:
        return empty_plot("gantt", "Rollout Gantt", "no sampled DPU ever had a phase")
    t0 = min(s[1] for r in rows for s in r["spans"])
    t1 = max(s[2] for r in rows for s in r["spans"])
    bar = 12
    h = M_TOP + M_BOTTOM + bar * len(rows) + 4
    unit, uname = time_unit(t1 - t0)
    f = Frame(t0, t1 if t1 > t0 else t0 + 1, 0, len(rows), W, h, left=170)
    xt = [(v * unit, fmt_num(v)) for v in nice_ticks(t0 / unit, f.x1 / unit) if t0 <= v * unit <= f.x1 + 1e-9]
    parts = axes(f, xt, [], f"simulated time ({uname})", "")
    seen: dict[str, str] = {}
    for k, r in enumerate(rows):
        y = M_TOP + k * bar
        parts.append(f'<text x="{f.left - 6}" y="{y + bar - 3}" text-anchor="end" font-size="10">{esc(r["dpu"])}</text>')
        for phase, a, b in r["spans"]:
            c = seen.setdefault(phase, phase_colour(phase, len(seen)))
            x = f.x(a)
            w = max(0.8, f.x(b) - x)
            parts.append(f'<rect x="{x:.1f}" y="{y + 1}" width="{w:.1f}" height="{bar - 2}" fill="{c}">'
                         f'<title>{esc(r["dpu"])}: {esc(phase)} {fmt_seconds(a)} to {fmt_seconds(b)} '
                         f'({fmt_seconds(b - a)})</title></rect>')
    items = sorted(seen.items(), key=lambda kv: phase_rank(kv[0]))
    return figure("gantt", title, svg(parts, h=h, label=title) + legend(items))


def plot_links(ts: Mapping[str, Any]) -> str:
    t: list[float] = ts.get("t", [])
    links: dict[str, dict[str, Any]] = ts.get("links", {})
    title = "BFB server and link bandwidth use"
    if len(t) < 2 or not links:
        return empty_plot("links", title, "no transfers on recorded links")
    gbit = 8 / 1e9
    # Scaled to the traffic (a 100 Gbit/s spine line would flatten a 1 Gbit/s install wave), but never
    # below the smallest capacity shown, so a saturated BFB server reads as touching its dashed line.
    peak = max(max(v["rate"]) for v in links.values()) * gbit
    ymax = max(peak * 1.1, min(v["capacity"] for v in links.values()) * gbit * 1.05)
    f, xt, xl = time_frame(t, ymax)
    parts = axes(f, xt, yticks_for(f), xl, "Gbit/s (mean per sample)")
    items = []
    for i, (lk, v) in enumerate(links.items()):
        c = colour(i)
        cap = v["capacity"] * gbit
        if cap <= ymax:
            parts.append(f'<line x1="{f.left}" x2="{W - M_RIGHT}" y1="{f.y(cap):.1f}" y2="{f.y(cap):.1f}" stroke="{c}" '
                     f'stroke-dasharray="4 4" stroke-width="1"><title>{esc(lk)} capacity {cap:g} Gbit/s</title></line>')
        # A step line: the value at t[k] is the mean over (t[k-1], t[k]].
        pts: list[tuple[float, float]] = []
        for k in range(1, len(t)):
            y = f.y(v["rate"][k] * gbit)
            pts += [(f.x(t[k - 1]), y), (f.x(t[k]), y)]
        top = max(v["rate"]) * gbit
        parts.append(polyline(pts, c, tip=f"{lk}: peak {top:.2f} Gbit/s of {cap:g}, {v['bytes'] / 2**30:.1f} GiB carried"))
        items.append((f"{lk} ({v['bytes'] / 2**30:.1f} GiB)", c))
    return figure("links", title, svg(parts, label=title) + legend(items), "dashed: link capacity")


def plot_durations(ts: Mapping[str, Any]) -> str:
    durs: dict[str, dict[str, Any]] = ts.get("phase_durations", {})
    title = "Per-phase duration distributions (DPUs that left the phase)"
    if not durs:
        return empty_plot("durations", title, "no DPU left a phase")
    names = list(durs)
    row = 26
    h = M_TOP + M_BOTTOM + row * len(names)
    hi = max(d["q"][-1] for d in durs.values())
    # A log axis: phases last from milliseconds (Node Effect) to many minutes (OS Installing).
    lo = max(1e-3, min(max(d["q"][0], 1e-3) for d in durs.values()))
    llo, lhi = math.floor(math.log10(lo)), math.ceil(math.log10(max(hi, lo * 10)))
    # The plot ends 150 px early: the right margin holds each phase's count and median.
    f = Frame(llo, lhi, 0, len(names), W - 150, h, left=190)
    xt = [(float(e), fmt_seconds(10.0**e) if e >= 0 else f"{10.0**e:g}s") for e in range(llo, lhi + 1)]
    parts = axes(f, xt, [], "seconds (log scale)", "")
    parts.insert(0, f'<rect x="0" y="0" width="{W}" height="{h}" fill="none"/>')

    def lx(v: float) -> float:
        return f.x(math.log10(max(v, 10.0**llo)))

    for k, p in enumerate(names):
        q = durs[p]["q"]  # min, p5, p25, p50, p75, p95, max
        y = M_TOP + k * row + row / 2
        c = phase_colour(p, k)
        tip = (f"{p}: n={durs[p]['count']} min {fmt_seconds(q[0])} p25 {fmt_seconds(q[2])} median {fmt_seconds(q[3])} "
               f"p75 {fmt_seconds(q[4])} p95 {fmt_seconds(q[5])} max {fmt_seconds(q[6])}")
        parts.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{esc(p)}</text>')
        parts.append(f'<g><title>{esc(tip)}</title>'
                     f'<line x1="{lx(q[0]):.1f}" x2="{lx(q[6]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#999"/>'
                     f'<line x1="{lx(q[1]):.1f}" x2="{lx(q[5]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{c}" stroke-width="3"/>'
                     f'<rect x="{lx(q[2]):.1f}" y="{y - 7:.1f}" width="{max(1.5, lx(q[4]) - lx(q[2])):.1f}" height="14" '
                     f'fill="{c}" fill-opacity="0.6" stroke="{c}"/>'
                     f'<line x1="{lx(q[3]):.1f}" x2="{lx(q[3]):.1f}" y1="{y - 8:.1f}" y2="{y + 8:.1f}" stroke="#000" stroke-width="2"/>'
                     f'</g>')
        parts.append(f'<text x="{W - M_RIGHT}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#555">'
                     f'n={durs[p]["count"]} median {esc(fmt_seconds(q[3]))}</text>')
    note = "box: p25-p75, black: median, thick whisker: p5-p95, thin: min-max"
    return figure("durations", title, svg(parts, w=W, h=h, label=title), note)


def _controller_lines(name: str, title: str, t: list[float], series: dict[str, list[float]], ylabel: str) -> str:
    shown = {c: v for c, v in series.items() if any(x > 0 for x in v)}
    if len(t) < 2 or not shown:
        return empty_plot(name, title, "nothing to show (every value zero)")
    f, xt, xl = time_frame(t, max(max(v) for v in shown.values()) * 1.05)
    parts = axes(f, xt, yticks_for(f), xl, ylabel)
    items = []
    for i, (c, v) in enumerate(sorted(shown.items())):
        col = colour(i)
        parts.append(polyline([(f.x(t[k]), f.y(v[k])) for k in range(len(t))], col, tip=f"{c}: max {fmt_num(max(v))}"))
        items.append((c, col))
    return figure(name, title, svg(parts, label=title) + legend(items))


def plot_queues(ts: Mapping[str, Any]) -> str:
    t = ts.get("t", [])
    depth = {c: [float(x) for x in v] for c, v in ts.get("queue_depth", {}).items()}
    return _controller_lines("queue-depth", "Controller work queue depth (keys ready or waiting for a requeue, sampled)",
                             t, depth, "keys")


def plot_reconcile_rate(ts: Mapping[str, Any]) -> str:
    t: list[float] = ts.get("t", [])
    rate: dict[str, list[float]] = {}
    for c, cum in ts.get("reconciles", {}).items():
        rate[c] = [0.0] + [(cum[k] - cum[k - 1]) / (t[k] - t[k - 1]) if t[k] > t[k - 1] else 0.0 for k in range(1, len(t))]
    return _controller_lines("reconcile-rate", "Reconcile rate per controller", t, rate, "reconciles / simulated s")


# --- the page --------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:900px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.pass{color:#1a7f37;font-weight:600}.fail{color:#b2182b;font-weight:600}
figure{margin:18px 0}figcaption{font-weight:600;margin-bottom:4px}.note{font-size:12px;color:#555;margin:2px 0}
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 0 64px}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
svg{max-width:100%;height:auto}code{font-size:12px}
"""


def page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def verdict(passed: bool) -> str:
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def render_run(report: Mapping[str, Any]) -> str:
    """The HTML page of one run's report (the runner's report dict, with `timeseries`)."""
    ts: Mapping[str, Any] = report.get("timeseries") or {}
    name = str(report.get("scenario", "scenario"))
    summary = [
        ("verdict", verdict(bool(report.get("passed")))),
        ("seed", esc(report.get("seed"))),
        ("stopped by", esc(report.get("stopped_by"))),
        ("makespan (last await passed)", esc(fmt_seconds(report.get("makespan")))),
        ("simulated", esc(fmt_seconds(report.get("sim_seconds")))),
        ("wall", esc(f"{report.get('wall_seconds', 0)}s")),
        ("events / reconciles", esc(f"{report.get('events')} / {report.get('reconciles', {}).get('total')}")),
        ("DPUs by phase at the end", esc(", ".join(f"{p} {n}" for p, n in (report.get("dpus_by_phase") or {}).items()) or "none")),
    ]
    ttr = report.get("dpu_time_to_ready") or {}
    if ttr.get("count"):
        summary.append(("DPU time to Ready", esc(f"p50 {fmt_seconds(ttr['p50'])}, p90 {fmt_seconds(ttr['p90'])}, "
                                                f"max {fmt_seconds(ttr['max'])} (n={ttr['count']})")))
    exp_rows = [(verdict(bool(e.get("passed"))), esc(e.get("name")), esc(e.get("detail", ""))) for e in report.get("expectations", [])]
    body = [
        f"<h1>dpf-twin run: {esc(name)}</h1>",
        table(["", ""], summary),
        "<h2>Expectations</h2>",
        table(["", "name", "detail"], exp_rows) if exp_rows else "<p>none</p>",
        "<h2>Plots</h2>",
        plot_phases(ts), plot_gantt(ts), plot_links(ts), plot_durations(ts), plot_queues(ts), plot_reconcile_rate(ts),
    ]
    return page(f"dpf-twin: {name}", body)


# --- sweeps ------------------------------------------------------------------------------------------------

# Two-sided 95% Student t quantiles by degrees of freedom; 1.96 beyond.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    if df <= 0:
        return math.nan
    best = max((k for k in _T95 if k <= df), default=1)
    return _T95[best] if df <= 30 else 1.96


def mean_ci(xs: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the 95% confidence interval of the mean (Student t); one value gives a zero-width interval."""
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    if not vals:
        return math.nan, math.nan, math.nan
    n = len(vals)
    m = sum(vals) / n
    if n == 1:
        return m, m, m
    sd = math.sqrt(sum((x - m) ** 2 for x in vals) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half


def axis_values(values: Sequence[Any]) -> tuple[list[float], list[str], bool]:
    """Plot positions for a parameter's values: numeric when every value reads as a number ("5%" -> 5),
    else evenly spaced categories in the given order."""
    nums: list[float] = []
    for v in values:
        text = str(v).strip().rstrip("%")
        try:
            nums.append(float(text))
        except ValueError:
            return [float(i) for i in range(len(values))], [str(v) for v in values], False
    return nums, [str(v) for v in values], True


def plot_metric_vs_param(metric: str, label: str, param: str, values: Sequence[Any], others: Sequence[str],
                         rows: Sequence[Mapping[str, Any]], idx: int) -> str:
    """One line per combination of the other parameters; the band is the 95% CI across replications."""
    title = f"{label} against {param}"
    xs, xlabels, numeric = axis_values(values)
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for r in rows:
        key = tuple(r.get(o) for o in others)
        v = r.get(metric)
        groups.setdefault(key, {}).setdefault(r.get(param), [])
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
            groups[key][r.get(param)].append(float(v))
    stats = {k: {pv: mean_ci(g.get(pv, [])) for pv in values} for k, g in groups.items()}
    finite = [s for st in stats.values() for m in st.values() for s in m if math.isfinite(s)]
    if not finite:
        return empty_plot(f"sweep-{idx}", title, f"no run produced {label} (did its awaits pass?)")
    ymax = max(finite) * 1.08
    lo_x, hi_x = min(xs), max(xs)
    pad = (hi_x - lo_x) * 0.05 or 0.5
    f = Frame(lo_x - pad, hi_x + pad, 0.0, ymax if ymax > 0 else 1.0)
    unit, uname = time_unit(ymax)
    yt = [(v * unit, fmt_num(v)) for v in nice_ticks(0, f.y1 / unit, 5) if v * unit <= f.y1]
    xt = list(zip(xs, xlabels, strict=True)) if (numeric and len(xs) <= 12) or not numeric else \
        [(v, fmt_num(v)) for v in nice_ticks(lo_x, hi_x)]
    parts = axes(f, xt, yt, param, f"{label} ({uname})")
    items = []
    for i, (key, st) in enumerate(sorted(stats.items(), key=lambda kv: str(kv[0]))):
        c = colour(i)
        pts = [(x, st[pv]) for x, pv in zip(xs, values, strict=True) if math.isfinite(st[pv][0])]
        pts.sort(key=lambda p: p[0])
        if not pts:
            continue
        upper = [(f.x(x), f.y(m[2])) for x, m in pts]
        lower = [(f.x(x), f.y(m[1])) for x, m in reversed(pts)]
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower) + " Z"
        parts.append(f'<path d="{d}" fill="{c}" fill-opacity="0.18" stroke="none"/>')
        name = ", ".join(f"{o}={k}" for o, k in zip(others, key, strict=True)) or label
        parts.append(polyline([(f.x(x), f.y(m[0])) for x, m in pts], c, 2.2, tip=name))
        for (x, m), pv in zip(pts, [pv for x, pv in sorted(zip(xs, values, strict=True), key=lambda p: p[0])
                                     if math.isfinite(st[pv][0])], strict=True):
            parts.append(f'<circle cx="{f.x(x):.1f}" cy="{f.y(m[0]):.1f}" r="3.5" fill="{c}"><title>{esc(param)}={esc(pv)}'
                         f'{" (" + esc(name) + ")" if others else ""}: mean {fmt_seconds(m[0])}, 95% CI '
                         f'{fmt_seconds(m[1])} to {fmt_seconds(m[2])}</title></circle>')
        items.append((name, c))
    return figure(f"sweep-{idx}", title, svg(parts, label=title) + legend(items),
                  "line: mean across replications; band: 95% confidence interval of the mean (Student t)")


def plot_progress(curves: Sequence[tuple[str, list[float], list[int]]]) -> str:
    title = "DPUs Ready over time (replication 0 of each point)"
    curves = [c for c in curves if len(c[1]) >= 2]
    if not curves:
        return empty_plot("sweep-progress", title, "no progress series")
    tmax = max(c[1][-1] for c in curves)
    ymax = max(max(c[2]) for c in curves)
    f, xt, xl = time_frame([0.0, tmax], ymax * 1.05)
    parts = axes(f, xt, yticks_for(f), xl, "DPUs Ready")
    items = []
    for i, (name, t, ready) in enumerate(curves):
        c = colour(i)
        parts.append(polyline([(f.x(t[k]), f.y(ready[k])) for k in range(len(t))], c, tip=name))
        items.append((name, c))
    return figure("sweep-progress", title, svg(parts, label=title) + legend(items))


def render_sweep(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]],
                 curves: Sequence[tuple[str, list[float], list[int]]]) -> str:
    """The sweep page: `meta` has scenario, params [(path, values)], replications; rows = one per run;
    summary = one per parameter point; curves = (point label, t, Ready count) per point."""
    params: list[tuple[str, list[Any]]] = [(p, list(v)) for p, v in meta["params"]]
    names = [p for p, _ in params]
    metrics = [("makespan", "makespan")] + [(m, m.removeprefix("await.").removesuffix(".seconds") + " duration")
                                            for m in meta.get("await_metrics", [])]
    figs = []
    idx = 0
    # A parameter given one value is a fixed setting of the sweep: no plot against it, no line per value.
    varied = [p for p, vs in params if len(vs) > 1] or names[:1]
    for metric, label in metrics:
        for p, values in params:
            if p in varied:
                figs.append(plot_metric_vs_param(metric, label, p, values, [o for o in varied if o != p], rows, idx))
                idx += 1
    header = [*names, "runs", "passed", "makespan mean", "95% CI", "min", "max"]
    srows = [
        [*(esc(s["params"][n]) for n in names), esc(s["runs"]), esc(s["passed"]), esc(fmt_seconds(s["makespan_mean"])),
         esc(f"{fmt_seconds(s['makespan_ci_low'])} to {fmt_seconds(s['makespan_ci_high'])}"),
         esc(fmt_seconds(s["makespan_min"])), esc(fmt_seconds(s["makespan_max"]))]
        for s in summary
    ]
    spec = ", ".join(f"<code>{esc(p)}</code> = {esc(', '.join(str(v) for v in vs))}" for p, vs in params)
    body = [
        f"<h1>dpf-twin sweep: {esc(meta.get('scenario'))}</h1>",
        f"<p>{len(rows)} runs: {spec}; {esc(meta.get('replications'))} replication(s) each "
        f"(seeds {esc(meta.get('seeds'))}). Makespan = simulated time the last await passed.</p>",
        f'<div style="overflow-x:auto">{table(header, srows)}</div>',
        "<h2>Plots</h2>",
        *figs,
        plot_progress(curves),
        f'<script type="application/json" id="sweep-data">{_json_for_html({"meta": meta, "summary": summary})}</script>',
    ]
    return page(f"dpf-twin sweep: {meta.get('scenario')}", body)


def _json_for_html(data: Any) -> str:
    # "</" would end the script element early.
    return json.dumps(data, default=str).replace("</", "<\\/")


def write_run_html(report: Path, html_path: Path, result: Any) -> None:
    """`dpf run --html`: render the JSON report the run wrote; say where (or why not) in `result`'s
    out/err lines (dpf_cli.run.CommandOutput)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return  # no report: the scenario was invalid, and the run's own errors say so
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_run(data))
    except OSError as e:
        result.err.append(f"cannot write HTML report {html_path}: {e.strerror or e}")
        result.code = max(result.code, 1)
        return
    result.out.append(f"html: {html_path}")
