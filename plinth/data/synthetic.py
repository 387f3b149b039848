"""Seeded synthetic CTR data with a planted ground truth, written as Parquet.

Each sample has categorical fields ``c1..cF`` (one int64 raw id each, Zipf-distributed
over a per-field cardinality), multi-valued fields ``m1..mM`` (list<int64>, Zipf ids,
1 + Poisson(mean - 1) of them), numeric fields ``n1..nK`` (float32, log-normal "counts"),
a ``label`` (int8, 0/1) and ``p_true`` (float32), the probability the label was drawn
with. The planted model is a logistic model::

    logit = bias
          + sum_f  w_f[id_f]                         per-id weights, N(0, sigma_f^2)
          + sum_m  mean_{id in m} w_m[id]            multi-valued fields, mean-pooled
          + sum_(i,j) s_ij <v_i[id_i], v_j[id_j]>/sqrt(k)   pairwise field interactions
          + sum_n  beta_n * tanh(z_n)                numeric, with raw value exp(z_n + 1)

Per-id parameters are never stored: they are normal variates derived by hashing (seed,
field, rank), so cardinalities of tens of millions cost no memory. ``bias`` is calibrated
so the mean CTR is ``base_ctr``. Because ``p_true`` is known, the Bayes-optimal AUC and
log loss of the test split (the best any model can do on it) are computed exactly and
written to ``stats.json`` next to ``schema.yaml`` (a :class:`plinth.data.schema.Schema`).

Output layout of ``generate(spec, out)``::

    out/train/part-00000.parquet ...   the first (1 - test_fraction) of the rows
    out/test/part-00000.parquet ...    the rest (rows are i.i.d., so a tail split is fair)
    out/schema.yaml   out/stats.json

CLI: ``python -m plinth.data.synthetic --rows 100000 --out DIR [--categorical 8 ...]``.
The same spec and seed give the same bytes of data regardless of file sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from plinth.data.metrics import auc, logloss
from plinth.sparse.hashing import hash_ints

__all__ = ["PROFILES", "SyntheticSpec", "default_cardinalities", "generate", "log_cardinalities",
           "main", "profile"]

_CHUNK = 131_072  # generation unit; fixed so the data does not depend on file sizes


def log_cardinalities(n_fields: int, lo: int, hi: int) -> tuple[int, ...]:
    """``n_fields`` cardinalities log-spaced from ``lo`` to ``hi`` (both included)."""
    if n_fields <= 0:
        return ()
    return tuple(round(c) for c in np.geomspace(lo, hi, n_fields))


# Named profiles that look like real click logs: raw heavy-tailed counts with no transform
# declared, low positive rates, 20-40 fields with cardinalities from 10 to 10M, multi-valued
# fields, missing values. ``profile(name, rows)`` builds the spec; stats.json of the
# generated data holds its Bayes-optimal AUC.
PROFILES: dict[str, dict[str, Any]] = {
    # The log: 25 categorical fields (10 .. 5M), 13 raw counts, ~4% positives.
    "criteo_like": {
        "cardinalities": log_cardinalities(25, 10, 5_000_000), "multi_fields": 0,
        "numeric": 13, "base_ctr": 0.04, "interactions": 12, "signal": 0.6, "zipf": 1.1,
        "numeric_missing": 0.05,
    },
    # Rare positives (1%), very high cardinalities (up to 10M), two multi-valued fields.
    "rare_clicks": {
        "cardinalities": log_cardinalities(20, 10, 10_000_000), "multi_fields": 2,
        "multi_cardinality": 50_000, "multi_mean_length": 4.0, "numeric": 6,
        "base_ctr": 0.01, "interactions": 10, "signal": 0.7, "zipf": 1.05,
        "numeric_missing": 0.02,
    },
    # An app-install-like log: 20% positives, many missing numerics, three list fields.
    "dense_engagement": {
        "cardinalities": log_cardinalities(16, 10, 1_000_000), "multi_fields": 3,
        "multi_cardinality": 20_000, "numeric": 8, "base_ctr": 0.2, "interactions": 8,
        "signal": 0.9, "zipf": 1.2, "numeric_missing": 0.3,
    },
}


def profile(name: str, rows: int, seed: int = 0, **over: Any) -> SyntheticSpec:
    """The spec of profile ``name`` (see :data:`PROFILES`) with ``rows`` rows."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return SyntheticSpec(rows=rows, seed=seed, raw_counts=True, declare_log1p=False,
                         **{**PROFILES[name], **over})


