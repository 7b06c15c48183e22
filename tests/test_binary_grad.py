"""Gradients of the binary losses (``*_and_grad``) and ``logistic_grad_hess``:
against the float64 reference formulas, against central finite differences
of the reference loss in float64, against scikit-learn's HalfBinomialLoss,
and their argument handling (grad_out=, grad_output=, errors)."""
import numpy as np
import pytest
from conftest import (DTYPE_IDS, DTYPES, LAYOUTS, assert_close, assert_reduced_close,
                      with_layout)

import bce_fast
from bce_fast import _reference as ref

REDUCTIONS = ["none", "mean", "sum"]
SIZES = [0, 1, 7, 1000]


def make(kind, shape, dtype, rng, soft=True):
    n = int(np.prod(shape))
    if kind == "bce_logits":
        x = rng.normal(scale=6.0, size=n)
    else:   # away from 0 and 1 so PyTorch's 1e-12 clamp of p(1-p) is not hit
        x = rng.uniform(0.02, 0.98, size=n)
    y = rng.uniform(size=n) if soft else (rng.uniform(size=n) < 0.5) * 1.0
    w = rng.uniform(0.5, 2.0, size=n)
    return tuple(a.astype(dtype).reshape(shape) for a in (x, y, w))


FAST = {"bce_logits": bce_fast.binary_cross_entropy_with_logits_and_grad,
        "bce": bce_fast.binary_cross_entropy_and_grad}
LOSS = {"bce_logits": bce_fast.binary_cross_entropy_with_logits,
        "bce": bce_fast.binary_cross_entropy}
REF_LOSS = {"bce_logits": ref.binary_cross_entropy_with_logits,
            "bce": ref.binary_cross_entropy}
REF_GRAD = {"bce_logits": ref.binary_cross_entropy_with_logits_grad,
            "bce": ref.binary_cross_entropy_grad}


def grad_scale(kind, x, y, w, reduction):
    """Absolute floor for soft-target gradients, where p - y cancels
    (SEMANTICS.md: 4 eps max(|p|, |y|) absolute), times the weight and the
    mean's 1/n.  For BCE on probabilities the 1/(p(1-p)) factor scales it."""
    p = ref.sigmoid(x) if kind == "bce_logits" else np.asarray(x, np.float64)
    s = np.maximum(np.abs(p), np.abs(np.asarray(y, np.float64))) * np.asarray(w, np.float64)
    if kind == "bce":
        s = s / np.maximum(p * (1 - p), 1e-12)
    if reduction == "mean" and np.size(x):
        s = s / np.size(x)
    return 4 * s


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_grad_matches_reference(kind, dtype, reduction, size, rng):
    x, y, w = make(kind, (size,), dtype, rng)
    loss, grad = FAST[kind](x, y, w, reduction=reduction)
    expected = REF_LOSS[kind](x, y, w, reduction=reduction)
    if reduction == "none":
        assert_close(loss, expected, dtype)
    else:
        assert_reduced_close(loss, expected, dtype)
    # The loss of the fused call is the loss of the plain call.
    np.testing.assert_array_equal(loss, LOSS[kind](x, y, w, reduction=reduction))
    assert_close(grad, REF_GRAD[kind](x, y, w, reduction=reduction), dtype,
                 scale=grad_scale(kind, x, y, w, reduction))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_grad_layouts(kind, layout, rng):
    x, y, w = make(kind, (9, 11), np.float32, rng)
    args = [with_layout(a, layout) for a in (x, y, w)]
    loss, grad = FAST[kind](*args, reduction="mean")
    assert grad.shape == (9, 11) and grad.dtype == np.float32 and grad.dtype.isnative
    assert_close(grad, REF_GRAD[kind](x, y, w, reduction="mean"), np.float32,
                 scale=grad_scale(kind, x, y, w, "mean"))


def test_grad_zero_dim(rng):
    x, y, w = make("bce_logits", (1,), np.float64, rng)
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x.reshape(()), y.reshape(()), w.reshape(()), reduction="sum")
    assert grad.shape == ()
    assert_close(grad, REF_GRAD["bce_logits"](x, y, w, reduction="sum").reshape(()),
                 np.float64)


