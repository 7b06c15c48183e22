"""Forward results of sigmoid, log_sigmoid and the binary cross-entropies
against the pure-NumPy float64 reference (bce_fast._reference), across
dtype x reduction x size x layout, plus argument handling: broadcasting of
weight / pos_weight, out=, dtype rules, error messages, determinism across
threads and runs, every ISA level, threadpoolctl, and the doctests."""
import doctest

import numpy as np
import pytest
from conftest import (DTYPE_IDS, DTYPES, LAYOUTS, assert_close, assert_reduced_close,
                      check_layout, with_layout)

import bce_fast
from bce_fast import _reference as ref

REDUCTIONS = ["none", "mean", "sum"]
SIZES = [0, 1, 7, 1000]
LOSSES = ["bce", "bce_logits"]
MAPS = ["sigmoid", "log_sigmoid"]

FAST = {
    "sigmoid": bce_fast.sigmoid,
    "log_sigmoid": bce_fast.log_sigmoid,
    "bce": bce_fast.binary_cross_entropy,
    "bce_logits": bce_fast.binary_cross_entropy_with_logits,
}
SLOW = {
    "sigmoid": ref.sigmoid,
    "log_sigmoid": ref.log_sigmoid,
    "bce": ref.binary_cross_entropy,
    "bce_logits": ref.binary_cross_entropy_with_logits,
}


def make_inputs(fn, shape, dtype, rng):
    """(input, target, weight) of `shape` and `dtype` for `fn`: logits spread
    over both tails, probabilities including exact 0 and 1, soft and hard
    targets, positive weights.  target/weight are None for the maps."""
    n = int(np.prod(shape))
    if fn in MAPS or fn == "bce_logits":
        x = rng.normal(scale=8.0, size=n)
    else:
        x = rng.uniform(size=n)
        x[rng.uniform(size=n) < 0.05] = 0.0
        x[rng.uniform(size=n) < 0.05] = 1.0
    x = x.astype(dtype).reshape(shape)
    if fn in MAPS:
        return x, None, None
    y = rng.uniform(size=n)
    hard = rng.uniform(size=n) < 0.5
    y[hard] = np.round(y[hard])
    y = y.astype(dtype).reshape(shape)
    w = rng.uniform(0.5, 2.0, size=n).astype(dtype).reshape(shape)
    return x, y, w


def call(fn, x, y=None, w=None, **kw):
    if fn in MAPS:
        return FAST[fn](x, **kw)
    return FAST[fn](x, y, weight=w, **kw)


def reference(fn, x, y=None, w=None, reduction="none", **kw):
    if fn in MAPS:
        return SLOW[fn](x)
    return SLOW[fn](x, y, weight=w, reduction=reduction, **kw)


def check(fn, got, expected, dtype, reduction="none"):
    if reduction == "none" or fn in MAPS:
        assert isinstance(got, np.ndarray)
        assert_close(got, expected, dtype)
    else:
        assert_reduced_close(got, expected, dtype)


# ------------------------------------------------- function x dtype x size


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", MAPS)
def test_map_matches_reference(fn, dtype, size, rng):
    x, _, _ = make_inputs(fn, (size,), dtype, rng)
    check(fn, call(fn, x), reference(fn, x), dtype)


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", LOSSES)
def test_loss_matches_reference(fn, dtype, reduction, size, rng):
    x, y, w = make_inputs(fn, (size,), dtype, rng)
    check(fn, call(fn, x, y, reduction=reduction), reference(fn, x, y, reduction=reduction),
          dtype, reduction)
    check(fn, call(fn, x, y, w, reduction=reduction),
          reference(fn, x, y, w, reduction=reduction), dtype, reduction)


@pytest.mark.parametrize("fn, dtype, reduction", [
    ("sigmoid", np.float32, "none"),
    ("bce_logits", np.float32, "mean"),
    ("bce", np.float64, "sum"),
    ("bce_logits", np.float64, "none"),
], ids=["sigmoid-f32", "bce_logits-f32-mean", "bce-f64-sum", "bce_logits-f64-none"])
def test_large_matches_reference(fn, dtype, reduction, rng):
    x, y, w = make_inputs(fn, (10**6,), dtype, rng)
    kw = {} if fn in MAPS else {"reduction": reduction}
    check(fn, call(fn, x, y, w, **kw), reference(fn, x, y, w, **kw), dtype, reduction)


def test_empty_reductions_follow_pytorch():
    for fn in LOSSES:
        for dtype in DTYPES:
            x = np.zeros(0, dtype)
            mean = call(fn, x, x, reduction="mean")
            total = call(fn, x, x, reduction="sum")
            assert mean.dtype == dtype and np.isnan(mean)
            assert total.dtype == dtype and total == 0
            assert call(fn, x, x, reduction="none").shape == (0,)
    assert bce_fast.sigmoid(np.zeros((3, 0))).shape == (3, 0)


# ----------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_layouts(fn, dtype, layout, rng):
    """Every argument in the same non-trivial layout; 2-D so that Fortran
    order differs from C order."""
    x, y, w = make_inputs(fn, (7, 13), dtype, rng)
    args = [None if a is None else with_layout(a, layout) for a in (x, y, w)]
    for a in args:
        if a is not None:
            check_layout(a, layout)
    reduction = "none"
    got = call(fn, *args) if fn in MAPS else call(fn, *args, reduction=reduction)
    assert got.shape == (7, 13) and got.dtype == dtype and got.dtype.isnative
    check(fn, got, reference(fn, x, y, w), dtype)
    if fn in LOSSES:
        check(fn, call(fn, *args, reduction="sum"), reference(fn, x, y, w, reduction="sum"),
              dtype, "sum")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_zero_dim(fn, dtype, rng):
    x, y, w = make_inputs(fn, (1,), dtype, rng)
    args = [None if a is None else with_layout(a, "0d") for a in (x, y, w)]
    got = call(fn, *args) if fn in MAPS else call(fn, *args, reduction="none")
    assert got.shape == ()
    check(fn, got, reference(fn, x, y, w).reshape(()), dtype)
    if fn in LOSSES:
        check(fn, call(fn, *args), reference(fn, x, y, w, reduction="mean"), dtype, "mean")


