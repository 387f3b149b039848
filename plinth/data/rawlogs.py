"""Seeded raw logs with a planted truth: what ``plinth data build`` turns into samples.

``generate_raw_logs(RawLogSpec(...), out)`` writes, for ``days`` days from ``start``::

    out/impressions/date=D/part-0.parquet   request_id, user_id, item_id, ts, device, position
    out/events/date=D/part-0.parquet        event (click|conversion), request_id, user_id,
                                            item_id, ts   (D = the day the event was *logged*)
    out/user_features/date=D/part-0.parquet user_id, ts, u_segment, u_activity
    out/item_features/date=D/part-0.parquet item_id, ts, i_category, i_price
    out/truth.parquet                       request_id, item_id, click, conversion and the
                                            as-of feature values, per impression
    out/schema.yaml  out/spec.yaml          a schema and a build spec over these logs

Timestamps are UTC with millisecond precision. What makes the logs realistic, and the
truth worth checking:

* feature snapshots change over time (a user's ``u_segment`` moves; an item's ``i_price``
  changes), and the click probability depends on the values *as of* the impression, so a
  feature from the future changes the labels a model can explain;
* clicks come after a delay (exponential, mean ``click_delay_mean_s``), some beyond the
  30-minute window; conversions follow clicks by hours and name only (user, item), so
  they are attributed to the latest impression of that pair (last touch, 24-hour window);
* some clicks are logged with a time before their impression (clock skew), some
  conversions happen without any impression (organic), a share of events is duplicated
  and a share arrives late (in the next day's file).

``truth.parquet`` holds the labels and features the build must produce: ``click`` is 1
when a click was generated within the window at or after the impression; ``conversion``
follows the last-touch rule, computed here independently with numpy; the feature
columns are the snapshot values as of the impression time. The same spec gives the same
bytes. CLI: ``python -m plinth.data.rawlogs --out DIR [--impressions N ...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

__all__ = ["RawLogSpec", "generate_raw_logs", "main"]

DAY_MS = 86_400_000
CLICK_WINDOW = "30m"
CONVERSION_WINDOW = "24h"
_CLICK_WINDOW_MS = 30 * 60_000
_CONVERSION_WINDOW_MS = 24 * 3_600_000
_N_SEGMENTS = 10
_DEVICES = np.array(["android", "ios", "web"])


@dataclass(frozen=True)
class RawLogSpec:
    """Sizes and rates of the generated logs (counts are totals over all days)."""

    impressions: int = 20_000
    days: int = 3
    start: str = "2026-11-01"
    users: int = 2_000
    items: int = 500
    slate: int = 4  # impressions per request
    user_snapshots: int = 6_000  # one per user at the start, the rest at random times
    item_snapshots: int = 2_000  # likewise, per item
    base_ctr: float = 0.06
    click_delay_mean_s: float = 300.0
    conversion_rate: float = 0.2  # of clicks
    conversion_delay_mean_s: float = 4 * 3600.0
    skewed_click_rate: float = 0.01  # clicks logged before their impression
    organic_conversion_rate: float = 0.002  # per impression, with no impression behind it
    duplicate_rate: float = 0.03
    late_rate: float = 0.05
    seed: int = 0
    truth: bool = True


def _start_ms(spec: RawLogSpec) -> int:
    d = dt.date.fromisoformat(spec.start)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp() * 1000)


def _zipf_ids(rng: np.random.Generator, n: int, cardinality: int, a: float = 1.1) -> np.ndarray:
    """Ids in [0, cardinality) with a Zipf-like skew (inverse-CDF of a bounded power law)."""
    u = rng.random(n)
    ranks = np.floor(cardinality ** u ** a).astype(np.int64) - 1  # heavy head, long tail
    perm = np.random.default_rng(cardinality).permutation(cardinality)
    return perm[np.clip(ranks, 0, cardinality - 1)]


def _snapshots(rng: np.random.Generator, n_keys: int, total: int, t0: int, t1: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(key, ts_ms) sorted by (key, ts): every key once a day before ``t0``, then updates."""
    extra = max(0, total - n_keys)
    keys = np.concatenate([np.arange(n_keys), rng.integers(0, n_keys, extra)])
    ts = np.concatenate([np.full(n_keys, t0 - DAY_MS), rng.integers(t0 - DAY_MS + 1, t1, extra)])
    order = np.lexsort((ts, keys))
    return keys[order], ts[order]


