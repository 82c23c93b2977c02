"""DetAdvancedIncSubtensor1 compiled by Theano 1.0.5 (CPU), against numpy and Theano's own op."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from incsubtensor_cases import DTYPES, random_values, same_bits, theano_names

from theano_det.ops.incsubtensor_rewrite import register_inplace_rewrite

theano = T = AdvancedIncSubtensor1 = DetAdvancedIncSubtensor1 = None  # set by the fixture below


@pytest.fixture(autouse=True)
def imported_theano(isolated_home):
    globals().update(theano_names())


@functools.lru_cache(maxsize=None)
def compiled(op_class, x_dtype, x_ndim, y_dtype, y_ndim, set_instead_of_inc, index_dtype="int64"):
    """theano.function(x, y, idx) -> op(x, y, idx), compiled once per signature."""
    x = T.TensorType(x_dtype, (False,) * x_ndim)()
    y = T.TensorType(y_dtype, (False,) * y_ndim)()
    idx = T.vector(dtype=index_dtype)
    out = op_class(set_instead_of_inc=set_instead_of_inc)(x, y, idx)
    function = theano.function([x, y, idx], out)
    assert op_class in [type(node.op) for node in function.maker.fgraph.toposort()]
    return function


def run(op_class, x, y, idx, set_instead_of_inc=False):
    idx = np.asarray(idx)
    function = compiled(op_class, str(x.dtype), x.ndim, str(y.dtype), y.ndim,
                        set_instead_of_inc, str(idx.dtype))
    return function(x, y, idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_shape", [(), (4,)])
@pytest.mark.parametrize("set_instead_of_inc", [False, True])
def test_same_bits_as_numpy_and_as_theanos_op(dtype, row_shape, set_instead_of_inc):
    rng = np.random.RandomState(10)
    x = random_values(rng, (9,) + row_shape, dtype)
    idx = rng.randint(-9, 9, size=50)  # duplicates and negative indices
    y = random_values(rng, (50,) + row_shape, dtype)
    expected = x.copy()
    if set_instead_of_inc:
        expected[idx] = y
    else:
        np.add.at(expected, idx, y)
    ours = run(DetAdvancedIncSubtensor1, x, y, idx, set_instead_of_inc)
    assert same_bits(ours, expected)
    assert same_bits(ours, run(AdvancedIncSubtensor1, x, y, idx, set_instead_of_inc))


@pytest.mark.parametrize("y_dtype", ["float64", "int64", "float32"])
def test_a_y_of_another_dtype_is_cast_first_like_theanos_c_code(y_dtype):
    rng = np.random.RandomState(11)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = (rng.standard_normal((30, 3)) * 1e3).astype(y_dtype)
    y[0, 0] = 2.0 ** -24 + 2.0 ** -50 if y_dtype == "float64" else y[0, 0]
    idx = rng.randint(0, 6, size=30)
    ours = run(DetAdvancedIncSubtensor1, x, y, idx)
    assert same_bits(ours, run(AdvancedIncSubtensor1, x, y, idx))  # Theano's C code casts too
    expected = x.copy()
    np.add.at(expected, idx, y.astype(np.float32))
    assert same_bits(ours, expected)


@pytest.mark.parametrize("y_shape", [(), (3,), (1, 3)])
def test_y_broadcasts_over_the_indexed_rows(y_shape):
    rng = np.random.RandomState(12)
    x = rng.standard_normal((5, 3))
    y = rng.standard_normal(y_shape)
    idx = np.array([4, 0, 4, -1])
    expected = x.copy()
    np.add.at(expected, idx, np.broadcast_to(y, (4, 3)))
    assert same_bits(run(DetAdvancedIncSubtensor1, x, y, idx), expected)
    assert same_bits(run(AdvancedIncSubtensor1, x, y, idx), expected)


def test_through_theanos_inc_and_set_subtensor_helpers():
    from theano_det.ops.det_incsubtensor import det_inc_subtensor1, det_set_subtensor1

    x, y, idx = T.dmatrix(), T.dvector(), T.lvector()
    function = theano.function([x, y, idx], [det_inc_subtensor1(x, y, idx), det_set_subtensor1(x, y, idx),
                                             T.inc_subtensor(x[idx], y), T.set_subtensor(x[idx], y)])
    rng = np.random.RandomState(13)
    ours_inc, ours_set, stock_inc, stock_set = function(rng.standard_normal((4, 2)),
                                                        rng.standard_normal(2), [1, 1, -4, 2])
    assert same_bits(ours_inc, stock_inc) and same_bits(ours_set, stock_set)


@pytest.mark.parametrize("idx", [[0, 5], [-6, 1], [2, 3, 100]])
def test_out_of_range_raises_the_same_index_error_as_theano(idx):
    x = np.zeros((5, 2), dtype=np.float32)
    y = np.ones((len(idx), 2), dtype=np.float32)
    with pytest.raises(IndexError) as ours:
        run(DetAdvancedIncSubtensor1, x, y, np.array(idx))
    with pytest.raises(IndexError) as stock:
        run(AdvancedIncSubtensor1, x, y, np.array(idx))
    first_line = str(stock.value).splitlines()[0]
    assert first_line.startswith("index ") and "out of bounds for axis 0 with size 5" in first_line
    assert str(ours.value).splitlines()[0] == first_line


def test_a_y_that_does_not_broadcast_raises_the_same_value_error_as_theano():
    x, y, idx = np.zeros((5, 2)), np.ones((3, 2)), np.array([0, 1])
    with pytest.raises(ValueError) as ours:
        run(DetAdvancedIncSubtensor1, x, y, idx)
    with pytest.raises(ValueError) as stock:
        run(AdvancedIncSubtensor1, x, y, idx)
    assert str(ours.value).splitlines()[0] == str(stock.value).splitlines()[0]


@pytest.mark.parametrize("types, message", [
    (("dmatrix", "dmatrix", "dvector"), "index must be integers"),
    (("dmatrix", "dmatrix", "lmatrix"), "index must be vector"),
    (("dscalar", "dscalar", "lvector"), "cannot index into a scalar"),
    (("dvector", "dmatrix", "lvector"), "cannot increment x subtensor with ndim=1 by y with ndim=2"),
])
def test_make_node_refuses_what_theano_refuses(types, message):
    x, y, idx = (getattr(T, name)() for name in types)
    with pytest.raises(TypeError, match=message):
        DetAdvancedIncSubtensor1()(x, y, idx)
    with pytest.raises(TypeError):
        AdvancedIncSubtensor1()(x, y, idx)


def compiled_inplace(set_instead_of_inc=False):
    """A function whose DetAdvancedIncSubtensor1 Theano made inplace (x is mutable)."""
    register_inplace_rewrite()  # idempotent; only acts on DetAdvancedIncSubtensor1 nodes
    x, y, idx = T.dmatrix(), T.dmatrix(), T.lvector()
    function = theano.function([theano.In(x, mutable=True), y, idx],
                               DetAdvancedIncSubtensor1(set_instead_of_inc=set_instead_of_inc)(x, y, idx))
    (node,) = function.maker.fgraph.toposort()
    assert node.op == DetAdvancedIncSubtensor1(inplace=True, set_instead_of_inc=set_instead_of_inc)
    return function


@pytest.mark.parametrize("set_instead_of_inc", [False, True])
def test_the_inplace_variant_writes_into_x(set_instead_of_inc):
    op = DetAdvancedIncSubtensor1(inplace=True, set_instead_of_inc=set_instead_of_inc)
    assert op.destroy_map == {0: [0]} and not getattr(DetAdvancedIncSubtensor1(), "destroy_map", {})
    assert op == DetAdvancedIncSubtensor1(set_instead_of_inc=set_instead_of_inc).clone_inplace()
    function = compiled_inplace(set_instead_of_inc)
    rng = np.random.RandomState(14)
    x_value, y_value, idx_value = rng.standard_normal((4, 3)), rng.standard_normal((6, 3)), [3, 0, 3, -1, 2, 0]
    expected = x_value.copy()
    if set_instead_of_inc:
        expected[idx_value] = y_value
    else:
        np.add.at(expected, idx_value, y_value)
    result = function(x_value, y_value, idx_value)
    assert same_bits(result, expected)
    assert same_bits(x_value, expected)  # destroyed: the input array itself was written


def test_the_inplace_variant_writes_nothing_on_a_bad_index():
    function = compiled_inplace()
    x_value = np.arange(6.0).reshape(3, 2)
    with pytest.raises(IndexError):
        function(x_value, np.ones((2, 2)), [0, 3])
    assert same_bits(x_value, np.arange(6.0).reshape(3, 2))


def test_an_input_that_is_not_mutable_is_not_written():
    register_inplace_rewrite()
    x, y, idx = T.dmatrix(), T.dmatrix(), T.lvector()
    function = theano.function([x, y, idx], DetAdvancedIncSubtensor1()(x, y, idx))
    x_value = np.zeros((2, 2))
    assert function(x_value, np.ones((1, 2)), [1]).tolist() == [[0, 0], [1, 1]]
    assert not x_value.any()


@pytest.mark.parametrize("set_instead_of_inc", [False, True])
@pytest.mark.parametrize("y_shape", [(5, 3), (3,)])
def test_gradients_equal_theanos(set_instead_of_inc, y_shape):
    x, idx = T.dmatrix(), T.lvector()
    y = T.TensorType("float64", (False,) * len(y_shape))()
    weights = T.dmatrix()

    def cost(out):
        return (out * weights).sum() + (out ** 2).sum()

    ours = DetAdvancedIncSubtensor1(set_instead_of_inc=set_instead_of_inc)(x, y, idx)
    stock = AdvancedIncSubtensor1(set_instead_of_inc=set_instead_of_inc)(x, y, idx)
    function = theano.function([x, y, idx, weights],
                               theano.grad(cost(ours), [x, y]) + theano.grad(cost(stock), [x, y]))
    rng = np.random.RandomState(15)
    values = function(rng.standard_normal((4, 3)), rng.standard_normal(y_shape),
                      [1, 3, 1, -1, 0], rng.standard_normal((4, 3)))
    assert np.abs(values[0]).sum() > 0 and np.abs(values[1]).sum() > 0
    assert same_bits(values[0], values[2]) and same_bits(values[1], values[3])


def test_gradient_of_an_integer_x_is_zero():
    x, y, idx = T.lmatrix(), T.lmatrix(), T.lvector()
    out = DetAdvancedIncSubtensor1()(x, y, idx)
    gx, gy = theano.grad(out.sum() * 1.0, [x, y], disconnected_inputs="ignore")
    values = theano.function([x, y, idx], [gx, gy], on_unused_input="ignore")(
        np.ones((2, 2), dtype=np.int64), np.ones((1, 2), dtype=np.int64), [0])
    assert all(not value.any() for value in values)


def test_numeric_gradient():
    rng = np.random.RandomState(16)
    theano.gradient.verify_grad(
        lambda x, y: DetAdvancedIncSubtensor1()(x, y, np.array([2, 0, 2])) ** 2,
        [rng.standard_normal((3, 2)), rng.standard_normal((3, 2))], rng=rng)


def test_r_op_equals_theanos():
    x, y, idx = T.dmatrix(), T.dmatrix(), T.lvector()
    x_direction, y_direction = T.dmatrix(), T.dmatrix()
    ours = theano.Rop(DetAdvancedIncSubtensor1()(x, y, idx), [x, y], [x_direction, y_direction])
    stock = theano.Rop(AdvancedIncSubtensor1()(x, y, idx), [x, y], [x_direction, y_direction])
    function = theano.function([x, y, idx, x_direction, y_direction], [ours, stock],
                               on_unused_input="ignore")
    rng = np.random.RandomState(17)
    a, b = function(rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), [0, 2, 0, 1],
                    rng.standard_normal((3, 2)), rng.standard_normal((4, 2)))
    assert same_bits(a, b)


def test_shape_is_inferred_without_running_the_op():
    x, y, idx = T.dmatrix(), T.dmatrix(), T.lvector()
    function = theano.function([x, y, idx], DetAdvancedIncSubtensor1()(x, y, idx).shape,
                               on_unused_input="ignore")
    assert DetAdvancedIncSubtensor1 not in [type(node.op) for node in function.maker.fgraph.toposort()]
    assert function(np.zeros((7, 3)), np.zeros((1, 3)), [5]).tolist() == [7, 3]


def test_reproducible_bit_for_bit_against_a_fixed_order_float64_loop():
    rng = np.random.RandomState(18)
    x = rng.standard_normal((30, 5))
    idx = rng.randint(0, 30, size=4000)
    y = rng.standard_normal((4000, 5)) * np.logspace(-8, 8, 4000)[:, None]  # order matters here
    expected = x.tolist()
    for k, row in enumerate(idx):  # Python floats: IEEE doubles, one addition at a time
        expected[row] = [total + value for total, value in zip(expected[row], y[k].tolist())]
    results = [run(DetAdvancedIncSubtensor1, x, y, idx) for _ in range(3)]
    assert all(same_bits(result, np.array(expected)) for result in results)
    other_order = x.copy()
    np.add.at(other_order, idx[::-1], y[::-1])
    assert not same_bits(other_order, np.array(expected))  # the data is sensitive to the order


@settings(max_examples=60, deadline=None)
@given(
    n_rows=st.integers(1, 10),
    x_ndim=st.sampled_from([1, 2]),
    dtype=st.sampled_from(["float16", "float32", "float64", "int32", "uint8"]),
    set_instead_of_inc=st.booleans(),
    data=st.data(),
)
def test_matches_theano_on_random_problems(n_rows, x_ndim, dtype, set_instead_of_inc, data):
    idx = np.array(data.draw(st.lists(st.integers(-n_rows, n_rows - 1), max_size=40)), dtype=np.int64)
    columns = data.draw(st.integers(0, 4))
    rng = np.random.RandomState(data.draw(st.integers(0, 2 ** 32 - 1)))
    row_shape = (columns,) if x_ndim == 2 else ()
    x = random_values(rng, (n_rows,) + row_shape, dtype)
    y = random_values(rng, (len(idx),) + row_shape, dtype)
    ours = run(DetAdvancedIncSubtensor1, x, y, idx, set_instead_of_inc)
    assert same_bits(ours, run(AdvancedIncSubtensor1, x, y, idx, set_instead_of_inc))
