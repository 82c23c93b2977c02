"""The fixed-order row scatter (theano_det.ops.ordered_scatter) against numpy and plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from incsubtensor_cases import DTYPES, random_values, same_bits

from theano_det.ops.ordered_scatter import (
    group_positions,
    normalize_rows,
    radix_order_model,
    scatter_rows,
)


def add_at(x, idx, y):
    expected = x.copy()
    np.add.at(expected, idx, np.asarray(y).astype(x.dtype))
    return expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_shape", [(), (5,), (2, 3)])
def test_inc_has_the_bits_of_np_add_at(dtype, row_shape):
    rng = np.random.RandomState(1)
    x = random_values(rng, (7,) + row_shape, dtype)
    idx = rng.randint(-7, 7, size=40)  # duplicates and negative indices
    y = random_values(rng, (40,) + row_shape, dtype)
    assert same_bits(scatter_rows(x.copy(), y, idx), add_at(x, idx, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_set_keeps_the_last_duplicate_like_numpy_assignment(dtype):
    rng = np.random.RandomState(2)
    x = random_values(rng, (6, 3), dtype)
    idx = np.array([1, -5, 4, 1, 4, -2])  # rows 1 and 4 three times each
    y = random_values(rng, (6, 3), dtype)
    expected = x.copy()
    expected[idx] = y
    result = scatter_rows(x.copy(), y, idx, set_instead_of_inc=True)
    assert same_bits(result, expected)
    assert same_bits(result[1], y[3]) and same_bits(result[4], y[5])


def test_float32_sums_are_the_sequential_chain_not_a_tree():
    # 1 + 1e-8 + ... rounds back to 1 at every step in float32; a tree sum would not
    x = np.ones((1, 1), dtype=np.float32)
    y = np.full((1000, 1), 1e-8, dtype=np.float32)
    result = scatter_rows(x.copy(), y, np.zeros(1000, dtype=np.int64))
    assert result[0, 0] == np.float32(1)
    assert np.float32(1) + np.float32(y.sum(dtype=np.float32)) != np.float32(1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bitwise_equal_to_a_fixed_order_python_loop(dtype):
    rng = np.random.RandomState(3)
    x = rng.standard_normal((20, 4)).astype(dtype)
    idx = rng.randint(0, 20, size=3000)
    y = (rng.standard_normal((3000, 4)) * 1e3).astype(dtype)
    scalar = float if dtype == "float64" else np.float32  # Python floats are IEEE doubles
    expected = [[scalar(value) for value in row] for row in x]
    for k, row in enumerate(idx):
        for column in range(4):
            expected[row][column] = scalar(expected[row][column] + scalar(y[k, column]))
    assert same_bits(scatter_rows(x.copy(), y, idx), np.array(expected, dtype=dtype))


def test_long_groups_and_short_groups_give_the_same_bits_as_add_at():
    # one row gets most positions (summed by np.add.accumulate), others few (rank loop)
    rng = np.random.RandomState(4)
    idx = np.where(rng.rand(5000) < 0.9, 3, rng.randint(0, 50, size=5000))
    for x, y in [(rng.standard_normal((50, 8)).astype(np.float32),
                  rng.standard_normal((5000, 8)).astype(np.float32)),
                 (rng.standard_normal(50).astype(np.float16),
                  rng.standard_normal(5000).astype(np.float16))]:
        assert same_bits(scatter_rows(x.copy(), y, idx), add_at(x, idx, y))


def test_y_is_cast_to_x_dtype_before_adding():
    # 2**-24 + 2**-50 rounds to 2**-24 in float32; 1 + 2**-24 is then a tie, kept at 1.
    # Added in float64 first (what np.add.at does with a float64 y), it would round up.
    x = np.ones(1, dtype=np.float32)
    y = np.array([2.0 ** -24 + 2.0 ** -50])
    assert scatter_rows(x.copy(), y, [0])[0] == np.float32(1)
    wide = x.copy()
    np.add.at(wide, [0], y)
    assert wide[0] == np.float32(1 + 2.0 ** -23)
    ints = scatter_rows(np.zeros(2, dtype=np.int32), np.array([1.9, -1.9]), [0, 1])
    assert ints.tolist() == [1, -1]


@pytest.mark.parametrize("y_shape", [(), (3,), (1, 3), (5, 1)])
def test_y_broadcasts_like_theano(y_shape):
    rng = np.random.RandomState(5)
    x = rng.standard_normal((4, 3))
    idx = np.array([0, 2, 0, -1, 2])
    y = rng.standard_normal(y_shape)
    expected = add_at(x, idx, np.broadcast_to(y, (5, 3)))
    assert same_bits(scatter_rows(x.copy(), y, idx), expected)


def test_y_that_does_not_broadcast_raises_theanos_value_error():
    with pytest.raises(ValueError, match="^array is not broadcastable to correct shape$"):
        scatter_rows(np.zeros((4, 3)), np.ones((2, 3)), [0, 1, 2])


@pytest.mark.parametrize("idx, bad", [([0, 4, 1], 4), ([0, -5, 9], -5), ([3, -4, 7, 2], 7)])
def test_out_of_range_raises_numpys_index_error_and_writes_nothing(idx, bad):
    x = np.arange(8.0).reshape(4, 2)
    out = x.copy()
    with pytest.raises(IndexError, match="^index %d is out of bounds for axis 0 with size 4$" % bad):
        scatter_rows(out, np.ones((len(idx), 2)), np.array(idx))
    assert same_bits(out, x)


def test_unsigned_indices_above_int64_are_out_of_range():
    with pytest.raises(IndexError, match="index 18446744073709551615 is out of bounds"):
        normalize_rows(np.array([1, 2 ** 64 - 1], dtype=np.uint64), 4)
    assert normalize_rows(np.array([3, 0], dtype=np.uint8), 4).tolist() == [3, 0]


def test_index_must_be_an_integer_vector():
    with pytest.raises(TypeError, match="index must be integers"):
        normalize_rows(np.array([0.0]), 3)
    with pytest.raises(TypeError, match="index must be vector"):
        normalize_rows(np.zeros((2, 2), dtype=np.int64), 3)


def test_empty_index_changes_nothing():
    x = np.arange(6.0).reshape(3, 2)
    assert same_bits(scatter_rows(x.copy(), np.zeros((0, 2)), np.zeros(0, dtype=np.int64)), x)


def test_groups_list_positions_in_increasing_order():
    groups = group_positions(np.array([2, 0, 2, 1, 0, 2]))
    assert groups.rows.tolist() == [0, 1, 2]
    assert groups.counts.tolist() == [2, 1, 3]
    assert groups.order.tolist() == [1, 4, 3, 0, 2, 5]
    assert groups.starts.tolist() == [0, 2, 3]


@settings(max_examples=150, deadline=None)
@given(
    n_rows=st.integers(1, 12),
    row_shape=st.sampled_from([(), (1,), (3,), (2, 2)]),
    dtype=st.sampled_from(DTYPES),
    set_instead_of_inc=st.booleans(),
    data=st.data(),
)
def test_matches_numpy_on_random_problems(n_rows, row_shape, dtype, set_instead_of_inc, data):
    idx = np.array(data.draw(st.lists(st.integers(-n_rows, n_rows - 1), max_size=60)), dtype=np.int64)
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.RandomState(seed)
    x = random_values(rng, (n_rows,) + row_shape, dtype)
    y = random_values(rng, (len(idx),) + row_shape, dtype)
    if set_instead_of_inc:
        expected = x.copy()
        expected[idx] = y
    else:
        expected = add_at(x, idx, y)
    assert same_bits(scatter_rows(x.copy(), y, idx, set_instead_of_inc), expected)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.integers(0, 5000), max_size=300),
    tile=st.sampled_from([1, 7, 32, 1024]),
    digit_bits=st.sampled_from([1, 3, 8]),
)
def test_the_planned_radix_sort_gives_the_stable_order(rows, tile, digit_bits):
    rows = np.array(rows, dtype=np.int64)
    expected = group_positions(rows).order
    assert radix_order_model(rows, tile=tile, digit_bits=digit_bits).tolist() == expected.tolist()
