"""Gradients of the softmax family: cross_entropy_and_grad and
nll_loss_and_grad against PyTorch autograd of the same call (weights,
ignore_index, smoothing, probability targets, reductions, N-d, axis,
grad_output), central finite differences in float64, grad_out handling,
accuracy of confident rows against mpmath, and softmax_grad_hess against
scikit-learn's HalfMultinomialLoss.gradient_hessian."""
import numpy as np
import pytest

import bce_fast
from bce_fast import _reference as ref

REDUCTIONS = ["none", "mean", "sum"]
FLOATS = [np.float32, np.float64]
FIDS = ["f32", "f64"]
# rows of up to 15 classes go column-wise (small-C kernel; up to 32 with smoothing or
# probability targets); (3, 45) and (45,) take the row kernel
SHAPES = [(7,), (5, 7), (3, 7, 4), (2, 3, 2, 2, 2), (4, 1), (0, 3), (3, 45), (45,)]
SIDS = ["C", "NC", "NCd", "NCddd", "C1", "N0", "wide", "C45"]


def close(got, want, dtype, scale):
    """Gradients: relative tolerance of a few eps of `dtype` plus an absolute
    floor at `scale` (the size of the largest term), since smoothed and soft
    targets make p - t cancel."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=64 * eps, atol=64 * eps * scale)


def torch_grad(torch, fn, x, target, grad_output=None, **kw):
    xt = torch.tensor(x, requires_grad=True)
    loss = fn(xt, target, **kw)
    if grad_output is None:
        loss.sum().backward()
    else:
        loss.backward(torch.as_tensor(grad_output).expand_as(loss))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SIDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_grad_matches_autograd(dtype, shape, reduction, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = 1 if x.ndim > 1 else 0
    C = x.shape[ax]
    pshape = x.shape[:ax] + x.shape[ax + 1:]
    t = rng.integers(0, C, pshape)
    if t.size > 2:
        t.reshape(-1)[::3] = -100
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    p = np.moveaxis(rng.dirichlet(np.ones(C), size=pshape), -1, ax).astype(dtype)
    cases = [
        (t, {}),
        (t, {"weight": w}),
        (t, {"weight": w, "label_smoothing": 0.3}),
        (t, {"label_smoothing": 0.1}),
        (p, {}),
        (p, {"weight": w, "label_smoothing": 0.2}),
    ]
    for target, kw in cases:
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        want_l, want_g = torch_grad(torch, F.cross_entropy, x, torch.from_numpy(target),
                                    reduction=reduction, **tkw)
        loss, grad = bce_fast.cross_entropy_and_grad(x, target, reduction=reduction, **kw)
        assert grad.dtype == dtype and grad.shape == x.shape
        scale = np.max(np.abs(want_g), initial=0.0)
        close(grad, want_g, dtype, scale)
        if np.isnan(want_l).all():
            assert np.isnan(loss).all()
        else:
            np.testing.assert_allclose(loss, want_l, rtol=2e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-6 if dtype == np.float32 else 1e-14)
        if target is t:
            ign = t == -100
            assert np.all(np.moveaxis(grad, ax, -1)[ign] == 0)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("C", [100, 600])
def test_loss_with_gradient_equals_loss_alone(dtype, C, rng):
    """The row kernel takes rows in groups, fewer per group where a
    gradient has to be written (600 classes: one); a row's loss is the same
    bits with and without the gradient."""
    x = (rng.standard_normal((37, C)) * 3).astype(dtype)
    t = rng.integers(0, C, 37)
    t[::5] = -100
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    p = rng.dirichlet(np.ones(C), size=37).astype(dtype)
    for target, kw in [(t, {}), (t, {"weight": w, "label_smoothing": 0.2}), (p, {"weight": w})]:
        loss, _ = bce_fast.cross_entropy_and_grad(x, target, reduction="none", **kw)
        alone = bce_fast.cross_entropy(x, target, reduction="none", **kw)
        assert loss.tobytes() == alone.tobytes()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_grad_matches_autograd(reduction, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((4, 5, 3))
    t = rng.integers(0, 5, (4, 3))
    t[1, 1] = 7
    w = rng.uniform(0.5, 2, 5)
    want_l, want_g = torch_grad(torch, F.nll_loss, x, torch.from_numpy(t),
                                weight=torch.from_numpy(w), ignore_index=7, reduction=reduction)
    loss, grad = bce_fast.nll_loss_and_grad(x, t, weight=w, ignore_index=7, reduction=reduction)
    np.testing.assert_allclose(grad, want_g, rtol=1e-15)
    np.testing.assert_allclose(loss, want_l, rtol=1e-14)
    x2 = rng.standard_normal((6, 5))
    t2 = rng.integers(0, 5, 6)
    _, want_g = torch_grad(torch, F.nll_loss, x2, torch.from_numpy(t2), reduction=reduction)
    np.testing.assert_allclose(bce_fast.nll_loss_and_grad(x2, t2, reduction=reduction)[1],
                               want_g, rtol=1e-15)


def test_grad_output_and_axis_match_autograd(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((3, 4, 6))                        # (N, L, C)
    t = rng.integers(0, 6, (3, 4))
    t[2, 1] = -100
    up = rng.standard_normal((3, 4))
    xm = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    for kw in [{}, {"label_smoothing": 0.2, "weight": rng.uniform(0.5, 2, 6)}]:
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        _, want = torch_grad(torch, F.cross_entropy, xm, torch.from_numpy(t), up,
                             reduction="none", **tkw)
        _, grad = bce_fast.cross_entropy_and_grad(x, t, reduction="none", axis=-1,
                                                  grad_output=up, **kw)
        close(grad, np.moveaxis(want, 1, -1), np.float64, np.abs(want).max())
        _, want = torch_grad(torch, F.cross_entropy, xm, torch.from_numpy(t),
                             reduction="mean", **tkw)
        _, grad = bce_fast.cross_entropy_and_grad(x, t, axis=2, **kw)
        close(grad, np.moveaxis(want, 1, -1), np.float64, np.abs(want).max())
    # a broadcast upstream gradient (one value per row of the loss)
    _, g1 = bce_fast.cross_entropy_and_grad(x, t, reduction="none", axis=-1,
                                            grad_output=np.array([[2.0], [3.0], [4.0]]))
    _, g0 = bce_fast.cross_entropy_and_grad(x, t, reduction="sum", axis=-1)
    close(g1, g0 * np.array([2.0, 3.0, 4.0])[:, None, None], np.float64, 1.0)
    with pytest.raises(ValueError, match="grad_output: only used with reduction='none'"):
        bce_fast.cross_entropy_and_grad(x, t, axis=-1, grad_output=up)


@pytest.mark.parametrize("target_kind", ["index", "prob"])
def test_grad_matches_central_differences(target_kind, rng):
    x = rng.standard_normal((3, 4, 2))
    w = rng.uniform(0.5, 2.0, 4)
    if target_kind == "index":
        t = np.array([[0, 3], [-100, 1], [2, 2]])
    else:
        t = np.moveaxis(rng.dirichlet(np.ones(4), size=(3, 2)), -1, 1)
    kw = dict(weight=w, label_smoothing=0.15, reduction="mean")
    _, grad = bce_fast.cross_entropy_and_grad(x, t, **kw)
    h = 1e-6
    fd = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[i] = (float(ref.cross_entropy(xp, t, **kw))
                 - float(ref.cross_entropy(xm, t, **kw))) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
def test_long_rows_split_gradients_match_autograd(dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = (rng.standard_normal((2, 70000)) * 3).astype(dtype)
    x[1, :20000] = -np.inf                               # a block of -inf
    t = np.array([5, 69000])
    w = rng.uniform(0.5, 2, 70000).astype(dtype)
    p = rng.dirichlet(np.ones(70000), size=2).astype(dtype)
    for target, kw in [(t, {}), (t, {"weight": w, "label_smoothing": 0.2}),
                       (t, {"label_smoothing": 0.1}), (p, {"weight": w}), (p, {})]:
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        _, want = torch_grad(torch, F.cross_entropy, x, torch.from_numpy(target),
                             reduction="mean", **tkw)
        _, grad = bce_fast.cross_entropy_and_grad(x, target, **kw)
        close(grad, want, dtype, np.abs(want).max())


def test_grad_out_handling(rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    t = rng.integers(0, 6, 5)
    loss, want = bce_fast.cross_entropy_and_grad(x, t)
    g = np.empty_like(x)
    loss2, g2 = bce_fast.cross_entropy_and_grad(x, t, grad_out=g)
    assert g2 is g and loss2 == loss
    np.testing.assert_array_equal(g, want)
    y = x.copy()                                              # in place
    loss3, g3 = bce_fast.cross_entropy_and_grad(y, t, grad_out=y)
    assert g3 is y and loss3 == loss
    np.testing.assert_array_equal(y, want)
    p = np.full((5, 6), 1 / 6, np.float32)                   # grad_out is the target
    want_p = bce_fast.cross_entropy_and_grad(x, p.copy())[1]
    assert bce_fast.cross_entropy_and_grad(x, p, grad_out=p)[1] is p
    np.testing.assert_array_equal(p, want_p)
    gT = np.empty((6, 5), np.float32).T                       # non-contiguous
    bce_fast.cross_entropy_and_grad(x, t, grad_out=gT)
    np.testing.assert_array_equal(gT, want)
    with pytest.raises(TypeError, match="grad_out: expected dtype float32"):
        bce_fast.cross_entropy_and_grad(x, t, grad_out=np.empty((5, 6)))
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(5, 6\)"):
        bce_fast.nll_loss_and_grad(x, t, grad_out=np.empty((5, 5), np.float32))


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape,axis", [((1, 16), None), ((4, 100), None), ((40,), None),
                                        ((2, 3, 20), -1), ((2, 70000), None), ((3, 6, 4), None)],
                         ids=["row", "rows", "C", "axis-last", "split", "inner"])
def test_grad_out_is_the_input_every_kernel(dtype, shape, axis, rng):
    """In place over the logits: the row kernels store exp(x - m) in the
    gradient before the loss needs x at the target (a loss 1-50% off once)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = (1 if x.ndim > 1 else 0) if axis is None else axis % x.ndim
    C = shape[ax]
    t = rng.integers(0, C, shape[:ax] + shape[ax + 1:])
    if t.ndim:
        t.reshape(-1)[-1] = -100
    for kw in [{}, {"weight": rng.uniform(0.5, 2, C).astype(dtype)},
               {"label_smoothing": 0.1}]:
        for reduction in REDUCTIONS:
            want_l, want_g = bce_fast.cross_entropy_and_grad(x, t, reduction=reduction,
                                                             axis=axis, **kw)
            y = x.copy()
            loss, g = bce_fast.cross_entropy_and_grad(y, t, reduction=reduction, axis=axis,
                                                      grad_out=y, **kw)
            assert g is y
            np.testing.assert_array_equal(loss, want_l)
            np.testing.assert_array_equal(g, want_g)


