"""Differential fuzzing against the pure-NumPy reference (issue 6).

Hypothesis draws shapes (including empty and 0-d), memory layouts (strided,
negative strides, Fortran, non-native byte order, read-only), dtypes
(float16/32/64 and integer/bool targets), the instruction-set level,
options (weights of every broadcastable shape, pos_weight, reduction,
ignore_index, label smoothing, axis, out= including in place) and values
(moderate, extreme, subnormal, signed zeros, NaN, +-inf), then compares each
function with ``bce_fast._reference`` evaluated on the same (rounded) inputs.

Tolerances follow SEMANTICS.md: conftest's per-dtype relative tolerance for
elementwise results (a few ULP), an absolute floor of a few subnormals, an
overflow allowance at the edge of the dtype's range, ``eps * max(|p|, |y|)``
(times weights and scale) for gradients of soft targets where ``p - y``
cancels, and for the softmax family the conditioning ``1 + max |x_j - m|``
of the row shift.

Profiles: by default a bounded, derandomized run (30 fixed examples per
test, the module in well under a minute on 2 cores); set
``BCE_FAST_FUZZ_EXAMPLES=N`` for a longer run with fresh random examples
(failures are saved in .hypothesis/ and replayed first next time), e.g.::

    BCE_FAST_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -q

Failures print the drawn example and a reproduction blob.
"""
import math
import os

import numpy as np
import pytest

import bce_fast
from bce_fast import _core
from bce_fast import _reference as ref
from conftest import RED_RTOL, RTOL, with_layout

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

LONG = "BCE_FAST_FUZZ_EXAMPLES" in os.environ
MAX_EXAMPLES = int(os.environ.get("BCE_FAST_FUZZ_EXAMPLES", "30"))
# The bounded (CI) profile is derandomized: the same examples every run, so
# CI never turns red by luck; long runs explore new examples each time.
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, print_blob=True,
                derandomize=not LONG, database=None if not LONG else settings.default.database,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

FLOAT_DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)]
ISAS = [lvl for lvl in _core.ISA_LEVELS if _core.isa_supported(lvl)]
LAYOUTS = ["contiguous", "contiguous", "strided", "negstride", "fortran", "bigendian",
           "readonly", "unaligned"]


# ---------------------------------------------------------------- strategies


def _width(dtype):
    return 8 * np.dtype(dtype).itemsize


def special_values(dtype):
    fi = np.finfo(dtype)
    tiny_sub = float(fi.smallest_subnormal)
    return [0.0, -0.0, tiny_sub, -tiny_sub, float(fi.tiny), -float(fi.tiny),
            float(fi.max), -float(fi.max), np.inf, -np.inf, np.nan, 1.0, -1.0]


def logits_elements(dtype):
    w = _width(dtype)
    return st.one_of(
        st.floats(-40, 40, width=w),
        st.floats(width=w, allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from(special_values(dtype)),
    )


@st.composite
def shapes(draw, min_dims=0, max_dims=3, max_side=9):
    return draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                 max_side=max_side))


@st.composite
def laid_out(draw, arr):
    """`arr` (same values) in a drawn memory layout."""
    layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(arr, layout)


@st.composite
def broadcast_shape_to(draw, shape):
    """A shape that broadcasts to `shape` without enlarging it."""
    keep = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - keep:]
    return tuple(n if draw(st.booleans()) else 1 for n in tail)


@st.composite
def weights_for(draw, shape, dtype, allow=True):
    if not allow or draw(st.integers(0, 3)) == 0:
        return None
    kind = draw(st.sampled_from(["array", "array", "pyfloat"]))
    vals = st.one_of(st.floats(0, 10, width=_width(dtype)), st.sampled_from([0.0, 1.0, np.nan]))
    if kind == "pyfloat":
        return float(draw(vals))
    wshape = draw(broadcast_shape_to(shape))
    arr = draw(hnp.arrays(dtype, wshape, elements=vals))
    return draw(laid_out(arr))


