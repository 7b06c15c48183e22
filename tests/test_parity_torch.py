"""Parity with PyTorch 2.13 (CPU), the oracle of SEMANTICS.md: forward
results on random and edge inputs (weight and pos_weight broadcasting, soft
targets, every reduction), and gradients against autograd of the same call
(forward + backward; ``backward(grad_output)`` for reduction='none').
Where bce_fast is deliberately more accurate than PyTorch (far tails in
float32) the comparison uses an absolute floor and the true value is
checked against the reference instead."""
import numpy as np
import pytest

from conftest import assert_close

import bce_fast
from bce_fast import _reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.torch

REDUCTIONS = ["none", "mean", "sum"]
# Same-dtype agreement.  PyTorch's float32 BCE-with-logits loses the
# absolute accuracy of its (1 - y) x + softplus(-x) form (~eps * |x|) and
# its gradient cancels in sigmoid(x) - y, hence absolute floors.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def T(a, dtype=None, grad=False):
    t = torch.from_numpy(np.array(a, dtype=dtype, copy=True))
    return t.requires_grad_(True) if grad else t


def close(ours, theirs, dtype, scale=1.0):
    tol = TOL[dtype]
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert np.asarray(ours).dtype == dtype
    np.testing.assert_allclose(np.asarray(ours, np.float64), np.asarray(theirs, np.float64),
                               rtol=tol["rtol"], atol=tol["atol"] * scale)


def data(kind, shape, dtype, rng):
    n = int(np.prod(shape))
    if kind == "bce_logits":
        x = rng.normal(scale=4.0, size=n)
    else:
        x = rng.uniform(0.001, 0.999, size=n)
    y = rng.uniform(size=n)
    hard = rng.uniform(size=n) < 0.5
    y[hard] = np.round(y[hard])
    return x.astype(dtype).reshape(shape), y.astype(dtype).reshape(shape)