def test_output_that_is_the_weight(rng):
    """An output may be any input, the class weights too (they are read to
    the end of the call)."""
    x = np.log(rng.dirichlet(np.ones(3), 3))
    t, w = np.array([2, 0, 1]), np.array([1.0, 2.0, 3.0])
    want = bce_fast.nll_loss(x, t, weight=w, reduction="none")
    w2 = w.copy()
    assert bce_fast.nll_loss(x, t, weight=w2, reduction="none", out=w2) is w2
    np.testing.assert_array_equal(w2, want)
    x1, w = rng.standard_normal(20), rng.uniform(0.5, 1.5, 20)
    for target in (3, rng.dirichlet(np.ones(20))):
        want_l, want_g = bce_fast.cross_entropy_and_grad(x1, target, weight=w, reduction="sum")
        w2 = w.copy()
        loss, g = bce_fast.cross_entropy_and_grad(x1, target, weight=w2, reduction="sum",
                                                  grad_out=w2)
        assert g is w2 and loss == want_l
        np.testing.assert_array_equal(g, want_g)


def test_confident_row_gradient_is_accurate():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for dtype in FLOATS:
        x = np.array([[20.0, 0.0, 0.0]], dtype=dtype)
        _, g = bce_fast.cross_entropy_and_grad(x, np.array([0]))
        e = mpmath.exp(-20)
        exact_t = float(-2 * e / (1 + 2 * e))                  # p_t - 1, not 0
        exact_o = float(e / (1 + 2 * e))
        assert abs(float(g[0, 0]) - exact_t) <= 4 * np.spacing(dtype(-exact_t))
        assert abs(float(g[0, 1]) - exact_o) <= 4 * np.spacing(dtype(exact_o))