@st.composite
def binary_targets(draw, shape, dtype):
    kind = draw(st.sampled_from(["hard", "soft", "int8", "bool"]))
    if kind == "int8":
        arr = draw(hnp.arrays(np.int8, shape, elements=st.integers(0, 1)))
    elif kind == "bool":
        arr = draw(hnp.arrays(np.bool_, shape))
    elif kind == "hard":
        arr = draw(hnp.arrays(dtype, shape, elements=st.sampled_from([0.0, 1.0])))
    else:
        arr = draw(hnp.arrays(dtype, shape, elements=st.one_of(
            st.floats(0, 1, width=_width(dtype)), st.sampled_from([0.0, 1.0, 0.5, np.nan]))))
    return draw(laid_out(arr)), kind


# ---------------------------------------------------------------- comparison


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def assert_matches(got, want, dtype, rtol=None, atol=0.0, what="result"):
    """Elementwise: NaN where the reference is NaN, equal infinities, else
    |got - want| <= rtol |want| + atol (+ a few subnormals); values at the
    edge of the dtype's range may round to inf on one side only."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    fi = np.finfo(dtype)
    rtol = RTOL[dtype] if rtol is None else rtol
    g = got.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        w_rounded = want.astype(dtype).astype(np.float64)
        tol = rtol * np.abs(w_rounded) + atol + 4 * float(fi.smallest_subnormal)
        if dtype == np.float16:
            tol = tol + 6e-8
        ok = (np.isnan(g) & np.isnan(w_rounded)) | (g == w_rounded) \
            | (np.abs(g - w_rounded) <= tol)
        edge = float(fi.max) * (1 - 8 * _eps(dtype))
        ok |= (np.abs(want) >= edge) & (np.abs(g) >= edge) & (np.sign(g) == np.sign(want))
    if not np.all(ok):
        bad = np.argwhere(~ok)[:5]
        detail = "; ".join(f"at {tuple(i)}: got {g[tuple(i)]!r}, want {want[tuple(i)]!r}"
                           for i in bad)
        raise AssertionError(f"{what}: {np.size(ok) - np.count_nonzero(ok)} of "
                             f"{np.size(ok)} elements off: {detail}")


def assert_reduced(got, want, dtype, rtol=None, what="loss", elem_overflow=False, atol=0.0):
    """`elem_overflow`: some element's loss lies beyond the dtype's range;
    it is inf in the dtype (as in PyTorch), and so is the reduction."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.generic) and got.dtype == dtype, \
        f"{what}: expected a NumPy {dtype} scalar, got {type(got).__name__}"
    want = float(want)
    g = float(got)
    if elem_overflow and np.isinf(g) and np.sign(g) == np.sign(want):
        return
    if np.isnan(want):
        assert np.isnan(g), f"{what}: got {g!r}, want nan"
        return
    if np.isinf(want) or abs(want) > float(np.finfo(dtype).max):
        # beyond the largest finite value by less than half an ULP rounds
        # to it (float16: 65504.69 -> 65504), further to inf
        with np.errstate(over="ignore"):
            rounded = float(dtype.type(want))
        assert g == want or g == rounded or (np.isinf(g) and np.sign(g) == np.sign(want)) \
            or abs(g - want) <= 1e-6 * abs(want), f"{what}: got {g!r}, want {want!r}"
        return
    rtol = max(RED_RTOL[dtype], rtol or 0.0)
    assert abs(g - want) <= rtol * abs(want) + atol + 1e-300 \
        + 8 * float(np.finfo(dtype).smallest_subnormal), \
        f"{what}: got {g!r}, want {want!r}"


def _compare(got, want, dtype, red_rtol=None, elem_overflow=False, red_atol=0.0, **kw):
    if isinstance(got, np.ndarray):
        assert_matches(got, want, dtype, **kw)
    else:
        assert_reduced(got, want, dtype, rtol=red_rtol, elem_overflow=elem_overflow,
                       atol=red_atol)


class _Isa:
    """Context: run under instruction-set level `level`."""

    def __init__(self, level):
        self.level = level

    def __enter__(self):
        self.before = bce_fast.isa()
        _core.select_isa(self.level)

    def __exit__(self, *exc):
        _core.select_isa(self.before)


def _snap(*arrays):
    return [(a, a.tobytes()) for a in arrays if isinstance(a, np.ndarray)]


def _unchanged(snap):
    for a, raw in snap:
        assert a.tobytes() == raw, "an input was modified"


