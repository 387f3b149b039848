"""Parquet reader: batching across row groups, conversion, resume, prefetch, bad data."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plinth.data.reader import DataError, ParquetReader, table_to_batch
from plinth.data.schema import Schema
from plinth.sparse.hashing import hash_ints, hash_strings


def _write(tmp_path, n=1000, files=2, rg=128):
    paths = []
    per = n // files
    for f in range(files):
        i = np.arange(f * per, (f + 1) * per)
        t = pa.table({
            "u": i % 37,
            "tags": pa.array([[int(x), int(x) + 1] if x % 3 else [] for x in i],
                             pa.list_(pa.int64())),
            "city": pa.array([None if x % 5 == 0 else f"c{x % 7}" for x in i]),
            "x": (i * 0.5).astype(np.float64),
            "y": (i % 2).astype(np.int8),
        })
        p = tmp_path / f"part-{f}.parquet"
        pq.write_table(t, p, row_group_size=rg)
        paths.append(p)
    return paths


SCHEMA = Schema.from_dict({
    "label": "y",
    "categorical": ["u", {"name": "tags", "multi": True}, "city"],
    "numeric": [{"name": "x", "transform": "log1p"}],
})


def test_batches_cover_every_row_in_order(tmp_path):
    _write(tmp_path)
    r = ParquetReader(str(tmp_path / "*.parquet"), SCHEMA, batch_size=300)
    batches = list(r.iter_epoch(0))
    assert [b.size for b in batches] == [300, 300, 300, 100] and len(r) == 4
    ids = np.concatenate([b.sample_ids for b in batches])
    np.testing.assert_array_equal(ids, np.arange(1000))
    b = batches[0]
    b.validate()
    np.testing.assert_array_equal(b.sparse["u"].values, hash_ints(np.arange(300) % 37, "u"))
    tags = b.sparse["tags"]
    assert tags.to_lists()[0] == [] and tags.to_lists()[1] == hash_ints([1, 2], "tags").tolist()
    city = b.sparse["city"]
    assert city.lengths[0] == 0 and city.lengths[1] == 1  # null -> empty slot
    assert city.values[0] == hash_strings(["c1"], "city")[0]
    np.testing.assert_allclose(b.dense[:, 0], np.log1p(np.arange(300) * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(b.labels, np.arange(300) % 2)
    assert r.state() == {"epoch": 0, "sample": 1000}


def test_resume_from_a_position_gives_the_same_rest(tmp_path):
    _write(tmp_path)
    full = list(ParquetReader(tmp_path, SCHEMA, batch_size=64).iter_epoch(1))
    r = ParquetReader(tmp_path, SCHEMA, batch_size=64)
    it = r.iter_epoch(1)
    for _ in range(5):
        next(it)
    state = r.state()
    it.close()  # stops the prefetch thread
    assert state == {"epoch": 1, "sample": 320}
    rest = list(ParquetReader(tmp_path, SCHEMA, batch_size=64).iter_epoch(1, state["sample"]))
    np.testing.assert_array_equal(
        np.concatenate([b.sample_ids for b in rest]),
        np.concatenate([b.sample_ids for b in full])[320:],
    )
    np.testing.assert_array_equal(rest[0].sparse.values(), full[5].sparse.values())


def test_shuffled_row_group_order_is_seeded_per_epoch(tmp_path):
    _write(tmp_path)

    def order(epoch):
        r = ParquetReader(tmp_path, SCHEMA, 128, shuffle_row_groups=True, seed=1)
        return np.concatenate([b.labels for b in r.iter_epoch(epoch)]).tolist(), [
            int(b.dense[0, 0] * 1000) for b in r.iter_epoch(epoch)
        ]

    assert order(0) == order(0)
    assert order(0)[1] != order(1)[1]


def test_bad_data_gets_clear_errors(tmp_path):
    _write(tmp_path)
    with pytest.raises(DataError, match="lacks columns"):
        ParquetReader(tmp_path, Schema.from_dict({"label": "y", "categorical": ["nope"]}), 10)
    with pytest.raises(DataError, match="does not exist"):
        ParquetReader(tmp_path / "missing", SCHEMA, 10)
    with pytest.raises(DataError, match="no files match"):
        ParquetReader(str(tmp_path / "*.csv"), SCHEMA, 10)
    t = pa.table({"u": [1, 2], "tags": [[1], [2]], "city": ["a", "b"], "x": [1.0, 2.0],
                  "y": [0, 1]})
    with pytest.raises(DataError, match="multi: true"):
        table_to_batch(t, Schema.from_dict({"label": "y", "categorical": ["tags"]}))
    with pytest.raises(DataError, match="list it under `numeric`"):
        table_to_batch(t, Schema.from_dict({"label": "y", "categorical": ["x"]}))
    bad = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"u": [1, 2], "y": [0.0, 3.0]}), bad)
    r = ParquetReader(bad, Schema.from_dict({"label": "y", "categorical": ["u"]}), 2)
    with pytest.raises(DataError, match=r"labels must be finite and in \[0, 1\]"):
        list(r.iter_epoch(0))
