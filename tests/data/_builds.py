"""Small raw logs written from row lists, and a spec over them, for the build tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

DAY = dt.datetime(2026, 11, 1)

SCHEMA: dict[str, Any] = {
    "label": "click",
    "labels": [
        {"name": "click", "event": "click", "window": "30m"},
        {"name": "conversion", "event": "conversion", "window": "24h", "match": "user_item"},
    ],
    "categorical": ["user_id", "item_id", "seg"],
    "numeric": ["price"],
}


def at(hh_mm: str, day: int = 0) -> dt.datetime:
    """A timestamp on ``DAY + day`` at ``HH:MM``."""
    h, m = (int(x) for x in hh_mm.split(":"))
    return DAY + dt.timedelta(days=day, hours=h, minutes=m)


def write(path: Path, rows: list[dict[str, Any]], types: dict[str, pa.DataType] | None = None
          ) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {k: [r.get(k) for r in rows] for k in rows[0]}
    types = types or {}
    arrays = {k: pa.array(v, type=types.get(k)) for k, v in cols.items()}
    pq.write_table(pa.table(arrays), path)
    return path


def logs(root: Path, impressions: list[dict], events: list[dict], users: list[dict],
         items: list[dict], schema: dict | None = None, **spec: Any) -> Path:
    """Write the four inputs and ``spec.yaml`` under ``root``; return the spec's path."""
    write(root / "raw" / "impressions" / "part-0.parquet", impressions)
    write(root / "raw" / "events" / "part-0.parquet", events,
          {"request_id": pa.int64(), "user_id": pa.int64(), "item_id": pa.int64()})
    write(root / "raw" / "users" / "part-0.parquet", users)
    write(root / "raw" / "items" / "part-0.parquet", items)
    doc = {"schema": schema or SCHEMA, "output": "dataset",
           "impressions": "raw/impressions", "events": "raw/events",
           "user_features": "raw/users", "item_features": "raw/items", **spec}
    (root / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "spec.yaml"


def imp(req: int, user: int, item: int, ts: dt.datetime) -> dict[str, Any]:
    return {"request_id": req, "user_id": user, "item_id": item, "ts": ts}


def ev(kind: str, ts: dt.datetime, req: int | None = None, user: int | None = None,
       item: int | None = None) -> dict[str, Any]:
    return {"event": kind, "request_id": req, "user_id": user, "item_id": item, "ts": ts}


def default_features() -> tuple[list[dict], list[dict]]:
    users = [{"user_id": u, "ts": at("00:00", -1), "seg": u * 10} for u in (1, 2, 3)]
    items = [{"item_id": i, "ts": at("00:00", -1), "price": float(i)} for i in (1, 2, 3)]
    return users, items