def default_cardinalities(n_fields: int, total: int) -> tuple[int, ...]:
    """Log-spaced cardinalities from tens to millions (as in Criteo) summing to ~``total``."""
    if n_fields <= 0:
        return ()
    raw = np.exp(np.linspace(np.log(10.0), np.log(max(total, 10) / 2.0), n_fields))
    scaled = np.maximum(2, np.round(raw * total / raw.sum())).astype(np.int64)
    return tuple(int(c) for c in scaled)


@dataclass
class SyntheticSpec:
    """What to generate. Sizes are in rows; ``signal`` scales every planted effect."""

    rows: int = 100_000
    cardinalities: tuple[int, ...] = field(default_factory=lambda: default_cardinalities(8, 100_000))
    multi_fields: int = 1
    multi_cardinality: int = 10_000
    multi_mean_length: float = 3.0
    numeric: int = 4
    zipf: float = 1.1
    interactions: int = 6
    latent_dim: int = 4
    signal: float = 1.0
    base_ctr: float = 0.25
    test_fraction: float = 0.1
    seed: int = 0
    rows_per_file: int = 1_000_000
    row_group_size: int = 65_536
    # Realistic numerics: raw heavy-tailed counts (integers up to several thousand, many
    # zeros) instead of log-normal floats, and no transform declared in the schema.
    raw_counts: bool = False
    numeric_missing: float = 0.0  # share of numeric values written as null
    declare_log1p: bool = True  # schema says `transform: log1p` (the old default)

    def validate(self) -> None:
        """Raise ValueError naming the bad setting."""
        if self.rows < 2:
            raise ValueError(f"rows must be >= 2, got {self.rows}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if any(c < 1 for c in self.cardinalities):
            raise ValueError(f"cardinalities must be >= 1, got {self.cardinalities}")
        if not self.cardinalities and self.multi_fields == 0 and self.numeric == 0:
            raise ValueError("the spec has no fields; ask for categorical, multi or numeric ones")
        if not 0 < self.base_ctr < 1:
            raise ValueError(f"base_ctr must be in (0, 1), got {self.base_ctr}")
        if self.zipf <= 0:
            raise ValueError(f"zipf exponent must be > 0, got {self.zipf}")
        if self.multi_fields and (self.multi_cardinality < 1 or self.multi_mean_length < 1):
            raise ValueError("multi_cardinality and multi_mean_length must be >= 1")
        if not 0 <= self.numeric_missing < 1:
            raise ValueError(f"numeric_missing must be in [0, 1), got {self.numeric_missing}")


class _Planted:
    """The ground-truth model; deterministic in (spec, seed)."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        nf = len(spec.cardinalities)
        self.sigma = rng.uniform(0.2, 0.6, size=nf) * spec.signal
        self.sigma_multi = rng.uniform(0.3, 0.6, size=spec.multi_fields) * spec.signal
        pairs = [(i, j) for i in range(nf) for j in range(i + 1, nf)]
        n_pairs = min(spec.interactions, len(pairs))
        chosen = rng.choice(len(pairs), size=n_pairs, replace=False) if n_pairs else []
        self.pairs = [pairs[int(p)] for p in chosen]
        self.pair_scale = rng.uniform(0.2, 0.5, size=n_pairs) * spec.signal
        self.beta = rng.normal(0.0, 0.4, size=spec.numeric) * spec.signal
        self.count_mu = rng.uniform(0.5, 3.0, size=spec.numeric)
        self.count_s = rng.uniform(0.8, 1.6, size=spec.numeric)
        self.bias = 0.0
        self.bias = self._calibrate_bias()

    # Deterministic N(0,1) per (what, field, rank, j) via hashing: no stored tables.
    def _normals(self, what: int, f: int, ranks: np.ndarray, j: int = 0) -> np.ndarray:
        base = (self.spec.seed * 1_000_003 + what * 10_007 + f * 101 + j) * 2
        h1 = hash_ints(ranks, base).view(np.uint64)
        h2 = hash_ints(ranks, base + 1).view(np.uint64)
        u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
        u2 = (h2 >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[dict[str, Any], np.ndarray]:
        """Draw n samples: (columns without label, logits)."""
        spec = self.spec
        cols: dict[str, Any] = {}
        logit = np.full(n, self.bias, dtype=np.float64)
        ranks_by_field = []
        for f, card in enumerate(spec.cardinalities):
            r = _zipf_ranks(rng, n, card, spec.zipf)
            ranks_by_field.append(r)
            logit += self.sigma[f] * self._normals(1, f, r)
            cols[f"c{f + 1}"] = hash_ints(r, f"raw-c{f + 1}")  # distinct ranks -> distinct ids
        k = spec.latent_dim
        for p, (i, j) in enumerate(self.pairs):
            dot = np.zeros(n)
            for d in range(k):
                dot += self._normals(2, i, ranks_by_field[i], d) * self._normals(
                    3, j, ranks_by_field[j], d
                )
            logit += self.pair_scale[p] * dot / math.sqrt(k)
        for m in range(spec.multi_fields):
            lengths = 1 + rng.poisson(spec.multi_mean_length - 1.0, size=n)
            r = _zipf_ranks(rng, int(lengths.sum()), spec.multi_cardinality, spec.zipf)
            w = self._normals(4, m, r)
            offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
            logit += self.sigma_multi[m] * np.add.reduceat(w, offsets[:-1]) / lengths
            cols[f"m{m + 1}"] = pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(hash_ints(r, f"raw-m{m + 1}"))
            )
        for q in range(spec.numeric):
            z = rng.standard_normal(n)
            logit += self.beta[q] * np.tanh(z)
            if spec.raw_counts:
                # A count whose log is the latent: floor(exp(mu + s z)) - 1, clipped at 0 —
                # many zeros, a long right tail up to several thousand.
                raw = np.maximum(np.floor(np.exp(self.count_mu[q] + self.count_s[q] * z)) - 1, 0)
            else:
                raw = np.exp(z + 1.0)
            col = pa.array(raw.astype(np.float32))
            if spec.numeric_missing:
                col = pa.array(raw.astype(np.float32), mask=rng.random(n) < spec.numeric_missing)
            cols[f"n{q + 1}"] = col
        return cols, logit

    def _calibrate_bias(self) -> float:
        _, logit = self.sample(np.random.default_rng([self.spec.seed, 2]), 50_000)
        lo, hi = -20.0, 20.0
        for _ in range(60):  # bisection on the mean CTR, monotone in the bias
            mid = (lo + hi) / 2
            if np.mean(_sigmoid(logit + mid)) < self.spec.base_ctr:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _zipf_ranks(rng: np.random.Generator, n: int, card: int, s: float) -> np.ndarray:
    """Ranks in [1, card] with P(rank = r) ~ r^-s (continuous inverse-CDF approximation)."""
    u = rng.random(n)
    if abs(s - 1.0) < 1e-9:
        r = np.exp(u * np.log(card + 1.0))
    else:
        a = 1.0 - s
        r = ((np.power(card + 1.0, a) - 1.0) * u + 1.0) ** (1.0 / a)
    return np.clip(np.floor(r), 1, card).astype(np.int64)


def _schema_dict(spec: SyntheticSpec) -> dict[str, Any]:
    return {
        "label": "label",
        "categorical": [f"c{f + 1}" for f in range(len(spec.cardinalities))]
        + [{"name": f"m{m + 1}", "multi": True, "pooling": "mean"} for m in range(spec.multi_fields)],
        "numeric": [{"name": f"n{q + 1}", "transform": "log1p"} if spec.declare_log1p
                    else f"n{q + 1}" for q in range(spec.numeric)],
    }


class _SplitWriter:
    def __init__(self, directory: Path, rows_per_file: int, row_group_size: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.rows_per_file, self.rg = directory, rows_per_file, row_group_size
        self.writer: pq.ParquetWriter | None = None
        self.file_rows = 0
        self.n_files = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                path = self.dir / f"part-{self.n_files:05d}.parquet"
                self.writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                self.n_files += 1
                self.file_rows = 0
            take = min(table.num_rows, self.rows_per_file - self.file_rows)
            self.writer.write_table(table.slice(0, take), row_group_size=self.rg)
            self.file_rows += take
            table = table.slice(take)
            if self.file_rows >= self.rows_per_file:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def generate(spec: SyntheticSpec, out: str | Path) -> dict[str, Any]:
    """Write the train/test Parquet files, schema.yaml and stats.json; return the stats.

    Stats: ``train_rows``, ``test_rows``, ``ctr`` (test), ``bayes_auc`` and
    ``bayes_logloss`` (test split, from ``p_true``), ``seconds`` and the spec.
    """
    spec.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    planted = _Planted(spec)
    n_test = max(1, round(spec.rows * spec.test_fraction))
    n_train = spec.rows - n_test
    writers = {
        "train": _SplitWriter(out / "train", spec.rows_per_file, spec.row_group_size),
        "test": _SplitWriter(out / "test", spec.rows_per_file, spec.row_group_size),
    }
    test_labels, test_p = [], []
    done = 0
    chunk_no = 0
    while done < spec.rows:
        n = min(_CHUNK, spec.rows - done)
        rng = np.random.default_rng([spec.seed, 1, chunk_no])
        cols, logit = planted.sample(rng, n)
        p = _sigmoid(logit)
        labels = (rng.random(n) < p).astype(np.int8)
        cols["label"] = labels
        cols["p_true"] = p.astype(np.float32)
        table = pa.table(cols)
        cut = min(max(n_train - done, 0), n)
        if cut:
            writers["train"].write(table.slice(0, cut))
        if cut < n:
            writers["test"].write(table.slice(cut))
            test_labels.append(labels[cut:])
            test_p.append(p[cut:])
        done += n
        chunk_no += 1
    for w in writers.values():
        w.close()
    y = np.concatenate(test_labels)
    pt = np.concatenate(test_p)
    stats = {
        "train_rows": n_train,
        "test_rows": n_test,
        "ctr": float(y.mean()),
        "bayes_auc": auc(y, pt),
        "bayes_logloss": logloss(y, pt),
        "seconds": round(time.perf_counter() - t0, 3),
        "spec": {**asdict(spec), "cardinalities": list(spec.cardinalities)},
    }
    (out / "schema.yaml").write_text(yaml.safe_dump(_schema_dict(spec), sort_keys=False))
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m plinth.data.synthetic",
        description="Generate a synthetic CTR data set with a known Bayes-optimal AUC.",
    )
    ap.add_argument("--rows", type=int, default=100_000, help="total rows (train + test)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default=None,
                    help="a realistic log profile (overrides the field options below)")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--categorical", type=int, default=8, help="number of single-id fields")
    ap.add_argument("--cardinality-total", type=int, default=100_000,
                    help="sum of the categorical fields' cardinalities (log-spaced)")
    ap.add_argument("--cardinalities", type=str, default=None,
                    help="explicit comma-separated cardinalities (overrides the two above)")
    ap.add_argument("--multi", type=int, default=1, help="number of multi-valued fields")
    ap.add_argument("--multi-cardinality", type=int, default=10_000)
    ap.add_argument("--multi-mean-length", type=float, default=3.0)
    ap.add_argument("--numeric", type=int, default=4, help="number of numeric fields")
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of id frequencies")
    ap.add_argument("--interactions", type=int, default=6, help="planted field pairs")
    ap.add_argument("--signal", type=float, default=1.0, help="scale of all planted effects")
    ap.add_argument("--base-ctr", type=float, default=0.25)
    ap.add_argument("--test-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the stats as one JSON line")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    a = _parse_args(argv)
    try:
        if a.profile:
            spec = profile(a.profile, a.rows, a.seed, test_fraction=a.test_fraction)
        else:
            if a.cardinalities:
                cards = tuple(int(x) for x in a.cardinalities.split(",") if x.strip())
            else:
                cards = default_cardinalities(a.categorical, a.cardinality_total)
            spec = SyntheticSpec(
                rows=a.rows, cardinalities=cards, multi_fields=a.multi,
                multi_cardinality=a.multi_cardinality, multi_mean_length=a.multi_mean_length,
                numeric=a.numeric, zipf=a.zipf, interactions=a.interactions, signal=a.signal,
                base_ctr=a.base_ctr, test_fraction=a.test_fraction, seed=a.seed,
            )
        stats = generate(spec, a.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({k: v for k, v in stats.items() if k != "spec"}))
    else:
        print(
            f"wrote {stats['train_rows']} train + {stats['test_rows']} test rows to {a.out} "
            f"in {stats['seconds']}s; test CTR {stats['ctr']:.4f}, Bayes-optimal AUC "
            f"{stats['bayes_auc']:.4f}, log loss {stats['bayes_logloss']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
