"""The two joins that make samples correct, as Polars lazy plans (no I/O).

**Label attribution** (:func:`attribute`): an event of a label's type is attributed to
the *latest* impression with the same match keys at or before it (last touch), and
counts when it came at most ``window`` after that impression::

    impressions                      events (click, match by request)
    req item  ts                     req item  ts
    r1  i1   10:00                   r1  i1   09:59   before the impression: no label
    r2  i1   10:00                   r2  i1   10:05   within 30m: click = 1
    r3  i1   10:00                   r2  i1   10:05   duplicate: still 1
                                     r3  i1   10:45   outside 30m: click = 0

Matching by ``request`` uses ``request_id`` (and ``item_id`` when events carry it);
``user_item`` uses ``(user_id, item_id)``, so a conversion credits the last impression of
that item to that user. Labels are 0/1, so duplicate events count once.

**As-of join** (:func:`as_of`): each impression gets the entity's snapshot with the
greatest ``ts <= impression ts`` (Feast's ``get_historical_features``), never a later
one; with a ``ttl`` a snapshot older than that counts as missing (null features)::

    impression u1 10:00   snapshots u1 09:00 seg=3, u1 10:30 seg=7   ->  seg = 3

Both take frames with ``ts`` as naive UTC datetimes and preserve the impressions' rows:
one output row per impression, in the impressions' order.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from plinth.data.schema import LabelField, LabelMatch

__all__ = ["ROW", "as_of", "attribute", "match_keys"]

ROW = "__row"  # a per-impression row number the attribution joins back on


def match_keys(label: LabelField, event_columns: Sequence[str]) -> list[str]:
    """The columns an event and an impression must share for ``label``."""
    if label.match is LabelMatch.USER_ITEM:
        return ["user_id", "item_id"]
    return ["request_id", "item_id"] if "item_id" in event_columns else ["request_id"]


def attributed_rows(impressions: pl.LazyFrame, events: pl.LazyFrame, label: LabelField,
                    keys: Sequence[str]) -> pl.LazyFrame:
    """The distinct ``ROW`` numbers of the impressions ``label`` is attributed to.

    ``impressions`` needs ``ROW``, ``ts`` and ``keys``; ``events`` needs ``event``, ``ts``
    and ``keys``. Impressions that happen after an event but before the end of the build
    window must be present, or an event could credit an older impression than its latest.
    """
    ev = (events.filter(pl.col("event") == label.event)
          .select(*keys, pl.col("ts").alias("event_ts"))
          .drop_nulls(list(keys))
          .unique()
          .sort("event_ts"))
    imp = impressions.select(ROW, "ts", *keys).sort("ts")
    window_us = round(label.window_s * 1_000_000)
    return (ev.join_asof(imp, left_on="event_ts", right_on="ts", by=list(keys),
                         strategy="backward", check_sortedness=False)
            .filter(pl.col(ROW).is_not_null()
                    & ((pl.col("event_ts") - pl.col("ts")).dt.total_microseconds() <= window_us))
            .select(ROW)
            .unique())


def attribute(impressions: pl.LazyFrame, candidates: pl.LazyFrame, events: pl.LazyFrame,
              labels: Sequence[LabelField], event_columns: Sequence[str]) -> pl.LazyFrame:
    """``impressions`` with one int8 0/1 column per label.

    ``candidates`` are the impressions an event may credit (``impressions`` plus those up
    to the largest window after them); both carry ``ROW``.
    """
    out = impressions
    for label in labels:
        hits = attributed_rows(candidates, events, label, match_keys(label, event_columns))
        out = (out.join(hits.with_columns(pl.lit(1, pl.Int8).alias(label.name)), on=ROW,
                        how="left", maintain_order="left")
               .with_columns(pl.col(label.name).fill_null(0)))
    return out


def as_of(impressions: pl.LazyFrame, snapshots: pl.LazyFrame, key: str,
          ttl_s: float | None = None) -> pl.LazyFrame:
    """``impressions`` (sorted by ``ts``) with the fields of ``snapshots`` as of each row.

    ``snapshots`` has ``key``, ``ts`` and feature fields; its ``ts`` is not carried over.
    """
    tolerance = None if ttl_s is None else f"{round(ttl_s * 1_000_000)}us"
    return impressions.join_asof(
        snapshots.sort("ts"), on="ts", by=key, strategy="backward", tolerance=tolerance,
        check_sortedness=False,
    )
