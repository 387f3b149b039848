"""Statistics of a built dataset: per field and per day, as JSON and as an HTML report.

``dataset_stats(directory)`` reads the files the dataset's manifest lists (or every
Parquet file of a plain directory) and returns::

    {"dataset", "rows", "schema_hash", "days": [...],
     "fields": {name: {"kind", "count", "nulls", "null_rate", "distinct", "distinct_exact",
                       "frequency": [{"k": 1, "ids": n}, {"k": 2, ...}, ...],   # categorical
                       "min", "max", "mean", "histogram": {"edges", "counts"}}}, # numeric
     "labels": {name: {"rate", "by_day": [{"day", "rows", "rate"}]}}}

``distinct`` is exact up to ``exact_limit`` rows and a HyperLogLog estimate (Polars'
``approx_n_unique``) above; ``frequency`` counts the ids seen at least k times, for k in
1, 2, 5, 10, 20, 50, ... — read it to choose an admission ``min_count``. ``render_html``
draws the frequency curves and the label rates over time as inline SVG (no scripts, no
network), one self-contained file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from plinth.data import manifest as mf
from plinth.data.reader import DataError, expand_paths
from plinth.data.schema import Schema, SchemaError

__all__ = ["dataset_stats", "render_html"]

EXACT_LIMIT = 5_000_000
_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 100_000, 1_000_000)


def _kinds(directory: Path, columns: Sequence[str], dtypes: dict[str, pl.DataType]
           ) -> tuple[dict[str, str], list[str]]:
    """Field name -> categorical|numeric, and the label columns (from schema.yaml if any)."""
    schema_file = directory / "schema.yaml"
    if schema_file.is_file():
        try:
            schema = Schema.from_yaml(schema_file)
        except SchemaError as e:
            raise DataError(f"{schema_file}: {e}") from None
        kinds = {n: "categorical" for n in schema.categorical_names}
        kinds |= {n: "numeric" for n in schema.numeric_names}
        if schema.weight:
            kinds[schema.weight] = "numeric"
        return {k: v for k, v in kinds.items() if k in columns}, schema.label_names
    kinds = {c: ("numeric" if dtypes[c].is_float() else "categorical")
             for c in columns if c != "ts" and not dtypes[c].is_temporal()}
    return kinds, []


def _frequency(counts: pl.Series) -> list[dict[str, int]]:
    c = np.sort(counts.to_numpy())
    out = []
    for k in _KS:
        ids = int(c.size - np.searchsorted(c, k, side="left"))
        out.append({"k": k, "ids": ids})
        if ids == 0:
            break
    return out


def _field_stats(lf: pl.LazyFrame, name: str, kind: str, rows: int, exact_limit: int,
                 dtype: pl.DataType) -> dict[str, Any]:
    col = pl.col(name)
    is_list = isinstance(dtype, pl.List)
    values = col.explode() if is_list else col
    exact = rows <= exact_limit
    base = lf.select(
        col.is_null().sum().alias("nulls"),
        (values.n_unique() if exact else values.approx_n_unique()).alias("distinct"),
    ).collect()
    nulls = int(base["nulls"][0])
    d: dict[str, Any] = {"kind": kind, "count": rows - nulls, "nulls": nulls,
                         "null_rate": nulls / rows if rows else 0.0,
                         "distinct": int(base["distinct"][0]), "distinct_exact": exact}
    if kind == "categorical":
        counts = (lf.select(values.alias("v")).drop_nulls().group_by("v").len()
                  .collect()["len"])
        d["frequency"] = _frequency(counts)
    else:
        x = lf.select(col.cast(pl.Float64)).drop_nulls().collect().to_series().to_numpy()
        x = x[np.isfinite(x)]
        if x.size:
            counts, edges = np.histogram(x, bins=20)
            d |= {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
                  "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
    return d


def dataset_stats(directory: str | Path, *, exact_limit: int = EXACT_LIMIT) -> dict[str, Any]:
    """Statistics of the dataset at ``directory``; see the module docstring."""
    directory = Path(directory)
    files = expand_paths(directory)
    m = mf.read_manifest(directory) if directory.is_dir() else None
    lf = pl.scan_parquet(files)
    dtypes = dict(lf.collect_schema())
    rows = int(lf.select(pl.len()).collect().item())
    kinds, labels = _kinds(directory, list(dtypes), dtypes)
    fields = {n: _field_stats(lf, n, k, rows, exact_limit, dtypes[n]) for n, k in kinds.items()}
    label_stats: dict[str, Any] = {}
    if "ts" in dtypes:
        days = lf.with_columns(pl.col("ts").dt.date().cast(pl.String).alias("__day"))
        for label in (x for x in labels if x in dtypes):
            by_day = (days.group_by("__day").agg(pl.len().alias("rows"),
                                                 pl.col(label).cast(pl.Float64).mean().alias("rate"))
                      .sort("__day").collect())
            label_stats[label] = {
                "rate": float(lf.select(pl.col(label).cast(pl.Float64).mean()).collect().item()
                              or 0.0),
                "by_day": [{"day": r["__day"], "rows": r["rows"], "rate": r["rate"]}
                           for r in by_day.iter_rows(named=True)],
            }
    return {"dataset": str(directory), "rows": rows,
            "schema_hash": m.get("schema_hash") if m else None,
            "days": sorted(m["days"]) if m else [], "fields": fields, "labels": label_stats}


# --- HTML report ----------------------------------------------------------------------------

_W, _H, _PAD = 720, 280, 44
_LEFT, _RIGHT = 72, 170  # room for tick labels, and for the legend
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf")


def _axis_text(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" text-anchor="{anchor}">'
            f"{html.escape(text)}</text>")


def _tick(v: float) -> str:
    """A short axis label: thousands separated, small values to 3 significant digits."""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _grid(lo: float, hi: float, log: bool) -> list[float]:
    """Grid positions in plot units: whole powers of ten on a log axis, else quarters."""
    if log and math.floor(hi) - math.ceil(lo) >= 1:
        return [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1)]
    return [lo + (hi - lo) * i / 4 for i in range(5)]


def _svg_lines(series: dict[str, list[tuple[float, float]]], *, log_x: bool, log_y: bool,
               x_label: str, y_label: str, x_ticks: list[tuple[float, str]] | None = None
               ) -> str:
    """A line chart of named (x, y) series, axes labelled, as one <svg> element."""
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    pts = [(tx(x), ty(y)) for s in series.values() for x, y in s if (not log_y or y > 0)]
    if not pts:
        return "<p>(no data)</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(0.0, min(p[1] for p in pts)) if not log_y else min(p[1] for p in pts), max(
        p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * (_W - _LEFT - _RIGHT)

    def py(y: float) -> float:
        return _H - _PAD + (y - y0) / (y1 - y0) * (2 * _PAD - _H)

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
             f'viewBox="0 0 {_W} {_H}" role="img">'),
             (f'<rect x="{_LEFT}" y="{_PAD / 2}" width="{_W - _LEFT - _RIGHT}" '
             f'height="{_H - 1.5 * _PAD}" fill="none" stroke="#ccc"/>')]
    for yv in _grid(y0, y1, log_y):  # y grid and labels
        label = _tick(10 ** yv if log_y else yv)
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(yv):.1f}" '
                     f'y2="{py(yv):.1f}" stroke="#eee"/>')
        parts.append(_axis_text(_LEFT - 4, py(yv) + 4, label, "end"))
    ticks = x_ticks or [(v, "") for v in _grid(x0, x1, log_x)]
    for xv, label in ticks:
        xx = tx(xv) if x_ticks else xv
        text = label or _tick(10 ** xx if log_x else xx)
        parts.append(_axis_text(px(xx), _H - _PAD + 16, text))
    parts.append(_axis_text((_LEFT + _W - _RIGHT) / 2, _H - 6, x_label))
    parts.append(f'<text x="12" y="{_H / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {_H / 2})">{html.escape(y_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        coords = " ".join(f"{px(tx(x)):.1f},{py(ty(y)):.1f}" for x, y in s
                          if not log_y or y > 0)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{coords}"><title>{html.escape(name)}</title></polyline>')
        parts.append(f'<text x="{_W - _RIGHT + 8}" y="{_PAD / 2 + 13 * (i + 1)}" '
                     f'font-size="11" fill="{color}">{html.escape(name[:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_bars(edges: list[float], counts: list[int]) -> str:
    w, h, pad = 260, 90, 6
    top = max(counts) or 1
    bw = (w - 2 * pad) / len(counts)
    bars = "".join(
        f'<rect x="{pad + i * bw:.1f}" y="{h - pad - c / top * (h - 2 * pad):.1f}" '
        f'width="{bw - 1:.1f}" height="{c / top * (h - 2 * pad):.1f}" fill="#1f77b4">'
        f"<title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c}</title></rect>"
        for i, c in enumerate(counts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img">{bars}</svg>')


def render_html(stats: dict[str, Any]) -> str:
    """A self-contained HTML page (inline SVG, no scripts) of ``dataset_stats`` output."""
    e = html.escape
    fields = stats["fields"]
    freq = {n: [(float(p["k"]), float(p["ids"])) for p in f["frequency"] if p["ids"] > 0]
            for n, f in fields.items() if f["kind"] == "categorical" and f.get("frequency")}
    labels = stats["labels"]
    day_names = sorted({d["day"] for lab in labels.values() for d in lab["by_day"]})
    index = {d: i for i, d in enumerate(day_names)}
    rates = {n: [(float(index[d["day"]]), d["rate"] or 0.0) for d in lab["by_day"]]
             for n, lab in labels.items()}
    ticks = [(float(i), d[5:]) for i, d in enumerate(day_names)]
    if len(ticks) > 10:
        ticks = ticks[:: math.ceil(len(ticks) / 10)]
    rows = []
    for n, f in fields.items():
        extra = (_svg_bars(f["histogram"]["edges"], f["histogram"]["counts"])
                 if f.get("histogram") else "")
        ge = {p["k"]: p["ids"] for p in f.get("frequency", [])}
        rows.append(
            f"<tr><td><b>{e(n)}</b></td><td>{e(f['kind'])}</td><td>{f['count']:,}</td>"
            f"<td>{f['null_rate']:.2%}</td><td>{f['distinct']:,}"
            f"{'' if f['distinct_exact'] else ' (HLL)'}</td>"
            f"<td>{ge.get(2, '')}</td><td>{ge.get(10, '')}</td><td>{extra}</td></tr>")
    label_rows = "".join(
        f"<tr><td><b>{e(n)}</b></td><td>{lab['rate']:.4%}</td></tr>" for n, lab in labels.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dataset {e(stats['dataset'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #eee;
text-align:left;vertical-align:middle}}h2{{margin-top:1.6em}}.muted{{color:#777}}</style>
</head><body>
<h1>Dataset statistics</h1>
<p><code>{e(stats['dataset'])}</code> &mdash; {stats['rows']:,} rows over
{len(day_names) or len(stats['days'])} day(s); schema
<code class="muted">{e(str(stats.get('schema_hash')))}</code></p>
<h2>Label rates over time</h2>
<table>{label_rows}</table>
{_svg_lines(rates, log_x=False, log_y=False, x_label="day", y_label="rate", x_ticks=ticks)
 if rates else "<p>(no labels)</p>"}
<h2>Frequency of ids: how many ids appear at least k times</h2>
<p class="muted">Choose an admission threshold (min_count) where the curve leaves the
ids that matter: ids seen fewer times than it never get a row.</p>
{_svg_lines(freq, log_x=True, log_y=True, x_label="k (occurrences)", y_label="ids seen >= k times")
 if freq else "<p>(no categorical fields)</p>"}
<h2>Fields</h2>
<table><tr><th>field</th><th>kind</th><th>count</th><th>nulls</th><th>distinct</th>
<th>ids &ge; 2</th><th>ids &ge; 10</th><th>distribution</th></tr>
{''.join(rows)}</table>
</body></html>
"""