@pytest.mark.parametrize("shape, wshape, pwshape", [
    ((6, 5), (5,), (5,)),
    ((6, 5), (6, 1), (6, 5)),
    ((3, 4, 5), (3, 1, 5), (5,)),
    ((3, 4, 5), (4, 1), (1,)),
], ids=["w(C)-pw(C)", "w(N,1)-pw(full)", "w(N,1,D)-pw(D)", "w(C,1)-pw(1)"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_grad_weight_pos_weight_broadcasting(shape, wshape, pwshape, reduction, rng):
    x, y, _ = make("bce_logits", shape, np.float64, rng)
    w = rng.uniform(0.5, 2.0, size=wshape)
    pw = rng.uniform(0.5, 3.0, size=pwshape)
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, y, w, pw, reduction=reduction)
    expected = ref.binary_cross_entropy_with_logits_grad(x, y, w, pw, reduction=reduction)
    assert_close(grad, expected, np.float64,
                 scale=4 * np.broadcast_to(w * pw, shape) / (x.size if reduction == "mean" else 1))


# ------------------------------------------------------- finite differences


def central_difference(f, x, h):
    """Elementwise derivative of the per-element loss f by central
    differences, in float64 (each element's loss depends only on it)."""
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("soft", [True, False], ids=["soft", "hard"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_weight_of_ones_gives_the_unweighted_bits(kind, dtype, soft, rng):
    """Without a weight the kernels skip the products by w (another code
    path); a weight of ones must give the same bits."""
    x, y, _ = make(kind, (3, 700), dtype, rng, soft=soft)
    ones = np.ones_like(x)
    l0, g0 = FAST[kind](x, y, reduction="none")
    l1, g1 = FAST[kind](x, y, weight=ones, reduction="none")
    assert l0.tobytes() == l1.tobytes() and g0.tobytes() == g1.tobytes()
    assert l0.tobytes() == LOSS[kind](x, y, weight=ones, reduction="none").tobytes()
    assert l0.tobytes() == LOSS[kind](x, y, reduction="none").tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_far_tail_leaves_the_other_elements_alone(dtype, rng):
    """Where exp(-|x|) is subnormal (|x| > 87 / 708) a weighted tile is
    finished element by element from its inputs: the other elements keep
    their bits, and outputs that are inputs (in place) change nothing."""
    x, y, w = make("bce_logits", (3, 300), dtype, rng)
    pw = rng.uniform(0.5, 3.0, size=x.shape).astype(dtype)
    big = np.array([100.0, 120.0, 1e30] if dtype == np.float32 else [710.0, 900.0, 1e300])
    far = x.copy()
    idx = (np.array([0, 0, 1, 1, 2, 2]), np.array([0, 255, 256, 257, 17, 299]))
    far[idx] = np.concatenate([big, -big]).astype(dtype)
    rest = np.ones(x.shape, bool)
    rest[idx] = False

    def results(v):
        return [*FAST["bce_logits"](v, y, w, pw, reduction="none"),
                *FAST["bce_logits"](v, y, reduction="none"),
                LOSS["bce_logits"](v, y, w, pw, reduction="none"),
                *bce_fast.logistic_grad_hess(v, y, sample_weight=w)]

    for a, b in zip(results(x), results(far)):
        assert a[rest].tobytes() == b[rest].tobytes()
    # in place: loss over the input, gradient over the weight (or target)
    loss, grad = FAST["bce_logits"](far, y, w, pw, reduction="none")
    xb, wb, pwb = far.copy(), w.copy(), pw.copy()
    FAST["bce_logits"](xb, y, wb, pwb, reduction="none", out=xb, grad_out=wb)
    assert xb.tobytes() == loss.tobytes() and wb.tobytes() == grad.tobytes()
    xb, yb, wb = far.copy(), y.copy(), w.copy()
    FAST["bce_logits"](xb, yb, wb, pw, reduction="none", out=yb, grad_out=xb)
    assert yb.tobytes() == loss.tobytes() and xb.tobytes() == grad.tobytes()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_grad_matches_finite_differences(kind, reduction, rng):
    x, y, w = make(kind, (400,), np.float64, rng)
    if kind == "bce_logits":
        x = rng.normal(scale=3.0, size=400)
        pw = rng.uniform(0.5, 3.0, size=400)
        def f(v):
            return ref.binary_cross_entropy_with_logits(v, y, w, pw, reduction="none")
        kw = {"pos_weight": pw}
    else:
        pw = None
        def f(v):
            return ref.binary_cross_entropy(v, y, w, reduction="none")
        kw = {}
    h = 1e-6 * np.maximum(1.0, np.abs(x)) if kind == "bce_logits" else 1e-7 * np.ones_like(x)
    fd = central_difference(f, x, h)
    if reduction == "mean":
        fd = fd / x.size
    _, grad = FAST[kind](x, y, w, reduction=reduction, **kw)
    # Truncation O(h^2 f''') and rounding O(eps f / h): ~1e-8 relative.
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


def test_grad_output_is_the_upstream_gradient(rng):
    x, y, w = make("bce_logits", (8, 3), np.float64, rng)
    g = rng.normal(size=(8, 3))
    g_row = np.array([1.0, -2.0, 0.5])
    base = ref.binary_cross_entropy_with_logits_grad(x, y, w, reduction="none")
    for up in (g, g_row, 3.0):
        _, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
            x, y, w, reduction="none", grad_output=up)
        assert_close(grad, base * np.asarray(up), np.float64, scale=np.abs(base * up) * 4)
    p, _, _ = make("bce", (8, 3), np.float64, rng)
    _, grad = bce_fast.binary_cross_entropy_and_grad(p, y, reduction="none", grad_output=g)
    assert_close(grad, ref.binary_cross_entropy_grad(p, y, reduction="none") * g, np.float64,
                 scale=grad_scale("bce", p, y, np.ones_like(y), "none") * np.abs(g))


def test_grad_out_and_in_place(rng):
    x, y, w = make("bce_logits", (50,), np.float32, rng)
    expected = ref.binary_cross_entropy_with_logits_grad(x, y, w, reduction="none")
    scale = grad_scale("bce_logits", x, y, w, "none")
    gbuf = np.empty(50, np.float32)
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, y, w, reduction="none", grad_out=gbuf)
    assert grad is gbuf
    assert_close(gbuf, expected, np.float32, scale=scale)
    # Loss over the input and gradient over the target, both in place.
    xb, yb = x.copy(), y.copy()
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        xb, yb, w, reduction="none", out=xb, grad_out=yb)
    assert loss is xb and grad is yb
    assert_close(xb, ref.binary_cross_entropy_with_logits(x, y, w, reduction="none"),
                 np.float32)
    assert_close(yb, expected, np.float32, scale=scale)
    # grad_out strided, float16 through a float32 kernel buffer
    g16 = with_layout(np.zeros(50, np.float16), "strided")
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    bce_fast.binary_cross_entropy_with_logits_and_grad(x16, y16, reduction="sum", grad_out=g16)
    assert_close(g16, ref.binary_cross_entropy_with_logits_grad(x16, y16, reduction="sum"),
                 np.float16, scale=grad_scale("bce_logits", x16, y16, 1.0, "sum"))