def test_mixed_layouts_and_array_likes(rng):
    x, y, w = make_inputs("bce_logits", (6, 5), np.float64, rng)
    got = bce_fast.binary_cross_entropy_with_logits(
        with_layout(x, "negstride"), y.tolist(), weight=with_layout(w, "bigendian"),
        pos_weight=[1.0, 2.0, 3.0, 4.0, 5.0], reduction="none")
    assert_close(got, ref.binary_cross_entropy_with_logits(
        x, y, w, np.arange(1.0, 6.0), reduction="none"), np.float64)
    assert_close(bce_fast.sigmoid([-1.0, 0.0, 2.5]), ref.sigmoid([-1.0, 0.0, 2.5]), np.float64)
    s = bce_fast.sigmoid(0.5)
    assert s.shape == () and s.dtype == np.float64
    assert_close(s, ref.sigmoid(0.5), np.float64)


@pytest.mark.parametrize("fn", MAPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_map_fast_path_equals_general_path(fn, dtype, rng):
    """A canonical operand (ndarray, C-contiguous, aligned, native float32 or
    float64, non-empty) skips the argument handling in _core.map_canonical;
    the result must be the general path's bit for bit, in a new array or in a
    canonical `out` of x's dtype and shape (x itself included), and every
    other operand or `out` must fall through to the general path."""
    from bce_fast import _core
    kind = {"sigmoid": _core.KIND_SIGMOID, "log_sigmoid": _core.KIND_LOG_SIGMOID}[fn]
    x = make_inputs(fn, (37, 29), dtype, rng)[0]
    fast = _core.map_canonical(kind, x)
    assert fast is not None and fast.dtype == x.dtype and fast.shape == x.shape
    assert not np.shares_memory(fast, x)
    general = FAST[fn](x, out=with_layout(np.empty_like(x), "strided"))  # general path
    assert fast.tobytes() == general.tobytes()
    out = np.empty_like(x)
    assert _core.map_canonical(kind, x, out) is out and out.tobytes() == general.tobytes()
    inplace = x.copy()
    assert _core.map_canonical(kind, inplace, inplace) is inplace
    assert inplace.tobytes() == general.tobytes()
    flat = np.empty(x.size + 1, x.dtype)
    readonly = np.empty_like(x)
    readonly.flags.writeable = False
    for bad in [np.empty_like(x, np.float16 if dtype == np.float64 else np.float64),
                np.empty((29, 37), x.dtype), readonly, np.asfortranarray(np.empty_like(x)),
                np.empty_like(x).view(np.matrix)]:
        assert _core.map_canonical(kind, x, bad) is None
    for a, o in [(flat[1:].reshape(x.shape), flat[:-1].reshape(x.shape)),
                 (flat[:-1].reshape(x.shape), flat[1:].reshape(x.shape))]:
        a[...] = x
        assert _core.map_canonical(kind, a, o) is None        # partial overlap
    assert FAST[fn](x).tobytes() == general.tobytes()
    unaligned = np.frombuffer(b"\0" + x.tobytes(), dtype=x.dtype, offset=1).reshape(x.shape)
    for other in [x[:, ::2], x.T, x.astype(x.dtype.newbyteorder()), x.tolist(),
                  x.view(np.matrix), x[:0], x.astype(np.float16), unaligned]:
        assert _core.map_canonical(kind, other) is None
    assert FAST[fn](unaligned).tobytes() == general.tobytes()
    assert FAST[fn](x.T).tobytes() == general.T.copy().tobytes()


@pytest.mark.parametrize("fn", LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_loss_fast_path_equals_general_path(fn, dtype, rng):
    """Unweighted losses of canonical operands (and logistic_grad_hess) run
    through _core.binary_canonical; every reduction, with and without the
    gradient, must equal the general path bit for bit (there reached by
    passing the target as a strided view), also into an `out` apart from the
    operands, and other operands must fall through (in place included)."""
    from bce_fast import _core
    x, y, _ = make_inputs(fn, (23, 11), dtype, rng)
    kind = {"bce": _core.KIND_BCE, "bce_logits": _core.KIND_BCE_LOGITS}[fn]
    with_grad = {"bce": bce_fast.binary_cross_entropy_and_grad,
                 "bce_logits": bce_fast.binary_cross_entropy_with_logits_and_grad}[fn]
    ync = np.repeat(y, 2, axis=-1)[:, ::2]                 # same values, not contiguous
    codes = {"none": _core.REDUCTION_NONE, "mean": _core.REDUCTION_MEAN,
             "sum": _core.REDUCTION_SUM}
    for reduction, code in codes.items():
        fast = _core.binary_canonical(kind, x, y, code, False)
        general = FAST[fn](x, ync, reduction=reduction)
        assert type(fast) is type(general) and fast.tobytes() == general.tobytes()
        fast_l, fast_g = _core.binary_canonical(kind, x, y, code, True)
        gen_l, gen_g = with_grad(x, ync, reduction=reduction)
        assert fast_l.tobytes() == gen_l.tobytes() and fast_g.tobytes() == gen_g.tobytes()
        assert with_grad(x, y, reduction=reduction)[1].tobytes() == gen_g.tobytes()
    for other_x, other_y in ((x, y.astype(np.float16)), (x[:, ::2], y[:, ::2]),
                             (x, y[:, :5]), (x[:0], y[:0]), (x.tolist(), y)):
        assert _core.binary_canonical(kind, other_x, other_y, codes["mean"], False) is None
    # out: the unreduced loss alone, into an array apart from both operands
    general = FAST[fn](x, ync, reduction="none")
    out = np.empty_like(x)
    assert _core.binary_canonical(kind, x, y, codes["none"], False, out) is out
    assert out.tobytes() == general.tobytes()
    assert FAST[fn](x, y, reduction="none", out=np.empty_like(x)).tobytes() == general.tobytes()
    for code, grad, o in ((codes["mean"], False, out), (codes["none"], True, out),
                          (codes["none"], False, x.copy().T), (codes["none"], False, x),
                          (codes["none"], False, y), (codes["none"], False, out.astype(np.float16))):
        assert _core.binary_canonical(kind, x, y, code, grad, o) is None
    if fn == "bce_logits":
        g, h = _core.binary_canonical(_core.KIND_GRAD_HESS, x, y, codes["none"], True)
        gg, hh = bce_fast.logistic_grad_hess(x, ync)
        assert g.tobytes() == gg.tobytes() and h.tobytes() == hh.tobytes()
    else:
        bad = x.copy()
        bad[0, 0] = 2
        with pytest.raises(ValueError):
            _core.binary_canonical(kind, bad, y, codes["mean"], False)


def test_native_inputs_are_not_copied(rng):
    """C-contiguous native inputs of the compute dtype are read in place and
    a reduced loss allocates nothing of the input's size (SEMANTICS.md)."""
    import tracemalloc
    x, y, w = make_inputs("bce_logits", (500, 400), np.float64, rng)
    p, _, _ = make_inputs("bce", (500, 400), np.float32, rng)
    y32 = y.astype(np.float32)
    pw = np.linspace(0.5, 2.0, 400)
    calls = [
        lambda: bce_fast.binary_cross_entropy_with_logits(x, y, w[:1], pw, reduction="sum"),
        lambda: bce_fast.binary_cross_entropy_with_logits(x, y, reduction="mean"),
        lambda: bce_fast.binary_cross_entropy(p, y32, reduction="mean"),
        lambda: bce_fast.sigmoid(p, out=p),
    ]
    for f in calls:
        f()
        tracemalloc.start()
        try:
            f()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, f"peak allocation {peak} bytes for a {x.nbytes}-byte input"


class _DLPackOnly:
    """An array-like that offers only the DLPack protocol (as JAX arrays and
    others do), no ``__array__``."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_only_inputs_are_accepted(rng):
    x, y, w = make_inputs("bce_logits", (6, 4), np.float32, rng)
    assert not hasattr(_DLPackOnly(x), "__array__")
    got = bce_fast.binary_cross_entropy_with_logits(_DLPackOnly(x), _DLPackOnly(y),
                                                    _DLPackOnly(w), reduction="none")
    np.testing.assert_array_equal(got, bce_fast.binary_cross_entropy_with_logits(
        x, y, w, reduction="none"))
    np.testing.assert_array_equal(bce_fast.sigmoid(_DLPackOnly(x)), bce_fast.sigmoid(x))
    with pytest.raises(TypeError, match="^input: expected a floating-point array"):
        bce_fast.binary_cross_entropy(_DLPackOnly(np.arange(3)), y[0, :3])


# ------------------------------------------------------ dtypes and casting


@pytest.mark.parametrize("ydtype", [np.bool_, np.int8, np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("fn", LOSSES)
def test_integer_and_bool_targets_are_cast(fn, ydtype, rng):
    x, _, _ = make_inputs(fn, (50,), np.float32, rng)
    yi = (rng.uniform(size=50) < 0.5).astype(ydtype)
    got = call(fn, x, yi, reduction="none")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, call(fn, x, yi.astype(np.float32), reduction="none"))
    wi = np.arange(50, dtype=np.int64) % 3
    assert_close(call(fn, x, yi, wi, reduction="none"),
                 reference(fn, x, yi, wi, reduction="none"), np.float32)


@pytest.mark.parametrize("xdtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_input_raises_type_error(xdtype):
    xi = np.ones(4, dtype=xdtype)
    y = np.ones(4)
    for f in (bce_fast.sigmoid, bce_fast.log_sigmoid):
        with pytest.raises(TypeError, match="expected a floating-point array"):
            f(xi)
    for f in (bce_fast.binary_cross_entropy, bce_fast.binary_cross_entropy_with_logits,
              bce_fast.binary_cross_entropy_and_grad,
              bce_fast.binary_cross_entropy_with_logits_and_grad):
        with pytest.raises(TypeError, match=r"^input: expected a floating-point array, "
                                            rf"got dtype {np.dtype(xdtype)}$"):
            f(xi, y)
    with pytest.raises(TypeError, match="raw: expected a floating-point array"):
        bce_fast.logistic_grad_hess(xi, y)


def test_non_numeric_target_and_weight_raise_type_error():
    x = np.zeros(3)
    with pytest.raises(TypeError, match="target: expected a real numeric array"):
        bce_fast.binary_cross_entropy_with_logits(x, np.zeros(3, complex))
    with pytest.raises(TypeError, match="weight: expected a real numeric array"):
        bce_fast.binary_cross_entropy(x, x, weight=np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="pos_weight"):
        bce_fast.binary_cross_entropy_with_logits(x, x, pos_weight=np.zeros(3, complex))


def test_result_dtype_rules():
    x32 = np.zeros(3, np.float32)
    # Python floats are weak: a float32 loss stays float32.
    assert bce_fast.binary_cross_entropy_with_logits(x32, x32, weight=0.5).dtype == np.float32
    assert bce_fast.binary_cross_entropy_with_logits(x32, x32, pos_weight=2.0,
                                                     reduction="none").dtype == np.float32
    # float16 computes in float32 and returns float16.
    x16 = np.zeros(3, np.float16)
    assert bce_fast.binary_cross_entropy(x16 + 0.5, x16, reduction="sum").dtype == np.float16
    assert bce_fast.sigmoid(x16).dtype == np.float16
    # Mixed float arrays follow np.result_type.
    assert bce_fast.binary_cross_entropy_with_logits(
        x32, x32, weight=np.ones(3), reduction="none").dtype == np.float64


# ------------------------------------------------ weight and pos_weight


WEIGHT_SHAPES = [
    ((5, 4), ()),
    ((5, 4), (4,)),
    ((5, 4), (1, 4)),
    ((5, 4), (5, 1)),
    ((5, 4), (5, 4)),
    ((3, 4, 6), (6,)),
    ((3, 4, 6), (4, 1)),
    ((3, 4, 6), (1, 4, 1)),
    ((3, 4, 6), (3, 1, 6)),    # not one affine run per row: materialised
    ((3, 4, 6), (3, 4, 1)),
    ((3, 4, 6), (3, 4, 6)),
    ((300, 7), (7,)),          # rows longer than one tile in total
    ((2, 700), (2, 1)),        # a row longer than one 256-element tile
]


@pytest.mark.parametrize("shape, wshape", WEIGHT_SHAPES,
                         ids=[f"{s}-w{w}".replace(" ", "") for s, w in WEIGHT_SHAPES])
@pytest.mark.parametrize("fn", LOSSES)
def test_weight_broadcasting(fn, shape, wshape, rng):
    x, y, _ = make_inputs(fn, shape, np.float64, rng)
    w = rng.uniform(0.5, 2.0, size=wshape)
    for reduction in REDUCTIONS:
        check(fn, call(fn, x, y, w, reduction=reduction),
              reference(fn, x, y, w, reduction=reduction), np.float64, reduction)
    # A strided weight view takes the same path as its contiguous copy.
    if w.ndim:
        ws = with_layout(w, "strided")
        check(fn, call(fn, x, y, ws, reduction="none"), reference(fn, x, y, w), np.float64)


def test_weight_cases_cover_every_side_path():
    """Guard on the cases above: they reach each way the kernel reads a side
    array (one value, a contiguous full array, a row pattern, and a
    pattern that must be materialised)."""
    from bce_fast._validation import Side
    kinds = set()
    for shape, wshape in WEIGHT_SHAPES:
        side = Side(np.ones(wshape), shape)
        materialised = side.arr.shape != wshape
        kinds.add("materialised" if materialised else side.kind)
    assert kinds == {"scalar", "full", "rows", "materialised"}
    assert Side(np.ones((3, 1, 6)), (3, 4, 6)).arr.shape == (3, 4, 6)


POS_WEIGHT_CASES = [
    ((5, 4), (4,), None),
    ((5, 4), (4,), (5, 1)),
    ((5, 4), (4,), (4,)),
    ((5, 4), (5, 4), None),
    ((5, 4), (1,), ()),
    ((3, 4, 6), (6,), (3, 1, 6)),
    ((3, 4, 6), (4, 1), (6,)),    # different rows: one side is materialised
    ((3, 4, 6), (3, 4, 6), (3, 4, 1)),
]


@pytest.mark.parametrize("shape, pwshape, wshape", POS_WEIGHT_CASES,
                         ids=[f"{s}-pw{p}-w{w}".replace(" ", "") for s, p, w in POS_WEIGHT_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_pos_weight_broadcasting(shape, pwshape, wshape, dtype, rng):
    x, y, _ = make_inputs("bce_logits", shape, dtype, rng)
    pw = rng.uniform(0.5, 4.0, size=pwshape).astype(dtype)
    w = None if wshape is None else rng.uniform(0.5, 2.0, size=wshape).astype(dtype)
    for reduction in REDUCTIONS:
        got = bce_fast.binary_cross_entropy_with_logits(x, y, w, pw, reduction=reduction)
        check("bce_logits", got, ref.binary_cross_entropy_with_logits(
            x, y, w, pw, reduction=reduction), dtype, reduction)


@pytest.mark.parametrize("fn", LOSSES)
def test_weight_may_not_enlarge_input(fn):
    x = np.full((5, 4), 0.5)
    for wshape in [(2, 5, 4), (3,), (5, 3), (4, 5)]:
        with pytest.raises(ValueError, match=r"^weight: shape \(.*\) does not broadcast "
                                             r"to the input shape \(5, 4\)$"):
            call(fn, x, x, np.ones(wshape))
    with pytest.raises(ValueError, match=r"^pos_weight: shape \(5,\) does not broadcast"):
        bce_fast.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(5))


@pytest.mark.parametrize("fn", LOSSES)
def test_target_shape_must_match(fn):
    x = np.full((5, 4), 0.5)
    with pytest.raises(ValueError, match=r"^target: expected shape \(5, 4\) \(the shape "
                                         r"of input\), got \(4,\)$"):
        call(fn, x, np.ones(4))
    with pytest.raises(ValueError, match="target: expected shape"):
        call(fn, x, np.ones((4, 5)))


# --------------------------------------------------------------------- out=


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_out_is_filled_and_returned(fn, dtype, rng):
    x, y, w = make_inputs(fn, (4, 9), dtype, rng)
    expected = reference(fn, x, y, w)
    for out in (np.full((4, 9), np.nan, dtype), with_layout(np.zeros((4, 9), dtype), "strided"),
                with_layout(np.zeros((4, 9), dtype), "fortran"),
                with_layout(np.zeros((4, 9), dtype), "negstride")):
        kw = {"out": out} if fn in MAPS else {"out": out, "reduction": "none"}
        got = call(fn, x, y, w, **kw)
        assert got is out
        assert_close(out, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_out_in_place(fn, dtype, rng):
    x, y, w = make_inputs(fn, (1000,), dtype, rng)
    expected = reference(fn, x, y, w)
    buf = x.copy()
    kw = {"out": buf} if fn in MAPS else {"out": buf, "reduction": "none"}
    assert call(fn, buf, y, w, **kw) is buf
    assert_close(buf, expected, dtype)
    if fn in LOSSES:       # in place over the target, and over a strided input
        buf = y.copy()
        assert call(fn, x, buf, w, out=buf, reduction="none") is buf
        assert_close(buf, expected, dtype)
    xs = with_layout(x, "strided")
    kw["out"] = xs
    assert call(fn, xs, y, w, **kw) is xs
    assert_close(xs, expected, dtype)


@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_out_partial_overlap_raises(fn):
    buf = np.full(11, 0.5)
    x, y = buf[:10], np.full(10, 0.5)
    kw = {} if fn in MAPS else {"reduction": "none"}
    with pytest.raises(ValueError, match="^out: overlaps an input"):
        call(fn, x, y, out=buf[1:], **kw)
    with pytest.raises(ValueError, match="^out: overlaps an input"):
        call(fn, buf[::2][:5], y[:5], out=buf[:5], **kw)
    np.testing.assert_array_equal(buf, 0.5)
    if fn in LOSSES:
        w = np.full(11, 2.0)
        with pytest.raises(ValueError, match="^out: overlaps an input"):
            call(fn, x, y, w[1:], out=w[:10], reduction="none")
    # Interleaved views share a buffer but no element: allowed.
    b2 = np.full(20, 0.5)
    call(fn, b2[::2], y, out=b2[1::2], **kw)
    assert_close(b2[1::2], reference(fn, b2[::2], y), np.float64)


@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_out_errors(fn):
    x = np.full((3, 4), 0.5)
    kw = {} if fn in MAPS else {"reduction": "none"}
    with pytest.raises(ValueError, match=r"^out: expected shape \(3, 4\), got \(4, 3\)$"):
        call(fn, x, x, out=np.empty((4, 3)), **kw)
    with pytest.raises(TypeError, match="^out: expected dtype float64, got float32$"):
        call(fn, x, x, out=np.empty((3, 4), np.float32), **kw)
    ro = np.empty((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out: array is read-only$"):
        call(fn, x, x, out=ro, **kw)
    with pytest.raises(TypeError, match="^out: expected a numpy.ndarray, got list"):
        call(fn, x, x, out=[[0.0] * 4] * 3, **kw)
    if fn in LOSSES:
        with pytest.raises(ValueError, match="^out: only used with reduction='none', got "
                                             "reduction='mean'$"):
            call(fn, x, x, out=np.empty((3, 4)))


# ----------------------------------------------------- inputs not modified


@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_inputs_are_not_modified(fn, rng):
    x, y, w = make_inputs(fn, (40, 30), np.float32, rng)
    pw = np.linspace(0.5, 2, 30, dtype=np.float32)
    saved = [a.copy() for a in (x, y, w, pw) if a is not None]
    if fn in MAPS:
        call(fn, x)
    else:
        extra = {"pos_weight": pw} if fn == "bce_logits" else {}
        for reduction in REDUCTIONS:
            FAST[fn](x, y, w, reduction=reduction, **extra)
        grad_fn = (bce_fast.binary_cross_entropy_with_logits_and_grad if fn == "bce_logits"
                   else bce_fast.binary_cross_entropy_and_grad)
        grad_fn(x, y, w, reduction="none", grad_output=y, **extra)
        bce_fast.logistic_grad_hess(x.ravel(), y.ravel() > 0.5, w.ravel())
    for a, s in zip([a for a in (x, y, w, pw) if a is not None], saved):
        np.testing.assert_array_equal(a, s)


# ------------------------------------------------ values and error messages


@pytest.mark.parametrize("bad", [1.5, -0.1, -1e-30, 1.0 + 2**-52, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_input_outside_unit_interval_raises(bad, dtype):
    p = np.full(5, 0.5, dtype)
    p[3] = bad
    if dtype == np.float32 and p[3] == 1.0:   # 1 + 2**-52 rounds to 1 in float32
        return
    y = np.zeros(5, dtype)
    msg = "^all elements of input should be between 0 and 1$"
    for reduction in REDUCTIONS:
        with pytest.raises(ValueError, match=msg):
            bce_fast.binary_cross_entropy(p, y, reduction=reduction)
    with pytest.raises(ValueError, match=msg):
        bce_fast.binary_cross_entropy_and_grad(p, y)
    big = np.full(300_001, 0.25, dtype)      # several chunks, threaded
    big[-7] = bad
    with pytest.raises(ValueError, match=msg):
        bce_fast.binary_cross_entropy(big, np.zeros_like(big), reduction="sum")


def test_bce_accepts_the_closed_interval():
    p = np.array([0.0, -0.0, 1.0, 0.5])
    y = np.array([1.0, 1.0, 0.0, 0.5])
    assert_close(bce_fast.binary_cross_entropy(p, y, reduction="none"),
                 [100.0, 100.0, 100.0, np.log(2)], np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_loss_of_a_perfect_prediction_is_plus_zero(dtype, isa):
    """A loss of 0 is +0, never -0 (the kernels carry minus the loss and
    negate only what they write out), in full tiles and a tail, with and
    without weight or gradient, for hard and soft targets."""
    n = 1000
    p = np.where(np.arange(n) % 2 == 0, 1.0, 0.0).astype(dtype)
    y = p.copy()
    p[::7] = 0.25                                   # some nonzero losses too
    soft = y.copy()
    soft[1::10] = 0.5                               # a soft target: not all 0/1
    p[1::10] = 0.5
    w = np.full(n, 2.0, dtype)
    for target in (y, soft):
        want = reference("bce", p, target, None)
        zero = want == 0
        assert zero.sum() > n // 2
        for got, scale in (
                (bce_fast.binary_cross_entropy(p, target, reduction="none"), 1),
                (bce_fast.binary_cross_entropy(p, target, weight=w, reduction="none"), 2),
                (bce_fast.binary_cross_entropy_and_grad(p, target, reduction="none")[0], 1)):
            assert_close(got, scale * want, dtype)
            assert (got[zero] == 0).all() and not np.signbit(got[zero]).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_in_place_checks_the_probabilities_before_writing(dtype):
    """-0 passes the kernel's fast range test only through the exact check
    of its tile, which must read the probabilities, not losses written over
    them (out is the input here; a loss of 100 is outside [0, 1])."""
    p = np.tile(np.array([-0.0, 0.0, 1.0, 0.25], dtype), 100)
    y = np.tile(np.array([1.0, 1.0, 0.0, 0.0], dtype), 100)
    want = reference("bce", p, y, None)
    got = bce_fast.binary_cross_entropy(p, y, reduction="none", out=p)
    assert got is p
    assert_close(p, want, dtype)


@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 1])
@pytest.mark.parametrize("fn", LOSSES)
def test_bad_reduction_message(fn, reduction):
    x = np.full(3, 0.5)
    with pytest.raises(ValueError, match=rf"^{reduction!r} is not a valid value for reduction"):
        call(fn, x, x, reduction=reduction)


def test_documented_values():
    """The values SEMANTICS.md quotes, against the reference (not the code)."""
    s = bce_fast.sigmoid(np.array([-100.0], np.float32))
    assert s[0] > 0
    assert_close(s, ref.sigmoid([-100.0]), np.float32)
    assert bce_fast.log_sigmoid(np.array([-1e4]))[0] == -1e4
    assert bce_fast.log_sigmoid(np.array([-1e4], np.float32))[0] == np.float32(-1e4)
    x = np.array([20.0, -20.0, np.inf, -np.inf], np.float32)
    y = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    got = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert_close(got, ref.binary_cross_entropy_with_logits(x, y, reduction="none"), np.float32)
    assert got[1] > 2e-9 and got[2] == 0 and got[3] == 0


def test_nan_and_inf_propagate():
    x = np.array([-np.inf, np.inf, np.nan])
    np.testing.assert_array_equal(bce_fast.sigmoid(x), [0.0, 1.0, np.nan])
    np.testing.assert_array_equal(bce_fast.log_sigmoid(x), [-np.inf, 0.0, np.nan])
    xs = np.array([np.inf, -np.inf, np.inf, -np.inf, np.nan, 0.0, np.inf])
    ys = np.array([0.0, 1.0, 1.0, 0.0, 1.0, np.nan, 0.5])
    np.testing.assert_array_equal(
        bce_fast.binary_cross_entropy_with_logits(xs, ys, reduction="none"),
        [np.inf, np.inf, 0.0, 0.0, np.nan, np.nan, np.inf])
    assert np.isnan(bce_fast.binary_cross_entropy_with_logits(xs, ys))


@pytest.mark.parametrize("n", [255, 256, 1000, 70000])
def test_float32_mean_of_losses_near_the_largest_float(n):
    """The float32 tile sums overflow for losses near FLT_MAX whose mean is
    finite (n >= 256 gave inf); such a chunk is summed again in double."""
    big = np.float32(3e38)
    x = np.full(n, big)
    y = np.zeros(n, np.float32)
    assert bce_fast.binary_cross_entropy_with_logits(x, y) == big
    assert np.isinf(bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum"))
    loss, g = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y)
    assert loss == big and np.all(g == np.float32(1 / n))
    want = np.float32(float(big) * np.log(2))
    p = np.full(n, 0.5, np.float32)
    assert bce_fast.binary_cross_entropy(p, y, weight=np.full(n, big)) == want
    # genuinely infinite losses stay so
    assert np.isinf(bce_fast.binary_cross_entropy_with_logits(np.full(n, np.inf, np.float32), y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_weight_products_at_the_edges_of_the_range(dtype):
    """pw |x| can overflow where w pw |x| does not: the coefficient w pw is
    formed first, so the loss stays finite.  The other edge is the
    documented exception (README, Numerics): a w pw below the subnormals
    may be 0, and so its term, as in PyTorch."""
    fi = np.finfo(dtype)
    x = np.array([-float(fi.max), -217.0], dtype)
    y = np.ones(2, dtype)
    tiny_w = 5.393666e-24 if dtype == np.float32 else 1e-170
    w = np.array([0.5, tiny_w], dtype)
    pw = np.array([1.8, tiny_w], dtype)
    got = bce_fast.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none")
    want0 = float(np.longdouble(0.5) * np.longdouble(dtype(1.8)) * np.longdouble(fi.max))
    np.testing.assert_allclose(float(got[0]), want0, rtol=4 * float(fi.eps))
    want1 = float(np.longdouble(w[1]) * np.longdouble(pw[1]) * 217)
    assert 0 <= float(got[1]) <= want1 + 2 * float(fi.smallest_subnormal)


# -------------------------------------------------------------- modules


def test_loss_modules(rng):
    x, y, w = make_inputs("bce", (6, 3), np.float64, rng)
    m = bce_fast.BCELoss(weight=w, reduction="sum")
    assert m(x, y) == bce_fast.binary_cross_entropy(x, y, w, reduction="sum")
    assert repr(m).startswith("BCELoss(weight=array(")
    assert m(x, y, reduction="none").shape == (6, 3)
    lg, _, _ = make_inputs("bce_logits", (6, 3), np.float64, rng)
    pw = np.array([1.0, 2.0, 3.0])
    m = bce_fast.BCEWithLogitsLoss(pos_weight=pw)
    assert repr(m) == f"BCEWithLogitsLoss(weight=None, reduction='mean', pos_weight={pw!r})"
    assert_reduced_close(m(lg, y), ref.binary_cross_entropy_with_logits(lg, y, pos_weight=pw),
                         np.float64)
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        bce_fast.BCEWithLogitsLoss(reduction="avg")(lg, y)



def test_results_past_their_dtype_are_inf_without_warnings():
    """float16 results and reduced losses past their dtype's range are inf,
    as in PyTorch, without NumPy's cast warning (an error under -W error)."""
    import warnings
    x16 = np.full(100_000, -3, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(bce_fast.binary_cross_entropy_with_logits(x16, np.ones_like(x16),
                                                                  reduction="sum"))
        _, g = bce_fast.binary_cross_entropy_and_grad(np.array([0.0, 1.0], np.float16),
                                                       np.array([1.0, 0.0], np.float16),
                                                       reduction="none")
        np.testing.assert_array_equal(g, [-np.inf, np.inf])
        x = np.zeros((100_000, 3), np.float32)
        x[:, 2] = -80
        w = np.array([1, 1, 1e36], np.float32)
        assert np.isinf(bce_fast.cross_entropy(x, np.full(100_000, 2), weight=w,
                                               reduction="sum"))


def test_loss_module_options_are_attributes(rng):
    """As on torch.nn's modules: options read and set as attributes
    (reduction, weight, ignore_index, label_smoothing, pos_weight), and
    forward()."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, 5)
    w = rng.uniform(0.5, 2.0, 4)
    m = bce_fast.CrossEntropyLoss(weight=w, label_smoothing=0.1, ignore_index=2)
    tm = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(w), label_smoothing=0.1,
                                   ignore_index=2)
    for name in ("reduction", "ignore_index", "label_smoothing"):
        assert getattr(m, name) == getattr(tm, name)
    assert m.weight is w
    m.reduction = tm.reduction = "sum"
    want = tm(torch.from_numpy(x), torch.from_numpy(t)).item()
    assert abs(m.forward(x, t) - want) <= 1e-12 * abs(want)
    assert m.options["reduction"] == "sum" and repr(m).startswith("CrossEntropyLoss(weight=")
    pw = np.array([1.0, 2.0, 3.0, 4.0])
    b = bce_fast.BCEWithLogitsLoss(pos_weight=pw)
    assert b.pos_weight is pw and b.reduction == "mean" and b.weight is None
    assert bce_fast.NLLLoss().ignore_index == -100 and bce_fast.BCELoss().reduction == "mean"


# --------------------------------------------- determinism, threads, ISAs


DET_CASES = [("bce_logits", np.float32, "mean"), ("bce", np.float64, "sum"),
             ("bce_logits", np.float64, "sum")]


@pytest.mark.parametrize("fn, dtype, reduction", DET_CASES,
                         ids=[f"{f}-{np.dtype(d).name}-{r}" for f, d, r in DET_CASES])
def test_reductions_bit_identical_across_threads_and_runs(fn, dtype, reduction, rng):
    x, y, w = make_inputs(fn, (10**6,), dtype, rng)
    before = bce_fast.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1, 2):
            bce_fast.set_num_threads(n)
            results.append(call(fn, x, y, w, reduction=reduction))
            results.append(call(fn, x, y, w, reduction=reduction))
    finally:
        bce_fast.set_num_threads(before)
    bits = {r.tobytes() for r in results}
    assert len(bits) == 1, f"results differ: {sorted(set(map(float, results)))}"
    assert_reduced_close(results[0], reference(fn, x, y, w, reduction=reduction), dtype)


def test_elementwise_identical_across_threads(threads, rng):
    x, y, w = make_inputs("bce_logits", (300_000,), np.float32, rng)
    got = bce_fast.binary_cross_entropy_with_logits(x, y, w, reduction="none")
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w, reduction="sum")
    assert_close(got, ref.binary_cross_entropy_with_logits(x, y, w, reduction="none"),
                 np.float32)
    assert_reduced_close(loss, ref.binary_cross_entropy_with_logits(x, y, w, reduction="sum"),
                         np.float32)
    assert bce_fast.get_num_threads() == threads


def test_broadcast_sides_across_chunks(threads, rng):
    """Rows of 77 straddle the 32768-element chunks of the threaded driver."""
    x, y, _ = make_inputs("bce_logits", (3000, 77), np.float64, rng)
    w = rng.uniform(0.5, 2.0, size=(3000, 1))
    pw = rng.uniform(0.5, 2.0, size=77)
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w, pw,
                                                                    reduction="none")
    assert_close(loss, ref.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none"),
                 np.float64)
    assert_close(grad, ref.binary_cross_entropy_with_logits_grad(x, y, w, pw, reduction="none"),
                 np.float64, scale=8 * w * pw)
    p, _, _ = make_inputs("bce", (3000, 77), np.float64, rng)
    assert_reduced_close(bce_fast.binary_cross_entropy(p, y, w.T[0][:77], reduction="sum"),
                         ref.binary_cross_entropy(p, y, w.T[0][:77], reduction="sum"),
                         np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_kernels_leave_long_double_arithmetic_intact(fn, dtype, isa, rng):
    """A kernel that runs MMX instructions without EMMS (gcc once spilled the
    lanes of an SSE2 integer reduction through MMX registers) leaves the x87
    unit, which long double arithmetic uses on x86, in a state where finite
    operands give NaN."""
    x, y, w = make_inputs(fn, (2, 517), dtype, rng)
    call(fn, x, y, w) if fn in MAPS else call(fn, x, y, w, reduction="none")
    z = np.asarray([1.5, -2.25, 3.0], dtype=np.longdouble)
    assert (z * z + z).tolist() == [3.75, 2.8125, 12.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_tiles_beyond_the_fast_exp_range_give_the_same_bits(dtype, isa, rng):
    """exp(-|x|) of a tile takes 2^k through the exponent bits while every
    |x| is within 86 (float32) / 707 (float64); a tile with any |x| beyond,
    inf or NaN is computed again with the clamped exp.  Each element must
    come out the same whichever way its tile went: here against the element
    computed alone (a tile of one), for x on both sides of the range's edge
    scattered through tiles of ordinary values.  Likewise BCE on
    probabilities, whose float32 tiles take the logarithm without scaling
    when every p lies in [FLT_MIN, 1), for p of 0, 1 and subnormal."""
    edge = 86.0 if dtype == np.float32 else 707.0
    x = rng.normal(scale=4.0, size=5 * 256 + 17)
    far = rng.choice(x.size, size=9, replace=False)
    x[far] = [edge, -edge, np.nextafter(edge, 1e9), -np.nextafter(edge, 1e9),
              edge + 10, -(edge + 30), np.inf, -np.inf, np.nan]
    x = x.astype(dtype)
    y = rng.uniform(size=x.size).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=x.size).astype(dtype)
    for fn in MAPS + ["bce_logits"]:       # the far elements are right, too
        check(fn, call(fn, x, y) if fn in MAPS else call(fn, x, y, reduction="none"),
              reference(fn, x, y), dtype)
    calls = {
        "sigmoid": lambda a, b, c: bce_fast.sigmoid(a),
        "log_sigmoid": lambda a, b, c: bce_fast.log_sigmoid(a),
        "bce_logits": lambda a, b, c: bce_fast.binary_cross_entropy_with_logits(
            a, b, reduction="none"),
        "bce_logits weighted": lambda a, b, c: bce_fast.binary_cross_entropy_with_logits(
            a, b, c, reduction="none"),
        "bce_logits grad": lambda a, b, c: bce_fast.binary_cross_entropy_with_logits_and_grad(
            a, b, reduction="none")[1],
    }
    pr = rng.uniform(size=x.size)
    pr[far] = [0.0, 1.0, 1e-40, 1e-310, np.finfo(dtype).tiny, 0.5, 1e-30, 1.0, 0.0]
    pr = pr.astype(dtype)           # BCE on probabilities: p in [FLT_MIN, 1) or not
    yh = np.round(y)
    check("bce", call("bce", pr, y, reduction="none"), reference("bce", pr, y), dtype)
    bce = lambda a, b, c: bce_fast.binary_cross_entropy(a, b, reduction="none")  # noqa: E731
    runs = [(name, f, (x, y, w)) for name, f in calls.items()]
    runs += [("bce hard", bce, (pr, yh, w)), ("bce soft", bce, (pr, y, w))]
    for name, f, (a, b, c) in runs:
        together = f(a, b, c)
        alone = np.concatenate([f(a[i:i + 1], b[i:i + 1], c[i:i + 1]) for i in range(a.size)])
        nan = np.isnan(alone)       # a NaN's sign bit may differ between paths
        assert np.array_equal(np.isnan(together), nan), name
        assert together[~nan].tobytes() == alone[~nan].tobytes(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fn", MAPS + LOSSES)
def test_every_isa_within_tolerance(fn, dtype, isa, rng):
    x, y, w = make_inputs(fn, (2, 517), dtype, rng)
    check(fn, call(fn, x, y, w) if fn in MAPS else call(fn, x, y, w, reduction="none"),
          reference(fn, x, y, w), dtype)
    if fn in LOSSES:
        check(fn, call(fn, x, y, w[:, :1], reduction="mean"),
              reference(fn, x, y, w[:, :1], reduction="mean"), dtype, "mean")


def test_element_functions_are_inlined():
    """The vector loops call a function per element (`sigmoid_elem`,
    `bce_elem`, ...) that must be inlined to vectorize: when gcc once left
    bce_elem_f32 out of line in one ISA build, soft-target BCE ran ten times
    slower, with every value right.  The extension's symbol table must list
    none of them (skipped without nm or without local symbols)."""
    import re
    import shutil
    import subprocess
    from bce_fast import _core
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    out = subprocess.run([nm, _core.__file__], capture_output=True, text=True).stdout
    local = [line.split()[-1] for line in out.splitlines() if " t " in line]
    if not local:
        pytest.skip("the extension has no local symbols")
    assert not [name for name in local if re.search(r"_elem_f(32|64)\b", name)]


def test_isa_selection_env_and_errors():
    import subprocess
    import sys
    from conftest import ISA_AVAILABLE
    code = "import bce_fast; print(bce_fast.isa())"
    for level in ISA_AVAILABLE + ["bogus"]:
        env = {**__import__("os").environ, "BCE_FAST_ISA": level}
        run = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        if level == "bogus":
            assert run.stdout.strip() == ISA_AVAILABLE[-1]
            assert "BCE_FAST_ISA='bogus' ignored" in run.stderr
        else:
            assert run.stdout.strip() == level
    before = bce_fast.isa()
    with pytest.raises(ValueError, match="^isa: expected one of"):
        bce_fast._core.select_isa("sse9")
    for level in bce_fast._core.ISA_LEVELS:
        if level not in ISA_AVAILABLE:
            with pytest.raises(ValueError, match=f"^isa: this CPU does not support '{level}'$"):
                bce_fast._core.select_isa(level)
    assert bce_fast.isa() == before


def test_threadpoolctl_limits_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not bce_fast._core.openmp_enabled():
        pytest.skip("built without OpenMP")
    before = bce_fast.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert bce_fast.get_num_threads() == 1
    assert bce_fast.get_num_threads() == before


def test_set_num_threads_validates():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="^n: expected an integer >= 1"):
            bce_fast.set_num_threads(bad)


# ------------------------------------------------------------- doctests


@pytest.mark.parametrize("module", ["bce_fast._binary", "bce_fast._modules", "bce_fast"])
def test_doctests(module):
    import importlib
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0
    if module == "bce_fast._binary":
        assert result.attempted >= 7


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_over_tiles_of_every_kind_in_any_order(dtype, weighted, isa, rng):
    """BCE on probabilities (its AVX-512 kernels) guesses, after a tile of
    0/1 targets or of soft ones with p in range, that the next tile is of
    the same kind, and checks it in the loop that takes its loss; a tile that
    is not (the other kind of target, -0 targets, p of 0, 1, -0 or
    subnormal, where float32 takes the scaled logarithm) is taken again the
    checked way.  Runs of each kind, of lengths that do not align with the
    tiles, in a random order, must give the reference's losses, sums and
    gradients; a bad p or target deep inside a run of good tiles must still
    raise."""
    def run(kind, n):
        p = rng.uniform(1e-4, 1 - 1e-4, n)
        y = rng.random(n) if kind.startswith("soft") else (rng.random(n) < 0.5) * 1.0
        at = rng.choice(n, size=3, replace=False)
        if kind.endswith("edges"):
            p[at] = [0.0, 1.0, 1e-40 if dtype == np.float32 else 1e-310]
        elif kind == "negative zero":
            p[at[:1]] = -0.0
        elif kind == "soft zero":
            y[at[:1]] = -0.0
        return p, y
    kinds = rng.permutation(["hard"] * 6 + ["soft"] * 4
                            + ["hard edges", "soft edges", "negative zero", "soft zero"] * 2)
    runs = [run(k, int(rng.integers(60, 1500))) for k in kinds]
    p = np.concatenate([r[0] for r in runs]).astype(dtype)
    y = np.concatenate([r[1] for r in runs]).astype(dtype)
    w = rng.uniform(0.5, 2.0, p.size).astype(dtype) if weighted else None
    check("bce", bce_fast.binary_cross_entropy(p, y, w, reduction="none"),
          reference("bce", p, y, w), dtype)
    for reduction in ("sum", "mean"):
        want = reference("bce", p, y, w, reduction=reduction)
        got = bce_fast.binary_cross_entropy(p, y, w, reduction=reduction)
        assert_reduced_close(got, want, dtype)
        loss, grad = bce_fast.binary_cross_entropy_and_grad(p, y, w, reduction=reduction)
        assert_reduced_close(loss, want, dtype)
        soft = np.abs(y - np.round(y)) > 0      # p - y cancels: an absolute floor
        scale = np.where(soft, np.maximum(np.abs(p), np.abs(y)).astype(np.float64) / (
            np.maximum(p * (1.0 - p), 1e-12)), 0.0) * (1.0 / p.size if reduction == "mean" else 1)
        assert_close(grad, ref.binary_cross_entropy_grad(p, y, w, reduction=reduction), dtype,
                     scale=4 * scale * (1 if w is None else w))
    ends = np.cumsum([r[0].size for r in runs])
    for kind in ("hard", "soft"):      # three quarters into the longest such run
        k = max((i for i in range(len(runs)) if kinds[i] == kind), key=lambda i: runs[i][0].size)
        at = ends[k] - runs[k][0].size // 4
        for bad_p, bad_y, msg in [(np.nan, 0.0, "input should be between 0 and 1"),
                                  (1.5, 1.0, "input should be between 0 and 1"),
                                  (0.5, 2.0, "target"), (0.5, np.nan, "target")]:
            pb, yb = p.copy(), y.copy()
            pb[at], yb[at] = bad_p, bad_y
            with pytest.raises(ValueError, match=msg):
                bce_fast.binary_cross_entropy(pb, yb, w, reduction="sum")
            with pytest.raises(ValueError, match=msg):
                bce_fast.binary_cross_entropy_and_grad(pb, yb, w, reduction="none")
