"""Feature hashing: determinism, field separation, no collisions within a field, strings."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plinth.sparse.hashing import hash_ints, hash_strings, hash_values, missing_id, mix64


def test_ints_are_deterministic_and_salted_by_field():
    raw = np.arange(1000)
    a = hash_ints(raw, "user")
    assert a.dtype == np.int64 and a.shape == (1000,)
    np.testing.assert_array_equal(a, hash_ints(raw, "user"))
    b = hash_ints(raw, "item")
    assert not np.intersect1d(a, b).size  # another field gives another id space


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), unique=True, max_size=200))
def test_distinct_ints_never_collide_within_a_field(values):
    ids = hash_ints(np.array(values, dtype=np.int64), "f")
    assert len(np.unique(ids)) == len(values)


def test_int_widths_and_signs_agree_on_the_same_value():
    np.testing.assert_array_equal(
        hash_ints(np.array([1, 2, 3], dtype=np.int32), "f"),
        hash_ints(np.array([1, 2, 3], dtype=np.uint64), "f"),
    )


def test_mix64_is_a_bijection_on_a_sample():
    x = np.arange(-5000, 5000)
    assert len(np.unique(mix64(x))) == len(x)


def test_strings_from_lists_and_arrow_agree_and_nulls_get_the_missing_id():
    vals = ["a", "b", "", "héllo", None, "a"]
    ids = hash_strings(vals, "city")
    assert ids[0] == ids[5] and len(set(ids[:4].tolist())) == 4
    assert ids[4] == missing_id("city")
    np.testing.assert_array_equal(ids, hash_strings(pa.array(vals), "city"))
    np.testing.assert_array_equal(ids, hash_strings(pa.array(vals, pa.large_string()), "city"))
    # a sliced Arrow array (non-zero offset) hashes its own elements
    np.testing.assert_array_equal(hash_strings(pa.array(vals)[1:3], "city"), ids[1:3])
    chunked = pa.chunked_array([pa.array(vals[:2]), pa.array(vals[2:])])
    np.testing.assert_array_equal(hash_strings(chunked, "city"), ids)


def test_string_ids_differ_from_int_ids_and_by_field():
    assert hash_strings(["1"], "f")[0] != hash_ints([1], "f")[0]
    assert hash_strings(["x"], "f")[0] != hash_strings(["x"], "g")[0]


def test_hash_values_dispatches_by_type():
    np.testing.assert_array_equal(hash_values(np.array([4, 5]), "f"), hash_ints([4, 5], "f"))
    np.testing.assert_array_equal(hash_values(pa.array([4, 5]), "f"), hash_ints([4, 5], "f"))
    np.testing.assert_array_equal(hash_values(pa.array(["x"]), "f"), hash_strings(["x"], "f"))
    with pytest.raises(TypeError, match="integer"):
        hash_ints(np.array([1.5]), "f")