# ---------------------------------------------------------------- binary


@FUZZ
@given(data=st.data())
def test_fuzz_sigmoid_log_sigmoid(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    shape = data.draw(shapes(), "shape")
    x = data.draw(hnp.arrays(dtype, shape, elements=logits_elements(dtype)), "x")
    x = data.draw(laid_out(x), "layout")
    name = data.draw(st.sampled_from(["sigmoid", "log_sigmoid"]), "fn")
    how = data.draw(st.sampled_from(["new", "out", "inplace"]), "out")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    want = getattr(ref, name)(x)
    fn = getattr(bce_fast, name)
    with _Isa(isa):
        # in place needs a writeable native array of the result dtype
        # (a non-native out= is refused with a TypeError naming out)
        if how == "inplace" and x.flags.writeable and x.dtype.isnative:
            got = fn(x, out=x)
            assert got is x
        else:
            snap = _snap(x)
            out = np.full(shape, np.nan, dtype) if how == "out" else None
            got = fn(x, out=out)
            assert out is None or got is out
            _unchanged(snap)
    assert_matches(got, want, dtype, what=name)


def _grad_atol(dtype, w, pw, scale, x_shape, extra=1.0):
    """Absolute slack of a soft-target gradient: 8 eps |w| (1 + |pw|) scale."""
    w = 1.0 if w is None else np.abs(np.asarray(w, np.float64))
    pw = 1.0 if pw is None else np.abs(np.asarray(pw, np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        a = 8 * _eps(dtype) * w * (1 + pw) * scale * extra
    return np.nan_to_num(np.broadcast_to(a, x_shape), nan=0.0, posinf=np.inf)


def _underflowed_terms(x, y, w, pw, dtype):
    """The documented exception of BCE-with-logits: its coefficients w pw y
    and w (1 - y) are formed first, as in PyTorch, and one below the dtype's
    least normal number loses digits or all of its term, even where the
    term (times |x|) would be representable.  Returns those terms' size
    per element (0 elsewhere)."""
    ld = np.longdouble
    kernel_dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32  # float16: float32
    tiny = float(np.finfo(kernel_dtype).tiny)
    X, Y = np.asarray(x, ld), np.asarray(y, ld)
    W = ld(1) if w is None else np.asarray(w, ld)
    PW = ld(1) if pw is None else np.asarray(pw, ld)
    lost = np.zeros(np.shape(x), ld)
    with np.errstate(invalid="ignore", over="ignore"):
        for coef, sp in ((np.abs(W * PW * Y), np.logaddexp(ld(0), -X)),
                         (np.abs(W * (1 - Y)), np.logaddexp(ld(0), X))):
            term = np.where((coef > 0) & (coef < tiny), coef * sp, 0)
            lost = lost + np.nan_to_num(term, nan=0.0)
    return lost.astype(np.float64)


@FUZZ
@given(data=st.data())
def test_fuzz_bce_with_logits(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    shape = data.draw(shapes(), "shape")
    x = data.draw(hnp.arrays(dtype, shape, elements=logits_elements(dtype)), "x")
    x = data.draw(laid_out(x), "x layout")
    y, ykind = data.draw(binary_targets(shape, dtype), "target")
    w = data.draw(weights_for(shape, dtype), "weight")
    pw = data.draw(weights_for(shape, dtype), "pos_weight")
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    with_grad = data.draw(st.booleans(), "grad")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    snap = _snap(x, y, w, pw)
    with _Isa(isa):
        if with_grad:
            loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
                x, y, w, pw, reduction=reduction)
        else:
            loss = bce_fast.binary_cross_entropy_with_logits(x, y, w, pw, reduction=reduction)
    _unchanged(snap)
    want = ref.binary_cross_entropy_with_logits(x, y, w, pw, reduction=reduction)
    each = ref.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none")
    with np.errstate(invalid="ignore"):
        overflow = bool(np.any(np.abs(each) > float(np.finfo(dtype).max)))
    lost = _underflowed_terms(x, y, w, pw, dtype)
    n = max(int(np.prod(shape)), 1)
    red_atol = float(np.sum(lost)) / (n if reduction == "mean" else 1)
    _compare(loss, want, dtype, what="loss", elem_overflow=overflow, atol=lost,
             red_atol=red_atol)
    if with_grad:
        gwant = ref.binary_cross_entropy_with_logits_grad(x, y, w, pw, reduction=reduction)
        n = max(int(np.prod(shape)), 1)
        scale = 1.0 / n if reduction == "mean" else 1.0
        soft = ykind == "soft"
        atol = _grad_atol(dtype, w, pw, scale, shape) if soft else 0.0
        assert_matches(grad, gwant, dtype, atol=atol, what="grad")


@FUZZ
@given(data=st.data())
def test_fuzz_bce_probabilities(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    shape = data.draw(shapes(), "shape")
    w_ = _width(dtype)
    fi = np.finfo(dtype)
    p = data.draw(hnp.arrays(dtype, shape, elements=st.one_of(
        st.floats(0, 1, width=w_),
        st.sampled_from([0.0, 1.0, float(fi.smallest_subnormal), float(fi.tiny),
                         float(1 - fi.epsneg), 0.5]))), "p")
    bad = data.draw(st.sampled_from([None, None, None, np.nan, 1.5, -0.5, np.inf]), "bad")
    if bad is not None and p.size:
        p = p.copy()
        p.reshape(-1)[data.draw(st.integers(0, p.size - 1))] = bad
    p = data.draw(laid_out(p), "p layout")
    y, ykind = data.draw(binary_targets(shape, dtype), "target")
    w = data.draw(weights_for(shape, dtype), "weight")
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    with_grad = data.draw(st.booleans(), "grad")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    snap = _snap(p, y, w)
    fn = bce_fast.binary_cross_entropy_and_grad if with_grad else bce_fast.binary_cross_entropy
    y64 = np.asarray(y, np.float64)
    bad_target = bool(np.any(~((y64 >= 0) & (y64 <= 1))))   # NaN included
    if (bad is not None and p.size) or bad_target:
        # PyTorch's rule: input and target must lie in [0, 1]
        which = "input|target" if bad_target else "input"
        if not (bad is not None and p.size):
            which = "target"
        with _Isa(isa), pytest.raises(ValueError, match=which):
            fn(p, y, w, reduction=reduction)
        _unchanged(snap)
        return
    with _Isa(isa):
        res = fn(p, y, w, reduction=reduction)
    _unchanged(snap)
    loss, grad = res if with_grad else (res, None)
    _compare(loss, ref.binary_cross_entropy(p, y, w, reduction=reduction), dtype, what="loss")
    if with_grad:
        gwant = ref.binary_cross_entropy_grad(p, y, w, reduction=reduction)
        n = max(int(np.prod(shape)), 1)
        scale = 1.0 / n if reduction == "mean" else 1.0
        atol = 0.0
        if ykind == "soft":
            p64 = np.asarray(p, np.float64)
            y64 = np.nan_to_num(np.asarray(y, np.float64))
            den = np.maximum(p64 * (1 - p64), 1e-12)
            # p - y cancels: eps * max(|p|, |y|) / den, times weight and scale
            atol = _grad_atol(dtype, w, None, scale, shape,
                              extra=np.maximum(np.abs(p64), np.abs(y64)) / den)
        assert_matches(grad, gwant, dtype, atol=atol, what="grad")


@FUZZ
@given(data=st.data())
def test_fuzz_logistic_grad_hess(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    shape = data.draw(shapes(max_dims=2), "shape")
    x = data.draw(hnp.arrays(dtype, shape, elements=logits_elements(dtype)), "raw")
    x = data.draw(laid_out(x), "raw layout")
    y, ykind = data.draw(binary_targets(shape, dtype), "y")
    sw = data.draw(weights_for(shape, dtype), "sample_weight")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    with _Isa(isa):
        g, h = bce_fast.logistic_grad_hess(x, y, sw)
    gw, hw = ref.logistic_grad_hess(x, y, sw)
    atol = _grad_atol(dtype, sw, None, 1.0, shape) if ykind == "soft" else 0.0
    assert_matches(g, gw, dtype, atol=atol, what="grad")
    assert_matches(h, hw, dtype, what="hess")


# ---------------------------------------------------------------- softmax family


def _has(*names):
    missing = [n for n in names if not hasattr(bce_fast, n) or not hasattr(ref, n)]
    return pytest.mark.skipif(bool(missing), reason=f"not implemented yet: {missing}")


def softmax_logits(dtype):
    w = _width(dtype)
    return st.one_of(st.floats(-60, 60, width=w),
                     st.sampled_from([0.0, -0.0, 1.0, float(np.finfo(dtype).smallest_subnormal)]))


def _row_cond(x, axis):
    """1 + max |x_j - m| over the whole array (SEMANTICS.md's shift
    conditioning, in ULP, of softmax-family results)."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return 1.0
    m = x.max(axis=axis, keepdims=True)
    return 1.0 + float(np.max(np.abs(x - m)))


@_has("softmax", "log_softmax")
@FUZZ
@given(data=st.data())
def test_fuzz_softmax_log_softmax(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3), "shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), "axis")
    x = data.draw(hnp.arrays(dtype, shape, elements=softmax_logits(dtype)), "x")
    x = data.draw(laid_out(x), "layout")
    name = data.draw(st.sampled_from(["softmax", "log_softmax"]), "fn")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    snap = _snap(x)
    with _Isa(isa):
        got = getattr(bce_fast, name)(x, axis=axis)
    _unchanged(snap)
    want = getattr(ref, name)(x, axis=axis)
    cond = _row_cond(x, axis)
    if name == "softmax":
        assert_matches(got, want, dtype, rtol=4 * _eps(dtype) * (4 + cond), what=name)
    else:
        # log_softmax is (x - m) - log1p(s): absolute error ~ eps * |x - m|
        assert_matches(got, want, dtype, atol=4 * _eps(dtype) * (4 + cond), what=name)


@_has("cross_entropy", "nll_loss")
@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy_nll(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    C = data.draw(st.integers(1, 7), "C")
    lead = data.draw(st.sampled_from([(), (0,), (1,), (4,), (3, 2)]), "batch")
    shape = (C,) if lead == () else (lead[0], C) + lead[1:]
    x = data.draw(hnp.arrays(dtype, shape, elements=softmax_logits(dtype)), "x")
    x = data.draw(laid_out(x), "x layout")
    tshape = () if lead == () else (lead[0],) + lead[1:]
    ignore_index = data.draw(st.sampled_from([-100, -1, 0, C]), "ignore_index")
    t = data.draw(hnp.arrays(data.draw(st.sampled_from([np.int64, np.int32, np.uint8]), "tdtype"),
                             tshape,
                             elements=st.integers(0, C - 1) if ignore_index < 0
                             else st.sampled_from(list(range(C)) + [ignore_index])),
                  "target")
    if ignore_index == -100 and t.size and t.dtype != np.uint8 and data.draw(st.booleans()):
        t = t.copy()
        t.reshape(-1)[0] = -100
    weight = None
    if data.draw(st.booleans(), "weighted"):
        weight = data.draw(hnp.arrays(dtype, (C,), elements=st.floats(0, 5, width=_width(dtype))))
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    eps = data.draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]), "label_smoothing")
    name = data.draw(st.sampled_from(["cross_entropy", "nll_loss"]), "fn")
    with_grad = data.draw(st.booleans(), "grad") and hasattr(bce_fast, name + "_and_grad") \
        and hasattr(ref, name + "_grad")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction)
    if name == "cross_entropy":
        kw["label_smoothing"] = eps
    snap = _snap(x, t, weight)
    with _Isa(isa):
        got = getattr(bce_fast, name + ("_and_grad" if with_grad else ""))(x, t, **kw)
    _unchanged(snap)
    got, grad = got if with_grad else (got, None)
    tc = np.asarray(t, np.int64)
    valid = tc != ignore_index
    wv = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    den = float(np.sum(np.where(valid, wv[np.where(valid, tc, 0)], 0.0)))
    # A class-index mean does not change when every weight is scaled by one
    # power of two.  The float64 reference takes weights scaled so that the
    # counted total is near 1 (as far as the largest weight allows), where
    # its own products stay normal: with weights [1, 5e-324] and the target
    # on the second it returned 1 for log 2.
    ref_kw = kw
    if weight is not None and reduction == "mean" and den > 0:
        k = min(-math.frexp(den)[1], 1020 - math.frexp(float(wv.max()))[1])
        ref_kw = dict(kw, weight=np.ldexp(wv, k))
    want = getattr(ref, name)(x, t, **ref_kw)
    cond = _row_cond(x, 1 if len(shape) > 1 else 0)
    rtol = 8 * _eps(dtype) * (4 + cond)
    if name == "nll_loss":
        rtol = RTOL[np.dtype(dtype)]
    _compare(got, want, dtype, rtol=rtol, atol=rtol * 1e-30, red_rtol=rtol)
    if with_grad:
        _check_softmax_grad(grad, getattr(ref, name + "_grad")(x, t, **ref_kw), dtype, cond,
                            _grad_term(weight, C, reduction, den))


def _check_softmax_grad(grad, want, dtype, cond, term=1.0):
    """softmax - (smoothed) one-hot cancels (to exactly 0 for a uniform row
    and uniform target): relative tolerance with the shift conditioning,
    plus an absolute floor at the size `term` of the cancelling terms
    (max weight times the reduction's scale)."""
    tol = 8 * _eps(dtype) * (4 + cond)
    assert_matches(grad, want, dtype, rtol=tol, atol=2 * tol * term, what="grad")


def _grad_term(weight, C, reduction, den):
    """Size of the terms of a softmax-family gradient: max weight, divided
    by the 'mean' denominator."""
    wmax = 1.0 if weight is None or not np.size(weight) else \
        float(np.max(np.abs(np.asarray(weight, np.float64))))
    if reduction == "mean":
        return wmax / den if den else 0.0
    return wmax


@_has("cross_entropy")
@FUZZ
@given(data=st.data())
def test_fuzz_cross_entropy_probability_targets(data):
    dtype = data.draw(st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]), "dtype")
    C = data.draw(st.integers(1, 6), "C")
    N = data.draw(st.integers(0, 5), "N")
    x = data.draw(hnp.arrays(dtype, (N, C), elements=softmax_logits(dtype)), "x")
    raw = data.draw(hnp.arrays(dtype, (N, C), elements=st.floats(0, 1, width=_width(dtype))))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    p = np.nan_to_num(p, nan=1.0 / C).astype(dtype)
    p = data.draw(laid_out(p), "target layout")
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    eps = data.draw(st.sampled_from([0.0, 0.2]), "label_smoothing")
    with_grad = data.draw(st.booleans(), "grad") and hasattr(ref, "cross_entropy_grad")
    snap = _snap(x, p)
    fn = bce_fast.cross_entropy_and_grad if with_grad else bce_fast.cross_entropy
    got = fn(x, p, reduction=reduction, label_smoothing=eps)
    _unchanged(snap)
    got, grad = got if with_grad else (got, None)
    want = ref.cross_entropy(x, p, reduction=reduction, label_smoothing=eps)
    cond = _row_cond(x, 1)
    rtol = 8 * _eps(dtype) * (4 + cond)
    _compare(got, want, dtype, rtol=rtol, red_rtol=rtol)
    if with_grad:
        _check_softmax_grad(grad, ref.cross_entropy_grad(x, p, reduction=reduction,
                                                         label_smoothing=eps), dtype, cond,
                            _grad_term(None, C, reduction, N))


@_has("softmax_grad_hess")
@FUZZ
@given(data=st.data())
def test_fuzz_softmax_grad_hess(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), "dtype")
    n = data.draw(st.integers(0, 6), "n")
    K = data.draw(st.integers(1, 6), "K")
    raw = data.draw(hnp.arrays(dtype, (n, K), elements=softmax_logits(dtype)), "raw")
    raw = data.draw(laid_out(raw), "raw layout")
    y = data.draw(hnp.arrays(data.draw(st.sampled_from([np.int64, np.int8, np.float64])),
                             (n,), elements=st.integers(0, K - 1)), "y")
    sw = None
    if data.draw(st.booleans(), "weighted"):
        sw = data.draw(hnp.arrays(dtype, (n,), elements=st.floats(0, 5, width=_width(dtype))))
    isa = data.draw(st.sampled_from(ISAS), "isa")
    snap = _snap(raw, y, sw)
    with _Isa(isa):
        g, h = bce_fast.softmax_grad_hess(raw, y, sw)
    _unchanged(snap)
    gw, hw = ref.softmax_grad_hess(raw, y, sw)
    cond = _row_cond(raw, 1)
    _check_softmax_grad(g, gw, dtype, cond, _grad_term(sw, K, "sum", 1))
    tol = 8 * _eps(dtype) * (4 + cond)
    assert_matches(h, hw, dtype, rtol=tol, atol=tol * 1e-30, what="hess")


# ---------------------------------------------------------------- found by fuzzing


def test_bce_grad_subnormal_probability():
    """Found by fuzzing: w * (p - y) underflowed before the division."""
    p = np.array([np.finfo(np.float32).smallest_subnormal], np.float32)
    y = np.zeros(1, np.float32)
    _, g = bce_fast.binary_cross_entropy_and_grad(p, y, 1.5, reduction="none")
    want = ref.binary_cross_entropy_grad(p, y, 1.5, reduction="none")
    assert_matches(g, want, np.float32, what="grad")


@_has("cross_entropy", "softmax", "log_softmax")
@FUZZ
@given(data=st.data())
def test_fuzz_row_kernel_wide_rows(data):
    """Rows of 33-300 classes: the row kernel (groups of rows, a padded last
    vector, tiles of 256 classes), with ties of the row maximum, ignored
    rows, weights, smoothing and probability targets."""
    dtype = data.draw(st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]), "dtype")
    N = data.draw(st.integers(0, 19), "N")
    C = data.draw(st.sampled_from([33, 40, 47, 64, 65, 100, 200, 255, 256, 257, 300])
                  | st.integers(33, 300), "C")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    scale = data.draw(st.sampled_from([0.1, 3.0, 30.0]), "scale")
    x = rng.standard_normal((N, C)) * scale
    if N and data.draw(st.booleans(), "ties"):
        rows = rng.integers(0, N, 3)
        x[rows, rng.integers(0, C, 3)] = x[rows].max(axis=1)
    x = x.astype(dtype)
    name = data.draw(st.sampled_from(["softmax", "log_softmax", "index", "probability"]), "fn")
    isa = data.draw(st.sampled_from(ISAS), "isa")
    cond = _row_cond(x, 1)
    tol = 8 * _eps(dtype) * (4 + cond)
    if name in ("softmax", "log_softmax"):
        with _Isa(isa):
            got = getattr(bce_fast, name)(x, axis=1)
        want = getattr(ref, name)(x, axis=1)
        if name == "softmax":
            assert_matches(got, want, dtype, rtol=tol / 2, what=name)
        else:
            assert_matches(got, want, dtype, atol=tol / 2, what=name)
        return
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]), "reduction")
    eps = data.draw(st.sampled_from([0.0, 0.0, 0.1]), "label_smoothing")
    weight = None
    if data.draw(st.booleans(), "weighted"):
        weight = rng.uniform(0.25, 4.0, C).astype(dtype)
    if name == "index":
        target = rng.integers(0, C, N)
        target[rng.uniform(size=N) < 0.2] = -100
        kw = dict(weight=weight, label_smoothing=eps, reduction=reduction)
        valid = target != -100
        wv = np.ones(C) if weight is None else weight.astype(np.float64)
        den = float(np.sum(wv[target[valid]]))
    else:
        raw = rng.uniform(size=(N, C))
        target = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
        kw = dict(label_smoothing=eps, reduction=reduction)
        den = float(N)
    with_grad = data.draw(st.booleans(), "grad")
    snap = _snap(x, target, weight)
    with _Isa(isa):
        fn = bce_fast.cross_entropy_and_grad if with_grad else bce_fast.cross_entropy
        got = fn(x, target, **kw)
    _unchanged(snap)
    got, grad = got if with_grad else (got, None)
    _compare(got, ref.cross_entropy(x, target, **kw), dtype, rtol=tol, atol=tol * 1e-30,
             red_rtol=tol)
    if with_grad:
        _check_softmax_grad(grad, ref.cross_entropy_grad(x, target, **kw), dtype, cond,
                            _grad_term(kw.get("weight"), C, reduction, den))