def _as_of(snap_keys: np.ndarray, snap_ts: np.ndarray, keys: np.ndarray, ts: np.ndarray,
           ) -> np.ndarray:
    """Index of the latest snapshot with the same key and ts <= ``ts`` (-1 if none).

    Snapshots are sorted by (key, ts); ts fit in 40 bits relative to their minimum.
    """
    base = min(int(snap_ts.min()), int(ts.min()))
    packed_snap = (snap_keys << 40) | (snap_ts - base)
    packed = (keys << 40) | (ts - base)
    pos = np.searchsorted(packed_snap, packed, side="right") - 1
    ok = pos >= 0
    ok[ok] = snap_keys[pos[ok]] == keys[ok]
    return np.where(ok, pos, -1)


def _ts_array(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC"))


def _write_by_day(table: pa.Table, day_of_row: np.ndarray, out: Path, start_ms: int) -> None:
    for d in np.unique(day_of_row):
        date = dt.datetime.fromtimestamp((start_ms + int(d) * DAY_MS) / 1000, tz=dt.UTC).date()
        part = out / f"date={date.isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(day_of_row == d)), part / "part-0.parquet")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_raw_logs(spec: RawLogSpec, out: str | Path) -> dict[str, Any]:
    """Write the raw logs, truth, schema and build spec under ``out``; return counts."""
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    t0 = _start_ms(spec)
    t1 = t0 + spec.days * DAY_MS

    # --- feature snapshots --------------------------------------------------------------
    u_keys, u_ts = _snapshots(rng, spec.users, spec.user_snapshots, t0, t1)
    u_segment = rng.integers(0, _N_SEGMENTS, u_keys.size)
    u_activity = rng.lognormal(1.0, 1.0, u_keys.size)
    i_keys, i_ts = _snapshots(rng, spec.items, spec.item_snapshots, t0, t1)
    i_category = (np.arange(spec.items) % 37)[i_keys]  # stable per item
    i_price = np.round(rng.lognormal(3.0, 1.0, i_keys.size), 2)

    # --- impressions: requests of `slate` items, time-ordered within each day ------------
    n_req = max(1, spec.impressions // spec.slate)
    req_ts = np.sort(rng.integers(t0, t1, n_req))
    req_user = _zipf_ids(rng, n_req, spec.users)
    n = n_req * spec.slate
    request_id = np.repeat(np.arange(n_req, dtype=np.int64) + 1_000_000, spec.slate)
    ts = np.repeat(req_ts, spec.slate)
    user = np.repeat(req_user, spec.slate)
    # Distinct items within a request: (request, item) identifies an impression.
    # (position p shows items = p mod slate, so no item repeats in a request).
    per_slot = max(1, spec.items // spec.slate)
    item = _zipf_ids(rng, n, per_slot) * spec.slate + np.tile(np.arange(spec.slate), n_req)
    position = np.tile(np.arange(spec.slate, dtype=np.int8), n_req)
    device = _DEVICES[rng.integers(0, _DEVICES.size, n_req)].repeat(spec.slate)

    ui = _as_of(u_keys, u_ts, user, ts)
    ii = _as_of(i_keys, i_ts, item, ts)
    seg, act = u_segment[ui], u_activity[ui]
    cat, price = i_category[ii], i_price[ii]

    # Planted model: a user's *current* segment matching the item's category drives clicks.
    logit = (np.log(spec.base_ctr / (1 - spec.base_ctr)) - 0.6
             + 1.8 * (seg == cat % _N_SEGMENTS) - 0.25 * position
             + 0.3 * np.tanh(np.log1p(act) - 1.0) - 0.2 * np.tanh(np.log(price) - 3.0))
    clicked = rng.random(n) < _sigmoid(logit)
    click_delay = rng.exponential(spec.click_delay_mean_s * 1000, n).astype(np.int64)
    click_ts = ts + click_delay
    click_label = clicked & (click_delay <= _CLICK_WINDOW_MS)

    converted = clicked & (rng.random(n) < spec.conversion_rate)
    conv_ts = click_ts + rng.exponential(spec.conversion_delay_mean_s * 1000, n).astype(np.int64)

    skewed = ~clicked & (rng.random(n) < spec.skewed_click_rate)
    skew_ts = ts - rng.integers(1_000, 600_000, n)

    n_org = int(spec.organic_conversion_rate * n)
    org_user = _zipf_ids(rng, n_org, spec.users)
    org_item = _zipf_ids(rng, n_org, spec.items)
    org_ts = rng.integers(t0, t1, n_org)

    # --- label events (by request for clicks, by user+item for conversions) -------------
    ci, si, vi = np.flatnonzero(clicked), np.flatnonzero(skewed), np.flatnonzero(converted)
    ev_kind = np.concatenate([np.zeros(ci.size + si.size, np.int8), np.ones(vi.size + n_org, np.int8)])
    ev_req = np.concatenate([request_id[ci], request_id[si], np.full(vi.size + n_org, -1)])
    ev_user = np.concatenate([user[ci], user[si], user[vi], org_user])
    ev_item = np.concatenate([item[ci], item[si], item[vi], org_item])
    ev_ts = np.concatenate([click_ts[ci], skew_ts[si], conv_ts[vi], org_ts])
    dup = np.flatnonzero(rng.random(ev_ts.size) < spec.duplicate_rate)
    ev = [np.concatenate([a, a[dup]]) for a in (ev_kind, ev_req, ev_user, ev_item, ev_ts)]
    ev_kind, ev_req, ev_user, ev_item, ev_ts = ev
    logged_day = (ev_ts - t0) // DAY_MS + (rng.random(ev_ts.size) < spec.late_rate)
    keep = (ev_ts >= t0 - DAY_MS) & (logged_day < spec.days + 2)
    order = np.argsort(ev_ts[keep], kind="stable")
    events = pa.table({
        "event": pa.array(np.where(ev_kind[keep], "conversion", "click")[order]),
        "request_id": pa.array(ev_req[keep][order], mask=ev_req[keep][order] < 0),
        "user_id": ev_user[keep][order], "item_id": ev_item[keep][order],
        "ts": _ts_array(ev_ts[keep][order]),
    })

    impressions = pa.table({
        "request_id": request_id, "user_id": user, "item_id": item, "ts": _ts_array(ts),
        "device": pa.array(device), "position": position,
    })
    _write_by_day(impressions, (ts - t0) // DAY_MS, out / "impressions", t0)
    _write_by_day(events, np.maximum(logged_day[keep][order], -1), out / "events", t0)
    users_t = pa.table({"user_id": u_keys, "ts": _ts_array(u_ts), "u_segment": u_segment,
                        "u_activity": u_activity})
    items_t = pa.table({"item_id": i_keys, "ts": _ts_array(i_ts), "i_category": i_category,
                        "i_price": i_price})
    _write_by_day(users_t, (u_ts - t0) // DAY_MS, out / "user_features", t0)
    _write_by_day(items_t, (i_ts - t0) // DAY_MS, out / "item_features", t0)

    counts = {"impressions": int(n), "events": int(events.num_rows),
              "user_snapshots": int(u_keys.size), "item_snapshots": int(i_keys.size)}
    if spec.truth:
        conv_label = _last_touch_labels(user, item, ts, ev_user[keep], ev_item[keep],
                                        ev_ts[keep], ev_kind[keep] == 1, _CONVERSION_WINDOW_MS)
        truth = pa.table({
            "request_id": request_id, "item_id": item,
            "click": click_label.astype(np.int8), "conversion": conv_label.astype(np.int8),
            "u_segment": seg, "u_activity": act, "i_category": cat, "i_price": price,
        })
        pq.write_table(truth, out / "truth.parquet")
        counts["click_rate"] = float(click_label.mean())
        counts["conversion_rate"] = float(conv_label.mean())
    _write_spec(out, spec)
    (out / "rawlogs.json").write_text(json.dumps({"spec": asdict(spec), "counts": counts}, indent=1))
    return counts


def _last_touch_labels(user: np.ndarray, item: np.ndarray, ts: np.ndarray, ev_user: np.ndarray,
                       ev_item: np.ndarray, ev_ts: np.ndarray, is_kind: np.ndarray,
                       window_ms: int) -> np.ndarray:
    """1 for impressions that are the latest of their (user, item) at or before an event of
    the kind, the event coming at most ``window_ms`` later: the reference for the build."""
    pairs, pair_idx = np.unique(np.stack([user, item], axis=1), axis=0, return_inverse=True)
    pair_idx = pair_idx.ravel()
    ev_pair = np.stack([ev_user[is_kind], ev_item[is_kind]], axis=1)
    pos = np.searchsorted(pairs[:, 0] * (int(item.max()) + 1) + pairs[:, 1],
                          ev_pair[:, 0] * (int(item.max()) + 1) + ev_pair[:, 1])
    pos = np.clip(pos, 0, len(pairs) - 1)
    known = (pairs[pos] == ev_pair).all(axis=1)
    order = np.lexsort((ts, pair_idx))
    base = int(min(ts.min(), ev_ts.min()))
    packed = (pair_idx[order] << 40) | (ts[order] - base)
    ev_ts_k = ev_ts[is_kind][known]
    hit = np.searchsorted(packed, (pos[known] << 40) | (ev_ts_k - base), side="right") - 1
    ok = hit >= 0
    ok[ok] = pair_idx[order][hit[ok]] == pos[known][ok]
    ok[ok] = ev_ts_k[ok] - ts[order][hit[ok]] <= window_ms
    label = np.zeros(ts.size, dtype=bool)
    label[order[hit[ok]]] = True
    return label


def _write_spec(out: Path, spec: RawLogSpec) -> None:
    schema = {
        "label": "click",
        "labels": [
            {"name": "click", "event": "click", "window": CLICK_WINDOW, "match": "request"},
            {"name": "conversion", "event": "conversion", "window": CONVERSION_WINDOW,
             "match": "user_item"},
        ],
        "categorical": ["user_id", "item_id", "device", "position", "u_segment", "i_category",
                        {"name": "price_q", "bucketize": "i_price", "quantiles": 8},
                        {"name": "segment_x_category", "cross": ["u_segment", "i_category"]}],
        "numeric": [{"name": "u_activity", "transform": "log1p"},
                    {"name": "i_price", "transform": "log1p"}],
    }
    (out / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    build = {
        "schema": "schema.yaml", "output": "dataset",
        "impressions": "impressions", "events": "events",
        "user_features": "user_features", "item_features": "item_features",
    }
    (out / "spec.yaml").write_text(yaml.safe_dump(build, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plinth.data.rawlogs",
                                 description="Write raw impression/event/feature logs.")
    ap.add_argument("--out", required=True, type=Path)
    defaults = RawLogSpec()
    for name, value in asdict(defaults).items():
        if isinstance(value, bool):
            ap.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                            default=value)
        else:
            ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    a = vars(ap.parse_args(argv))
    out = a.pop("out")
    counts = generate_raw_logs(RawLogSpec(**a), out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