def test_all_ignored_mean_gradient_is_zero(rng):
    x = rng.standard_normal((3, 4))
    loss, g = bce_fast.cross_entropy_and_grad(x, np.full(3, -100))
    assert np.isnan(loss) and np.all(g == 0)
    loss, g = bce_fast.nll_loss_and_grad(x, np.full(3, -100), reduction="sum")
    assert loss == 0 and np.all(g == 0)


def test_zero_total_weight_mean_is_not_finite(rng):
    """Counted targets whose class weights sum to 0: the mean is 0/0 or
    +-inf, as in PyTorch, and its gradient undefined: NaN on their rows
    (PyTorch: NaN or +-inf), where a finite 0 would pass unnoticed; ignored
    rows stay 0."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((3, 3))
    t = np.array([0, 1, -100])
    at_target = np.zeros((3, 3), bool)
    at_target[[0, 1], t[:2]] = True                     # of the counted rows
    for w in (np.array([0.0, 0.0, 1.0]), np.array([1.0, -1.0, 1.0])):
        tw = torch.from_numpy(w)
        want_l, _ = torch_grad(torch, F.nll_loss, x, torch.from_numpy(t), None, weight=tw)
        loss, g = bce_fast.nll_loss_and_grad(x, t, weight=w)
        np.testing.assert_array_equal(loss, want_l)
        np.testing.assert_array_equal(np.isnan(g), at_target)
        np.testing.assert_array_equal(g[~at_target], 0)
        want_l, _ = torch_grad(torch, F.cross_entropy, x, torch.from_numpy(t), None, weight=tw)
        loss, g = bce_fast.cross_entropy_and_grad(x, t, weight=w)
        np.testing.assert_array_equal(loss, want_l)
        np.testing.assert_array_equal(bce_fast.cross_entropy(x, t, weight=w), want_l)
        assert np.isnan(g[:2]).all() and np.all(g[2] == 0)
        loss, g = bce_fast.cross_entropy_and_grad(x, t, weight=w, label_smoothing=0.1)
        assert not np.isfinite(loss) and np.isnan(g[:2]).all() and np.all(g[2] == 0)


# ------------------------------------------------------- softmax_grad_hess

@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("K", [4, 40], ids=["small-C-kernel", "row-kernel"])
def test_softmax_grad_hess_matches_sklearn(dtype, weighted, K, rng):
    loss_mod = pytest.importorskip("sklearn._loss.loss")
    n = 70
    raw = (rng.standard_normal((n, K)) * 3).astype(dtype)
    y = rng.integers(0, K, n).astype(dtype)
    sw = rng.uniform(0.1, 2.0, n).astype(dtype) if weighted else None
    want_g, want_h = loss_mod.HalfMultinomialLoss(n_classes=K).gradient_hessian(
        y_true=y, raw_prediction=raw, sample_weight=sw)
    g, h = bce_fast.softmax_grad_hess(raw, y, sample_weight=sw)
    assert g.dtype == dtype and h.dtype == dtype and g.shape == (n, K)
    close(g, want_g, dtype, 2.0)
    close(h, want_h, dtype, 1.0)
    g2, h2 = bce_fast.softmax_grad_hess(raw, y.astype(np.int32), sample_weight=sw)
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(h, h2)


def test_softmax_grad_hess_reference_and_errors(rng):
    raw = rng.standard_normal((6, 3)) * 5
    y = rng.integers(0, 3, 6)
    sw = rng.uniform(0.5, 2, 6)
    p = ref.softmax(raw, axis=1)
    onehot = np.eye(3)[y]
    g, h = bce_fast.softmax_grad_hess(raw, y, sw)
    np.testing.assert_allclose(g, sw[:, None] * (p - onehot), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(h, sw[:, None] * p * (1 - p), rtol=1e-13, atol=1e-16)
    # a confident row: 1 - p is kept, not rounded to 0
    g, h = bce_fast.softmax_grad_hess(np.array([[40.0, 0.0]]), np.array([0]))
    assert g[0, 0] < 0 and abs(h[0, 0] - np.exp(-40.0)) <= 1e-15 * np.exp(-40.0)
    with pytest.raises(IndexError, match=r"^Target 3 is out of bounds\.$"):
        bce_fast.softmax_grad_hess(raw, np.array([0, 1, 2, 3, 0, 1]))
    # the least int64 (bce_fast's internal "ignore nothing") is out of bounds too
    for y_bad in (np.array([0, 1, 2, np.iinfo(np.int64).min, 0, 1]),
                  np.array([0.0, 1, 2, -2.0 ** 63, 0, 1])):
        with pytest.raises(IndexError, match=r"^Target -9223372036854775808 is out of bounds"):
            bce_fast.softmax_grad_hess(raw, y_bad)
    with pytest.raises(IndexError, match=r"^Target 0 is out of bounds\.$"):
        bce_fast.softmax_grad_hess(np.zeros((2, 0)), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"raw: expected shape \(n, K\)"):
        bce_fast.softmax_grad_hess(raw[0], y)
    with pytest.raises(ValueError, match=r"y: expected shape \(6,\)"):
        bce_fast.softmax_grad_hess(raw, y[:5])
    with pytest.raises(ValueError, match="y: expected integer class labels"):
        bce_fast.softmax_grad_hess(raw, y + 0.5)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(6,\)"):
        bce_fast.softmax_grad_hess(raw, y, np.ones(5))


@pytest.mark.parametrize("shape", [(5, 6), (3, 45), (3, 6, 4), (2, 70000)],
                         ids=["small-C", "rows", "inner", "split"])
def test_grad_output_every_kernel(shape, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal(shape) * 3
    C = shape[1]
    pshape = shape[:1] + shape[2:]
    t = rng.integers(0, C, pshape)
    t.reshape(-1)[0] = -100
    up = rng.standard_normal(pshape)
    w = rng.uniform(0.5, 2, C)
    for kw in [{}, {"weight": w, "label_smoothing": 0.1}]:
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        want_l, want = torch_grad(torch, F.cross_entropy, x, torch.from_numpy(t), up,
                                  reduction="none", **tkw)
        loss, grad = bce_fast.cross_entropy_and_grad(x, t, reduction="none", grad_output=up, **kw)
        close(grad, want, np.float64, np.abs(want).max())
        np.testing.assert_allclose(loss, want_l, rtol=1e-12)
        p = np.moveaxis(rng.dirichlet(np.ones(C), size=pshape), -1, 1)
        _, want = torch_grad(torch, F.cross_entropy, x, torch.from_numpy(p), up,
                             reduction="none", **tkw)
        _, grad = bce_fast.cross_entropy_and_grad(x, p, reduction="none", grad_output=up, **kw)
        close(grad, want, np.float64, np.abs(want).max())
    _, want = torch_grad(torch, F.nll_loss, x, torch.from_numpy(t), up, reduction="none")
    _, grad = bce_fast.nll_loss_and_grad(x, t, reduction="none", grad_output=up)
    np.testing.assert_allclose(grad, want, rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", [(6, 5), (3, 45), (2, 5, 3)], ids=["small", "rows", "Nd"])
def test_class_weights_far_from_one(dtype, shape, rng):
    """A class-index mean does not change when every weight is scaled by a
    power of two (weights tiny or huge included: bit for bit), and float32
    weights at the bottom of the subnormals still give the float64 answer
    (a fuzz run found weights [1e-45, 0] with smoothing 0.025 off and a NaN
    gradient)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    C = shape[1]
    t = rng.integers(0, C, (shape[0],) + shape[2:])
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    big = 100 if dtype == np.float32 else 1000
    for kw in ({}, {"label_smoothing": 0.2}):
        want = bce_fast.cross_entropy_and_grad(x, t, weight=w, **kw)
        for k in (-big, big):
            got = bce_fast.cross_entropy_and_grad(x, t, weight=np.ldexp(w, k), **kw)
            assert got[0].tobytes() == want[0].tobytes()
            assert got[1].tobytes() == want[1].tobytes()
        assert bce_fast.nll_loss(x, t, weight=np.ldexp(w, -big)) == bce_fast.nll_loss(x, t, weight=w)
    # One class weighted by the smallest subnormal, the others 0: the mean
    # is that of weights (0, .., 1, .., 0), which the float64 reference
    # computes without subnormals.
    tiny = np.zeros(C, dtype)
    tiny[t.flat[0]] = np.finfo(dtype).smallest_subnormal
    unit = (tiny > 0).astype(dtype)
    for kw in ({}, {"label_smoothing": 0.1}):
        loss, grad = bce_fast.cross_entropy_and_grad(x, t, weight=tiny, **kw)
        np.testing.assert_allclose(loss, ref.cross_entropy(x, t, weight=unit, **kw),
                                   rtol=16 * np.finfo(dtype).eps)
        close(grad, ref.cross_entropy_grad(x, t, weight=unit, **kw), dtype, 1.0)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_subnormal_total_weight_beside_a_normal_one(smoothing):
    """float64 weights [1, 5e-324] with every target on the second: the mean
    is that of weights [2^1074, 1] (a fuzz run found a loss of 1 for log 2
    and a NaN gradient), for the loss alone (the total is known after the
    kernel) and with the gradient (known before).  With smoothing the loss
    and gradient lie past float64's range (the weight 2^1074 enters them):
    the loss is then inf, the gradient is not checked."""
    x = np.array([[0.0, 0.0], [1.0, -2.0]])
    t = np.array([1, 1])
    w = np.array([1.0, 5e-324])
    kw = {"weight": w, "label_smoothing": smoothing}
    want_kw = dict(kw, weight=np.array([2.0 ** 1000, 2.0 ** -74]))   # w 2^1074, in range
    with np.errstate(over="ignore"):     # past the range: inf, as in NumPy
        want = ref.cross_entropy(x, t, **want_kw)
        np.testing.assert_allclose(bce_fast.cross_entropy(x, t, **kw), want, rtol=1e-14)
        loss, grad = bce_fast.cross_entropy_and_grad(x, t, **kw)
    np.testing.assert_allclose(loss, want, rtol=1e-14)
    if not smoothing:
        close(grad, ref.cross_entropy_grad(x, t, **want_kw), np.float64, 1.0)


def test_gradient_past_float32_range_is_infinite():
    """Another weight 1e45 times the target's: the smoothed mean and its
    gradient lie beyond float32's range and round to +-inf with the
    reference's signs (a fuzz run found NaN in the gradient)."""
    x = np.zeros(3, np.float32)
    w = np.array([1.0, 0.0, 1e-45], np.float32)
    with np.errstate(over="ignore"):     # the cast to float32 overflows, as in NumPy
        loss, grad = bce_fast.cross_entropy_and_grad(x, 2, weight=w, label_smoothing=0.1)
    want = ref.cross_entropy_grad(x, np.array(2), weight=w, label_smoothing=0.1)
    assert np.abs(want[:2]).min() > np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(grad, want.astype(np.float32))
    want_loss = ref.cross_entropy(x, np.array(2), weight=w, label_smoothing=0.1)
    with np.errstate(over="ignore"):
        assert loss == np.float32(want_loss) == np.inf
