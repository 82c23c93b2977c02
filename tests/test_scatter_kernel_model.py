"""The numpy model of the deterministic GPU scatter kernel has numpy's bits on every case.

The model (theano_det/ops/scatter_kernel_model.py) runs the kernels' launch plan
block by block and thread by thread, with the kernels' order of additions; so
these tests check the algorithm a GPU run will execute, without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from incsubtensor_cases import CASES, DTYPES, INDEX_DTYPES, expected_result, same_bits

from theano_det.ops import scatter_kernel as sk
from theano_det.ops import scatter_kernel_model as model
from theano_det.ops.ordered_scatter import group_positions, normalize_rows
from theano_det.ops.scatter_kernel_model import emulate, td_scan


# every case through both sorts: the plan's own (td_rank for these sizes) and the radix sort
SORTS = {"planned sort": None, "radix sort": 0}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("sort", SORTS)
def test_model_gives_the_bits_of_numpy(sort, case, dtype):
    x, y, idx = case.make(dtype)
    before = x.copy()
    if case.out_of_range:
        with pytest.raises(IndexError) as numpy_error:
            expected_result(x.copy(), y, idx, case.set_instead_of_inc)
        with pytest.raises(IndexError) as model_error:
            emulate(x, y, idx, case.set_instead_of_inc, rank_max=SORTS[sort])
        assert str(model_error.value) == str(numpy_error.value)
    else:
        result = emulate(x, y, idx, case.set_instead_of_inc, rank_max=SORTS[sort])
        assert same_bits(result, expected_result(x, y, idx, case.set_instead_of_inc))
    assert same_bits(x, before)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("set_instead_of_inc", [False, True])
def test_every_index_dtype(index_dtype, set_instead_of_inc):
    rng = np.random.RandomState(5)
    low = 0 if index_dtype.startswith("uint") else -100
    idx = rng.randint(low, 100, size=1500).astype(index_dtype)
    x, y = rng.standard_normal((100, 3)).astype(np.float32), rng.standard_normal((1500, 3)).astype(np.float32)
    assert same_bits(emulate(x, y, idx, set_instead_of_inc), expected_result(x, y, idx, set_instead_of_inc))


def test_an_unsigned_index_above_int64_is_out_of_range():
    idx = np.array([1, 2 ** 64 - 1, 0], dtype=np.uint64)
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 4"):
        emulate(np.zeros((4, 2), np.float32), np.ones((3, 2), np.float32), idx)


@pytest.mark.parametrize("sort", SORTS)
def test_first_bad_is_the_smallest_bad_position_and_the_message_names_its_value(sort):
    idx = np.array([0, 3, 7, -9, 8])
    assert model.smallest_bad(model.td_row(idx, 4)[1]) == 2
    with pytest.raises(IndexError, match="^index 7 is out of bounds for axis 0 with size 4$"):
        emulate(np.zeros(4), np.ones(5), idx, rank_max=SORTS[sort])


def test_the_radix_sorts_first_bad_is_the_smallest_over_the_tiles():
    idx = np.zeros(5000, dtype=np.int64)
    idx[[4100, 3000, 1500, 4999]] = 99  # bad in tiles 4, 2, 1, 4: the first is 1500
    keys, pos, counts, tile_bad = model.td_rows_counts(idx, 10, sk.tile_count(5000), sk.RADIX)
    assert list(tile_bad) == [model.UINT32_MAX, 1500, 3000, model.UINT32_MAX, 4100]
    assert model.td_scan_first_bad(tile_bad, sk.SCAN_THREADS) == 1500
    assert model.td_scan_first_bad(np.full(3000, model.UINT32_MAX, np.uint32), sk.SCAN_THREADS) == model.UINT32_MAX
    assert keys[1500] == 0 and counts[0].sum() == 5000  # a bad position sorts as row 0
    with pytest.raises(IndexError, match="^index 99 is out of bounds for axis 0 with size 10$"):
        emulate(np.zeros(10), np.ones(5000), idx, rank_max=0)


@pytest.mark.parametrize("n_rows,n_positions", [(5, 40), (300, 2600), (70000, 5000), (1, 3)])
def test_the_sort_passes_give_the_stable_order(n_rows, n_positions):
    rng = np.random.RandomState(n_rows)
    idx = rng.randint(-n_rows, n_rows, size=n_positions)
    for kernel, blocks, threads, shift in sk.launch_plan(n_positions, n_rows, 1, rank_max=0):
        if kernel == "td_rows_counts":
            keys, pos, counts, _ = model.td_rows_counts(idx, n_rows, blocks, threads)
        elif kernel == "td_digit_counts":
            counts = model.td_digit_counts(keys, shift, blocks, threads)
        elif kernel == "td_scan":
            slots = model.td_scan(counts.ravel(), threads).reshape(counts.shape)
        elif kernel == "td_scatter":
            keys, pos = model.td_scatter(keys, pos, shift, slots, blocks, threads)
    rows = normalize_rows(idx, n_rows)
    assert np.array_equal(pos, group_positions(rows).order)
    assert np.array_equal(keys, rows[group_positions(rows).order])


@pytest.mark.parametrize("n_rows,n_positions", [(5, 40), (300, 2600), (70000, 5000), (1, 3), (3, 129)])
def test_the_rank_sort_gives_the_stable_order_in_one_launch(n_rows, n_positions):
    rng = np.random.RandomState(n_rows)
    idx = rng.randint(-n_rows, n_rows, size=n_positions)
    ((kernel, blocks, threads, _),) = sk.launch_plan(n_positions, n_rows, 0)
    assert kernel == "td_rank" and threads == sk.RANK_THREADS * sk.RANK_SPLIT
    assert blocks * sk.RANK_THREADS >= n_positions > (blocks - 1) * sk.RANK_THREADS
    keys, pos, first_bad = model.td_rank(idx, n_rows, blocks, threads)
    rows = normalize_rows(idx, n_rows)
    assert np.array_equal(pos, group_positions(rows).order)
    assert np.array_equal(keys, rows[group_positions(rows).order])
    assert first_bad == model.UINT32_MAX


def test_the_rank_sort_finds_the_first_bad_position_and_still_fills_every_slot():
    idx = np.array([2, 9, 1, -7, 2, 5, 0])
    keys, pos, first_bad = model.td_rank(idx, 4, 1, sk.RANK_THREADS * sk.RANK_SPLIT)
    assert first_bad == 1
    assert sorted(pos) == list(range(7))  # bad positions sort as row 0, every slot written once
    assert list(keys) == [0, 0, 0, 0, 1, 2, 2]


def test_the_scan_is_exclusive_for_counts_longer_than_the_block():
    counts = np.random.RandomState(0).randint(0, 9, size=5000).astype(np.uint32)
    slots = td_scan(counts, sk.SCAN_THREADS)
    assert np.array_equal(slots, np.cumsum(counts) - counts)


# launches per call for the benchmark's problem (N = 10 000 rows, D = 256): K -> (before, now)
# before: td_rows + 3 per radix pass + td_apply for every K; now: td_rank + td_apply up to
# RANK_MAX, above 3 per radix pass (the first with the rows) + td_apply
BEFORE = 8
LAUNCHES = {1000: (7, 2), 10000: (7, 2), 16384: (7, 2), 16385: (7, 7), 100000: (7, 7)}


@pytest.mark.parametrize("k", sorted(LAUNCHES))
def test_small_k_sorts_in_one_launch_and_large_k_with_the_radix_passes(k):
    plan = sk.launch_plan(k, 10000, 256)
    assert len(plan) == LAUNCHES[k][1]
    assert len(sk.launch_plan(k, 10000, 256, rank_max=0)) == LAUNCHES[k][0]  # the radix sort alone
    if k <= sk.RANK_MAX:
        assert [step[0] for step in plan] == ["td_rank", "td_apply"] and sk.uses_rank_sort(plan)
        assert plan[0][1] * plan[0][2] >= k  # td_rank has one thread per position, no grid-stride loop
    else:
        assert not sk.uses_rank_sort(plan)


def test_the_plan_has_one_sort_pass_per_byte_of_the_largest_row():
    kernels = [step[0] for step in sk.launch_plan(100000, 10000, 256)]
    assert kernels == ["td_rows_counts", "td_scan", "td_scatter", "td_digit_counts", "td_scan", "td_scatter",
                       "td_apply"]
    assert len(kernels) == BEFORE - 1
    assert [step[0] for step in sk.launch_plan(10, 256, 1, rank_max=0)].count("td_scatter") == 1
    assert sk.launch_plan(0, 10, 4) == []
    assert "td_apply" not in [step[0] for step in sk.launch_plan(10, 10, 0)]


def test_float32_chain_is_sequential_not_a_tree():
    # 1 + 1e-8 + 1e-8 ... stays 1 at every step in float32; a tree or atomics order would not
    x = np.ones((1, 1), dtype=np.float32)
    y = np.full((3000, 1), 1e-8, dtype=np.float32)
    assert emulate(x, y, np.zeros(3000, dtype=np.int64))[0, 0] == np.float32(1)