CASES = [  # input shape, weight shape, pos_weight shape
    ((64,), None, None),
    ((16, 5), None, (5,)),
    ((16, 5), (5,), (5,)),
    ((16, 5), (16, 1), None),
    ((16, 5), (16, 5), (16, 5)),
    ((16, 5), (), (1,)),
    ((4, 3, 6), (4, 1, 6), (6,)),
    ((4, 3, 6), (3, 1), (3, 6)),
]
CASE_IDS = [f"x{s}-w{w}-pw{p}".replace(" ", "") for s, w, p in CASES]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape, wshape, pwshape", CASES, ids=CASE_IDS)
def test_bce_with_logits_forward_and_backward(shape, wshape, pwshape, dtype, reduction, rng):
    x, y = data("bce_logits", shape, dtype, rng)
    w = None if wshape is None else rng.uniform(0.5, 2.0, size=wshape).astype(dtype)
    pw = None if pwshape is None else rng.uniform(0.5, 3.0, size=pwshape).astype(dtype)
    xt = T(x, grad=True)
    lt = F.binary_cross_entropy_with_logits(
        xt, T(y), weight=None if w is None else T(w),
        pos_weight=None if pw is None else T(pw), reduction=reduction)
    g_up = rng.normal(size=shape).astype(dtype) if reduction == "none" else None
    lt.backward(None if g_up is None else T(g_up))
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, y, w, pw, reduction=reduction, grad_output=g_up)
    scale = np.abs(x).max() * (1 if w is None else w.max()) * (1 if pw is None else pw.max())
    if reduction != "none":
        assert isinstance(loss, np.generic)
    close(loss, lt, dtype, scale=scale * (x.size if reduction == "sum" else 1))
    gscale = scale * (1.0 / x.size if reduction == "mean" else 1.0) * (
        1 if g_up is None else np.abs(g_up).max())
    close(grad, xt.grad, dtype, scale=gscale)
    np.testing.assert_array_equal(loss, bce_fast.binary_cross_entropy_with_logits(
        x, y, w, pw, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape, wshape, _pw", CASES[:5] + CASES[6:], ids=CASE_IDS[:5] + CASE_IDS[6:])
def test_bce_forward_and_backward(shape, wshape, _pw, dtype, reduction, rng):
    p, y = data("bce", shape, dtype, rng)
    w = None if wshape is None else rng.uniform(0.5, 2.0, size=wshape).astype(dtype)
    pt = T(p, grad=True)
    lt = F.binary_cross_entropy(pt, T(y), weight=None if w is None else T(w),
                                reduction=reduction)
    g_up = rng.normal(size=shape).astype(dtype) if reduction == "none" else None
    lt.backward(None if g_up is None else T(g_up))
    loss, grad = bce_fast.binary_cross_entropy_and_grad(p, y, w, reduction=reduction,
                                                        grad_output=g_up)
    close(loss, lt, dtype, scale=x_size_scale(p, reduction))
    # d/dp = w (p - y) / (p (1 - p)): up to 1/(0.001 * 0.999) here.
    gscale = 1e3 * (1.0 / p.size if reduction == "mean" else 1.0) * (
        1 if w is None else w.max()) * (1 if g_up is None else np.abs(g_up).max())
    close(grad, pt.grad, dtype, scale=gscale)


def x_size_scale(a, reduction):
    return a.size if reduction == "sum" else 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_maps(dtype, rng):
    x = np.concatenate([rng.normal(scale=5.0, size=500), [0.0, -0.0, 1e-8, -1e-8, 15.0, -15.0,
                                                          np.inf, -np.inf, np.nan]])
    x = x.astype(dtype)
    close(bce_fast.sigmoid(x), torch.sigmoid(T(x)), dtype)
    close(bce_fast.log_sigmoid(x), F.logsigmoid(T(x)), dtype, scale=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_edge_inputs(dtype):
    xs = np.array([0.0, -0.0, 1e-8, -1e-8, 1.0, -1.0, 10.0, -10.0, 17.0, -17.0], dtype)
    ys = np.array([0.0, 0.5, 1.0])
    x = np.repeat(xs, 3)
    y = np.tile(ys, xs.size).astype(dtype)
    for reduction in REDUCTIONS:
        xt = T(x, grad=True)
        lt = F.binary_cross_entropy_with_logits(xt, T(y), reduction=reduction)
        lt.sum().backward()
        loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, reduction=reduction)
        close(loss, lt, dtype, scale=17.0 * x_size_scale(x, reduction))
        close(grad, xt.grad, dtype)
    # Probabilities at the ends of [0, 1] (PyTorch clamps log at -100) and
    # close to them; the clamp of the gradient is test_bce_grad_clamp below.
    p = np.repeat(np.array([0.0, 1.0, 1e-6, 0.5, 1 - 2**-20, 2**-20], dtype), 3)
    for reduction in REDUCTIONS:
        pt = T(p, grad=True)
        lt = F.binary_cross_entropy(pt, T(y[:p.size]), reduction=reduction)
        lt.sum().backward()
        loss, grad = bce_fast.binary_cross_entropy_and_grad(p, y[:p.size], reduction=reduction)
        close(loss, lt, dtype, scale=100 * x_size_scale(p, reduction))
        inner = slice(6, None)
        np.testing.assert_allclose(grad[inner], pt.grad.numpy()[inner], rtol=TOL[dtype]["rtol"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_grad_clamp(dtype):
    """PyTorch's gradient w (p - y) / max(p (1 - p), eps) at and near the clamp."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-12, 1 - 2**-40, 0.0], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.3], dtype)
    pt = T(p, grad=True)
    F.binary_cross_entropy(pt, T(y), reduction="sum").backward()
    _, grad = bce_fast.binary_cross_entropy_and_grad(p, y, reduction="sum")
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=TOL[dtype]["rtol"])
    np.testing.assert_allclose(grad, ref.binary_cross_entropy_grad(p, y, reduction="sum"),
                               rtol=TOL[dtype]["rtol"])


def test_float32_tails_beyond_pytorch():
    """Where PyTorch's float32 answer collapses, ours is the true value."""
    x = np.array([-20.0, -30.0, 25.0, -100.0], np.float32)
    y = np.array([0.0, 0.0, 1.0, 0.0], np.float32)
    ours = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")
    theirs = F.binary_cross_entropy_with_logits(T(x), T(y), reduction="none").numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)          # parity, loosely
    assert_close(ours, ref.binary_cross_entropy_with_logits(x, y, reduction="none"),
                 np.float32)                                      # and accurate
    assert np.all(ours > 0)
    assert_close(bce_fast.sigmoid(np.array([-100.0], np.float32)), ref.sigmoid([-100.0]),
                 np.float32)


def test_integer_targets_match_pytorch_float_targets(rng):
    x, _ = data("bce_logits", (40,), np.float32, rng)
    yi = (rng.uniform(size=40) < 0.5).astype(np.int64)
    theirs = F.binary_cross_entropy_with_logits(T(x), T(yi, np.float32), reduction="sum")
    close(bce_fast.binary_cross_entropy_with_logits(x, yi, reduction="sum"), theirs,
          np.float32, scale=40 * 10)
    p = np.clip(rng.uniform(size=40), 0.01, 0.99).astype(np.float32)
    theirs = F.binary_cross_entropy(T(p), T(yi, np.float32), reduction="none")
    close(bce_fast.binary_cross_entropy(p, yi.astype(bool), reduction="none"), theirs,
          np.float32)


def test_empty_inputs_match_pytorch():
    for dtype in (np.float32, np.float64):
        e = np.zeros((0, 3), dtype)
        for reduction in ("mean", "sum"):
            theirs = F.binary_cross_entropy_with_logits(T(e), T(e), reduction=reduction)
            ours = bce_fast.binary_cross_entropy_with_logits(e, e, reduction=reduction)
            np.testing.assert_array_equal(ours, theirs.numpy())
            theirs = F.binary_cross_entropy(T(e), T(e), reduction=reduction)
            np.testing.assert_array_equal(bce_fast.binary_cross_entropy(e, e, reduction=reduction),
                                          theirs.numpy())


def test_torch_tensors_are_accepted(rng):
    x, y = data("bce_logits", (10, 4), np.float32, rng)
    pw = np.array([1.0, 2.0, 0.5, 3.0], np.float32)
    ours = bce_fast.binary_cross_entropy_with_logits(T(x), T(y), pos_weight=T(pw),
                                                     reduction="none")
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, bce_fast.binary_cross_entropy_with_logits(
        x, y, pos_weight=pw, reduction="none"))
    # A non-contiguous tensor view.
    xt = T(x).t()
    np.testing.assert_array_equal(bce_fast.sigmoid(xt), bce_fast.sigmoid(x.T))
    with pytest.raises(TypeError, match="^input: cannot be converted to a NumPy array"):
        bce_fast.binary_cross_entropy_with_logits(T(x, grad=True), y)
    with pytest.raises(TypeError, match="^input: expected a floating-point array"):
        bce_fast.binary_cross_entropy_with_logits(T(x.astype(np.int64)), y)


def test_modules_match_pytorch(rng):
    x, y = data("bce_logits", (12, 3), np.float64, rng)
    w = rng.uniform(0.5, 2, size=(12, 1))
    pw = np.array([0.5, 1.0, 4.0])
    for reduction in REDUCTIONS:
        ours = bce_fast.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)(x, y)
        theirs = torch.nn.BCEWithLogitsLoss(weight=T(w), reduction=reduction,
                                            pos_weight=T(pw))(T(x), T(y))
        close(ours, theirs, np.float64, scale=100)
        p = ref.sigmoid(x)
        ours = bce_fast.BCELoss(weight=w, reduction=reduction)(p, y)
        theirs = torch.nn.BCELoss(weight=T(w), reduction=reduction)(T(p), T(y))
        close(ours, theirs, np.float64, scale=100)


def test_bce_with_logits_targets_and_weights_outside_unit_range():
    """Targets outside [0, 1] and negative weights are computed, not
    rejected, by the same formula as PyTorch."""
    x = np.array([-3.0, -0.5, 0.0, 2.0, 5.0, 40.0])
    y = np.array([-0.5, 1.5, 2.0, -1.0, 1.2, -0.25])
    w = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.7])
    pw = np.array([2.0])
    for reduction in REDUCTIONS:
        xt = T(x, grad=True)
        lt = F.binary_cross_entropy_with_logits(xt, T(y), T(w), pos_weight=T(pw),
                                                reduction=reduction)
        lt.sum().backward()
        loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(
            x, y, w, pw, reduction=reduction)
        close(loss, lt, np.float64, scale=100)
        close(grad, xt.grad, np.float64, scale=10)
