"""The training report: a text summary for the terminal and a self-contained HTML page.

Both take the result dict of :meth:`plinth.train.trainer.Trainer.fit` (test ``auc``,
``logloss``, ``calibration`` by decile, ``numeric_transforms``, ``loss_curve``,
``fields``, ``table_rows``/``table_bytes``). The page (``plinth train local --report
FILE.html``) has the loss curve, the calibration plot (predicted vs observed positive rate
per decile of prediction) and the per-field table sizes, drawn as inline SVG: no scripts,
no CDN, viewable offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["summary_text", "write_html"]


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(
        v, spec)


def summary_text(result: Mapping[str, Any]) -> str:
    """Multi-line summary: metrics, calibration by decile, the numeric transforms chosen."""
    lines = [
        (f"trained {result.get('model')} for {result.get('steps')} steps "
        f"({_fmt(result.get('samples_per_s'), '.0f')} samples/s)"),
        (f"test AUC {_fmt(result.get('auc'))}, log loss {_fmt(result.get('logloss'))}, "
        f"base rate {_fmt(result.get('base_rate'))}"),
    ]
    cal = result.get("calibration") or []
    if cal:
        lines.append("calibration (decile of prediction: predicted vs observed positive rate)")
        lines += [f"  {c['decile']:>2}  {c['predicted']:.4f}  {c['observed']:.4f}"
                  f"  (n={c['count']})" for c in cal]
    transforms = result.get("numeric_transforms") or []
    if transforms:
        lines.append("numeric transforms")
        lines += [f"  {t}" for t in transforms]
    if result.get("package"):
        lines.append(f"package {result['package']}")
    return "\n".join(lines)


def _polyline(xs: Sequence[float], ys: Sequence[float], box: tuple[float, float, float, float],
              lo_hi: tuple[float, float, float, float]) -> str:
    x0, y0, w, h = box
    xmin, xmax, ymin, ymax = lo_hi
    sx = w / ((xmax - xmin) or 1.0)
    sy = h / ((ymax - ymin) or 1.0)
    return " ".join(f"{x0 + (x - xmin) * sx:.1f},{y0 + h - (y - ymin) * sy:.1f}"
                    for x, y in zip(xs, ys, strict=True))


def _frame(title: str, x_label: str, y_label: str, lo_hi: tuple[float, ...], body: str) -> str:
    xmin, xmax, ymin, ymax = lo_hi
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="460" height="320" '
        'style="font:12px sans-serif">'
        f'<text x="230" y="16" text-anchor="middle">{html.escape(title)}</text>'
        '<rect x="60" y="30" width="380" height="240" fill="none" stroke="#888"/>'
        f'<text x="60" y="288">{xmin:.4g}</text>'
        f'<text x="440" y="288" text-anchor="end">{xmax:.4g}</text>'
        f'<text x="56" y="270" text-anchor="end">{ymin:.4g}</text>'
        f'<text x="56" y="40" text-anchor="end">{ymax:.4g}</text>'
        f'<text x="250" y="308" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="14" y="150" transform="rotate(-90 14 150)" text-anchor="middle">'
        f'{html.escape(y_label)}</text>{body}</svg>'
    )


def loss_svg(curve: Sequence[Sequence[float]]) -> str:
    """The smoothed training loss against the step."""
    if not curve:
        return "<p>no training steps</p>"
    xs = [float(c[0]) for c in curve]
    ys = [float(c[1]) for c in curve]
    lo_hi = (min(xs), max(xs), min(ys), max(ys))
    line = _polyline(xs, ys, (60, 30, 380, 240), lo_hi)
    return _frame("training loss (moving average)", "step", "log loss", lo_hi,
                  f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>')


def calibration_svg(cal: Sequence[Mapping[str, float]]) -> str:
    """Observed against predicted positive rate per decile; the diagonal is perfect."""
    if not cal:
        return "<p>no test split</p>"
    top = max(max(c["predicted"] for c in cal), max(c["observed"] for c in cal)) or 1.0
    lo_hi = (0.0, top, 0.0, top)
    box = (60, 30, 380, 240)
    diag = _polyline([0.0, top], [0.0, top], box, lo_hi)
    pts = _polyline([c["predicted"] for c in cal], [c["observed"] for c in cal], box, lo_hi)
    dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="4" '
                   'fill="#d62728"/>' for p in pts.split())
    return _frame("calibration by decile", "predicted positive rate", "observed positive rate",
                  lo_hi, f'<polyline points="{diag}" fill="none" stroke="#aaa" '
                  f'stroke-dasharray="4"/><polyline points="{pts}" fill="none" '
                  f'stroke="#d62728"/>{dots}')


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path: str | Path, result: Mapping[str, Any]) -> Path:
    """Write the report page to ``path``; return it."""
    path = Path(path)
    fields = result.get("fields") or []
    tables = [(n, r, f"{result.get('table_bytes', {}).get(n, 0) / 2**20:.1f}")
              for n, r in (result.get("table_rows") or {}).items()]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Plinth training report</title>
<style>body{{font:14px sans-serif;margin:2em;max-width:1000px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:right}}th{{background:#f4f4f4}}pre{{background:#f8f8f8;padding:1em}}</style>
</head><body>
<h1>Training report: {html.escape(str(result.get('model')))}</h1>
<pre>{html.escape(summary_text(result))}</pre>
<div>{loss_svg(result.get('loss_curve') or [])}
{calibration_svg(result.get('calibration') or [])}</div>
<h2>Tables</h2>
{_table(["table", "rows", "MiB"], tables)}
<h2>Fields</h2>
{_table(["field", "table", "table rows", "distinct ids in the test split"],
        [(f["field"], f["table"], f["table_rows"], f.get("test_distinct_ids", "n/a"))
         for f in fields])}
</body></html>
"""
    path.write_text(page)
    return path