def test_grad_output_aliasing_outputs(rng):
    """grad_output is read after the kernel writes out / grad_out: sharing
    memory with either must not change the result."""
    x, y, w = make("bce_logits", (20,), np.float64, rng)
    g = rng.normal(size=20)
    expected = ref.binary_cross_entropy_with_logits_grad(x, y, w, reduction="none") * g
    scale = 4 * np.abs(g) * w
    buf = g.copy()
    _, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, y, w, reduction="none", grad_output=buf, grad_out=buf)
    assert_close(grad, expected, np.float64, scale=scale)
    buf = g.copy()
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, y, w, reduction="none", grad_output=buf, out=buf)
    assert_close(grad, expected, np.float64, scale=scale)
    assert_close(loss, ref.binary_cross_entropy_with_logits(x, y, w, reduction="none"),
                 np.float64)


@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_grad_errors(kind):
    x = np.full((3, 4), 0.5)
    f = FAST[kind]
    with pytest.raises(ValueError, match="^grad_out: overlaps out"):
        buf = np.empty((3, 4))
        f(x, x, reduction="none", out=buf, grad_out=buf)
    with pytest.raises(ValueError, match="^grad_out: overlaps an input"):
        big = np.full(13, 0.5)
        f(big[:12].reshape(3, 4), x, reduction="none", grad_out=big[1:].reshape(3, 4))
    with pytest.raises(ValueError, match=r"^grad_out: expected shape \(3, 4\), got \(12,\)$"):
        f(x, x, grad_out=np.empty(12))
    with pytest.raises(TypeError, match="^grad_out: expected dtype float64, got float32$"):
        f(x, x, grad_out=np.empty((3, 4), np.float32))
    ro = np.empty((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^grad_out: array is read-only$"):
        f(x, x, grad_out=ro)
    with pytest.raises(ValueError, match="^grad_output: only used with reduction='none'"):
        f(x, x, reduction="mean", grad_output=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"^grad_output: shape \(5,\) does not broadcast"):
        f(x, x, reduction="none", grad_output=np.ones(5))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        f(x, x, reduction="avg")
    with pytest.raises(TypeError, match="^input: expected a floating-point array"):
        f(np.ones((3, 4), int), x)


def test_grad_edge_values():
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, 0.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none")
    np.testing.assert_array_equal(loss[:4], [0.0, 0.0, np.inf, np.inf])
    assert_close(loss[4:], [np.log(2)], np.float64)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0, 0.0])
    # PyTorch's clamp of p(1-p) at the ends of [0, 1], in float32 (float64:
    # see test_parity_torch.py::test_bce_grad_clamp).
    p = np.array([0.0, 1.0, 0.0, 1.0], np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    _, grad = bce_fast.binary_cross_entropy_and_grad(p, t, reduction="none")
    eps = np.float32(1e-12)
    np.testing.assert_array_equal(grad, [-1 / eps, 1 / eps, 0.0, 0.0])


# --------------------------------------------------------- grad and hess


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_logistic_grad_hess_matches_reference(dtype, rng):
    x, y, w = make("bce_logits", (1000,), dtype, rng, soft=False)
    for sw in (None, w, 2.0):
        g, h = bce_fast.logistic_grad_hess(x, y, sw)
        assert g.dtype == dtype and h.dtype == dtype
        eg, eh = ref.logistic_grad_hess(x, y, sw)
        assert_close(g, eg, dtype)
        assert_close(h, eh, dtype)
    g, h = bce_fast.logistic_grad_hess(x[:0], y[:0])
    assert g.shape == h.shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logistic_grad_hess_matches_sklearn(dtype, rng):
    loss_mod = pytest.importorskip("sklearn._loss.loss")
    loss = loss_mod.HalfBinomialLoss()
    raw = np.concatenate([rng.normal(scale=5.0, size=500),
                          [-40.0, -20.0, 0.0, 20.0, 40.0]]).astype(dtype)
    y = (rng.uniform(size=raw.size) < 0.4).astype(dtype)
    sw = rng.uniform(0.1, 3.0, size=raw.size).astype(dtype)
    for weight in (None, sw):
        eg, eh = loss.gradient_hessian(y_true=y, raw_prediction=raw, sample_weight=weight)
        g, h = bce_fast.logistic_grad_hess(raw, y, weight)
        rtol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(g, eg, rtol=rtol)
        np.testing.assert_allclose(h, eh, rtol=rtol)


def test_logistic_grad_hess_errors():
    with pytest.raises(ValueError, match=r"^y: expected shape \(3,\) \(the shape of raw\), "
                                         r"got \(2,\)$"):
        bce_fast.logistic_grad_hess(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"^sample_weight: shape \(2,\) does not broadcast "
                                         r"to the raw shape \(3,\)$"):
        bce_fast.logistic_grad_hess(np.zeros(3), np.zeros(3), np.ones(2))
    with pytest.raises(TypeError, match="^raw: expected a floating-point array"):
        bce_fast.logistic_grad_hess(np.zeros(3, int), np.zeros(3))
