"""Forward results of softmax, log_softmax, cross_entropy and nll_loss against
the pure-NumPy float64 reference (bce_fast._reference) and PyTorch 2.13:
shapes (C,), (N, C), (N, C, d1..d3), C=1, N=0; target dtypes; weights,
ignore_index, label smoothing, probability targets; axis=; reductions;
out=; accuracy of confident rows against mpmath; error messages; memory;
determinism across threads, runs and ISA levels."""
import doctest
import tracemalloc

import numpy as np
import pytest
from conftest import RED_RTOL, assert_reduced_close

import bce_fast
from bce_fast import _core
from bce_fast import _reference as ref

REDUCTIONS = ["none", "mean", "sum"]
FLOATS = [np.float32, np.float64]
FIDS = ["f32", "f64"]
# rows of up to 15 classes take the small-C (column-wise) kernel, 40 and 50 the flat
# row sweep, 300 the row kernel (thresholds: BF_SM_SMALL_* in csrc/bf_kernels.h)
SHAPES = [(7,), (5, 7), (3, 7, 4), (2, 7, 3, 5), (2, 3, 2, 2, 2), (6, 1), (0, 4), (3, 300),
          (200, 3), (40, 50)]
SIDS = ["C", "NC", "NCd", "NCdd", "NCddd", "C1", "N0", "wide", "tall", "mid"]


def logits(shape, dtype, rng, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def index_target(x, rng, ax=None, ignore=None, dtype=np.int64):
    ax = (1 if x.ndim > 1 else 0) if ax is None else ax
    C = x.shape[ax]
    pshape = x.shape[:ax] + x.shape[ax + 1:]
    t = rng.integers(0, C, size=pshape).astype(dtype)
    if ignore is not None and t.size > 1:
        t.reshape(-1)[::3] = ignore
    return t


def prob_target(x, rng, ax=None):
    ax = (1 if x.ndim > 1 else 0) if ax is None else ax
    p = rng.dirichlet(np.ones(x.shape[ax]), size=x.shape[:ax] + x.shape[ax + 1:])
    return np.moveaxis(p, -1, ax).astype(x.dtype)


def ulp_tol(x, ax, dtype):
    """Contract tolerance of softmax-family elements: 4 + max_j |x_j - m| ULP
    over each row, as a relative tolerance broadcastable against the row."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return 0.0
    spread = np.max(x, axis=ax, keepdims=True) - np.min(x, axis=ax, keepdims=True)
    return (4 + spread) * np.finfo(dtype).eps


def assert_rel(got, want, rtol, atol=0.0):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    with np.errstate(invalid="ignore"):
        ok = (np.abs(got - want) <= rtol * np.abs(want) + atol) | (got == want) \
            | (np.isnan(got) & np.isnan(want))
    if not ok.all():
        i = tuple(np.argwhere(~ok)[0])
        raise AssertionError(f"{(~ok).sum()} of {ok.size} differ; at {i}: got {got[i]!r}, "
                             f"want {want[i]!r}")


def assert_loss(got, want, dtype, reduction, rtol):
    if reduction == "none":
        assert isinstance(got, np.ndarray) and got.dtype == dtype
        assert_rel(got, want, rtol)
    else:
        assert_reduced_close(got, want, dtype)


# ------------------------------------------------------------ maps

@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SIDS)
def test_maps_match_reference_every_axis(fn, dtype, shape, rng):
    x = logits(shape, dtype, rng)
    for ax in range(-x.ndim, x.ndim):
        got = getattr(bce_fast, fn)(x, axis=ax)
        assert got.dtype == dtype and got.shape == x.shape
        want = getattr(ref, fn)(x, axis=ax)
        assert_rel(got, want, ulp_tol(x, ax, dtype), atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SIDS)
def test_fast_paths_equal_general_path(dtype, shape, rng):
    """Canonical operands (C-contiguous aligned native float32/float64 logits,
    int64 class indices, plain arguments) skip the argument handling in
    _core.sm_map_canonical / sm_loss_canonical.  The results must be the
    general path's bit for bit along every axis, negative ones included, also
    into a canonical `out` (the input itself included), and whatever is not
    canonical or would raise must fall through."""
    x = logits(shape, dtype, rng)
    for fn, kind in (("softmax", _core.SM_SOFTMAX), ("log_softmax", _core.SM_LOG_SOFTMAX)):
        for ax in range(-x.ndim, x.ndim):
            fast = _core.sm_map_canonical(kind, x, ax)
            if x.size == 0:
                assert fast is None
                continue
            strided_out = np.empty(x.shape + (2,), dtype)[..., 0]     # the general path
            general = getattr(bce_fast, fn)(x, axis=ax, out=strided_out)
            assert fast.tobytes() == general.tobytes() and not np.shares_memory(fast, x)
            assert getattr(bce_fast, fn)(x, axis=ax).tobytes() == general.tobytes()
            out, inplace = np.empty_like(x), x.copy()
            assert _core.sm_map_canonical(kind, x, ax, out) is out
            assert _core.sm_map_canonical(kind, inplace, ax, inplace) is inplace
            assert out.tobytes() == general.tobytes() == inplace.tobytes()
            flat = np.empty(x.size + 1, dtype)
            shifted = flat[1:].reshape(x.shape)
            shifted[...] = x
            assert _core.sm_map_canonical(kind, shifted, ax, flat[:-1].reshape(x.shape)) is None
            assert _core.sm_map_canonical(kind, x, ax, np.empty_like(x, np.float16)) is None
        for ax in (-x.ndim - 1, x.ndim):
            assert _core.sm_map_canonical(kind, x, ax) is None
        strided = np.repeat(x, 2, axis=-1)[..., ::2]
        for other in (strided, x.astype(x.dtype.newbyteorder()), x.astype(np.float16)):
            assert _core.sm_map_canonical(kind, other, -1) is None
    if x.size == 0:
        return
    t = index_target(x, rng, ignore=-100)
    t32 = t.astype(np.int32)                        # the general path, same values
    codes = {"none": _core.REDUCTION_NONE, "mean": _core.REDUCTION_MEAN,
             "sum": _core.REDUCTION_SUM}
    for nll, kind in ((False, _core.SM_CE), (True, _core.SM_NLL)):
        fn = bce_fast.nll_loss if nll else bce_fast.cross_entropy
        fn_grad = bce_fast.nll_loss_and_grad if nll else bce_fast.cross_entropy_and_grad
        for reduction, code in codes.items():
            fast = _core.sm_loss_canonical(kind, x, t, -100, code, False)
            general = fn(x, t32, reduction=reduction)
            assert type(fast) is type(general) and fast.tobytes() == general.tobytes()
            assert fn(x, t, reduction=reduction).tobytes() == general.tobytes()
            fast_l, fast_g = _core.sm_loss_canonical(kind, x, t, -100, code, True)
            gen_l, gen_g = fn_grad(x, t32, reduction=reduction)
            assert fast_l.tobytes() == gen_l.tobytes() and fast_g.tobytes() == gen_g.tobytes()
        for other_x, other_t in ((x, t32), (x, t[..., None]), (x.astype(np.float16), t)):
            assert _core.sm_loss_canonical(kind, other_x, other_t, -100, 1, False) is None
        bad = t.copy()
        bad.flat[0] = x.shape[1 if x.ndim > 1 else 0]
        assert _core.sm_loss_canonical(kind, x, bad, -100, 1, False) is None
        with pytest.raises(IndexError):
            fn(x, bad)
    if x.ndim == 2:
        labels = index_target(x, rng)
        g, h = _core.sm_grad_hess_canonical(x, labels)
        gg, hh = bce_fast.softmax_grad_hess(x, labels.astype(np.int32))
        assert g.tobytes() == gg.tobytes() and h.tobytes() == hh.tobytes()
        assert _core.sm_grad_hess_canonical(x, labels.astype(np.int32)) is None
    else:
        assert _core.sm_grad_hess_canonical(x, t) is None


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
def test_maps_match_torch(fn, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = logits((4, 5, 6), dtype, rng)
    for ax in range(3):
        want = getattr(F, fn)(torch.from_numpy(x), dim=ax).numpy()
        got = getattr(bce_fast, fn)(x, dim=ax)
        # PyTorch rounds (x - m) - lse in the compute dtype: absolute error
        # of a few eps near 0 (where ours is accurate), so an absolute floor
        assert_rel(got, want, 1e-5 if dtype == np.float32 else 1e-13,
                   atol=4e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("axes", [(1, 2), (0, 3), (-1, 1), (0, 1, 2, 3), (2,)],
                         ids=["adjacent", "apart", "negative", "all", "single"])
def test_maps_over_axis_tuples_match_scipy(axes, rng):
    sp = pytest.importorskip("scipy.special")
    x = logits((3, 4, 5, 6), np.float64, rng)
    for fn in ("softmax", "log_softmax"):
        got = getattr(bce_fast, fn)(x, axis=axes)
        # scipy's x - m - log(sum) loses ~eps*|log(sum)| absolute near 0
        np.testing.assert_allclose(got, getattr(sp, fn)(x, axis=axes), rtol=1e-13, atol=1e-14)
    out = np.empty((3, 4, 5, 6), np.float32)
    x32 = x.astype(np.float32)
    assert bce_fast.log_softmax(x32, axis=axes, out=out) is out
    want = sp.log_softmax(x32.astype(np.float64), axis=axes)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="axis: expected distinct axes"):
        bce_fast.softmax(x, axis=(1, -3))


def test_axis_none_is_every_axis(rng):
    """axis=None as in scipy.special.softmax: the whole array is one row
    (it once meant the last axis, silently)."""
    sp = pytest.importorskip("scipy.special")
    for shape in [(2, 3), (4,), (2, 3, 4), ()]:
        x = logits(shape, np.float64, rng)
        for fn in ("softmax", "log_softmax"):
            got = getattr(bce_fast, fn)(x, axis=None)
            np.testing.assert_allclose(got, getattr(sp, fn)(x, axis=None), rtol=1e-13,
                                       atol=1e-14)


def test_maps_out_in_place_and_layouts(rng):
    x = logits((8, 33), np.float32, rng)
    want = ref.log_softmax(x, axis=0)
    y = x.copy()
    assert bce_fast.log_softmax(y, axis=0, out=y) is y
    assert_rel(y, want, ulp_tol(x, 0, np.float32))
    out = np.empty_like(x)
    assert bce_fast.softmax(x.T, axis=1, out=out.T) is not None
    assert_rel(out, ref.softmax(x, axis=0), ulp_tol(x, 0, np.float32), 1e-38)
    big = x.astype(">f4")
    assert_rel(bce_fast.log_softmax(big[:, ::2]), ref.log_softmax(x[:, ::2]),
               ulp_tol(x[:, ::2], -1, np.float32))
    h = bce_fast.softmax(x.astype(np.float16))
    assert h.dtype == np.float16
    assert_rel(h, ref.softmax(x.astype(np.float16)), 1e-3, 6e-8)
    x0 = np.float64(3.0)
    assert bce_fast.softmax(x0) == 1.0 and bce_fast.log_softmax([2.5]) == 0.0


def test_maps_do_not_modify_input_and_check_out(rng):
    x = logits((3, 4), np.float64, rng)
    keep = x.copy()
    bce_fast.softmax(x)
    bce_fast.log_softmax(x, axis=0)
    np.testing.assert_array_equal(x, keep)
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 4\)"):
        bce_fast.softmax(x, out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="out: expected dtype float64"):
        bce_fast.softmax(x, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="axis: 2 is out of range"):
        bce_fast.softmax(x, axis=2)
    with pytest.raises(TypeError, match="x: expected a floating-point array"):
        bce_fast.softmax(np.arange(3))
    with pytest.raises(TypeError, match="aliases"):
        bce_fast.softmax(x, axis=0, dim=1)


def test_maps_special_values_follow_torch():
    torch = pytest.importorskip("torch")
    inf, nan = np.inf, np.nan
    x = np.array([[inf, 0.0, 1.0], [-inf, -inf, -inf], [-inf, 0.0, 1.0],
                  [nan, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    for fn in ("softmax", "log_softmax"):
        want = getattr(torch, fn)(torch.from_numpy(x), 1).numpy()
        got = getattr(bce_fast, fn)(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_rel(got, want, 1e-6)


# ------------------------------------------------------- confident rows

def test_confident_rows_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for dtype in FLOATS:
        x = np.array([20.0, 0.0, 0.0], dtype=dtype)
        exact = -mpmath.log1p(2 * mpmath.exp(-20))
        got = bce_fast.log_softmax(x)[0]
        assert got == dtype(float(exact))          # correctly rounded here
        assert abs(float(got) - -4.12e-9) < 1e-11
        ce = bce_fast.cross_entropy(x[None], np.array([0]), reduction="none")[0]
        assert ce == dtype(float(-exact)) and ce > 0
        p = bce_fast.softmax(x)
        exact = float(mpmath.exp(-20) / (1 + 2 * mpmath.exp(-20)))
        assert abs(float(p[1]) - exact) <= 4 * np.spacing(dtype(exact))


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("C,layout", [(9, "rows"), (40, "rows"), (9, "inner")],
                         ids=["small-C", "row-kernel", "inner-kernel"])
def test_random_rows_within_contract_ulps(dtype, C, layout, rng):
    """log_softmax, softmax and per-row CE against mpmath at the given inputs,
    within 4 + max|x - m| ULP (SEMANTICS.md, Accuracy), for each kernel."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    x = np.concatenate([logits((4, C), dtype, rng, 3.0), logits((4, C), dtype, rng, 15.0)])
    x[0, 1] = x[0, 0] = x[0].max() + 30                  # confident, tied max
    t = rng.integers(0, C, 8)
    if layout == "inner":                                # (1, C, 8): class axis 1, inner 8
        xi = np.ascontiguousarray(x.T[None])
        ls, sm = bce_fast.log_softmax(xi, axis=1)[0].T, bce_fast.softmax(xi, axis=1)[0].T
        ce = bce_fast.cross_entropy(xi, t[None], reduction="none")[0]
    else:
        ls, sm = bce_fast.log_softmax(x), bce_fast.softmax(x)
        ce = bce_fast.cross_entropy(x, t, reduction="none")
    for r in range(x.shape[0]):
        row = [mpmath.mpf(float(v)) for v in x[r]]
        m = max(row)
        lse = m + mpmath.log(sum(mpmath.exp(v - m) for v in row))
        allowed = 4 + float(max(row) - min(row))
        for c in range(C):
            exact = float(row[c] - lse)
            assert abs(float(ls[r, c]) - exact) <= allowed * np.spacing(dtype(abs(exact)))
            exact = float(mpmath.exp(row[c] - lse))
            assert abs(float(sm[r, c]) - exact) <= allowed * np.spacing(dtype(abs(exact)))
        exact = float(lse - row[t[r]])
        assert abs(float(ce[r]) - exact) <= allowed * np.spacing(dtype(abs(exact)))


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("C", [5, 17, 300, 20000, 70000])
def test_minus_inf_logit_under_smoothing_is_an_infinite_loss(dtype, C):
    """A -inf logit (a masked class) that smoothing or a probability target
    puts weight on gives +inf, as in PyTorch; the float64 compensated sums
    once made it NaN (inf - inf in their error term) from 17 classes on."""
    x = np.zeros((2, C), dtype)
    x[0, 1] = x[1, C - 1] = -np.inf
    t = np.array([0, 0])
    p = np.full((2, C), 1.0 / C, dtype)
    for xs, ts, ps, kw in [(x, t, p, {}),
                           (np.ascontiguousarray(x.T[None]), t[None], p.T[None].copy(),
                            {"axis": 1})]:
        for got in (bce_fast.cross_entropy(xs, ts, label_smoothing=0.1, reduction="none", **kw),
                    bce_fast.cross_entropy_and_grad(xs, ts, label_smoothing=0.1,
                                                    reduction="none", **kw)[0],
                    bce_fast.cross_entropy(xs, ps, reduction="none", **kw)):
            np.testing.assert_array_equal(got, np.inf)


@pytest.mark.parametrize("layout", ["rows", "axis0"])
def test_float64_many_classes_within_contract_ulps(layout):
    """The error of a row's sum must not grow with its length: float64
    softmax at 20000 classes was 8.5 ULP off (bound 6.4) and along axis 0 at
    5000 classes 12 (bound 6.1) while tiles' (or groups') totals were added
    plainly; they are compensated now."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    if layout == "rows":
        x = np.random.default_rng(13).standard_normal(20000) * 0.3
        sm, col = bce_fast.softmax(x), x
    else:
        x = np.random.default_rng(0).standard_normal((5000, 2)) * 0.3
        sm, col = bce_fast.softmax(x, axis=0)[:, 1], x[:, 1]
    row = [mpmath.mpf(float(v)) for v in col]
    m = max(row)
    es = [mpmath.exp(v - m) for v in row]
    S = mpmath.fsum(es)
    exact = np.array([float(e / S) for e in es])
    allowed = 4 + float(col.max() - col.min())
    err = np.abs(sm - exact) / np.spacing(exact)
    assert err.max() <= allowed, (err.max(), allowed)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("C", [1000, 10000, 20000, 70000],
                         ids=["two-sweeps", "tile-span", "one-read", "split"])
def test_row_max_rising_and_tied_across_tiles(dtype, C):
    """Rows with maxima rising and tied across tiles, checked against mpmath
    for every function of the family.  A short row is swept for its max
    first; from 4097 classes the max sweep also notes which tiles of 256 hold
    the max, and the others skip counting maxima; a row of >= 16384 classes
    without stored exps is read once, the running sum rebased when a later
    tile has a larger max; a few rows of >= 65536 classes are split over
    blocks.  Ties across tiles must count once whichever path counts them."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    a, b, c = 10, 3 * C // 10, 7 * C // 10               # in different tiles of 256
    x = np.tile(np.linspace(-30.0, 0.0, C), (4, 1)).astype(dtype)
    x[0, [a, b, c]] = [5, 25, 40]                        # rising maxima
    x[1, [a, b, c]] = [40, 40, 40]                       # tied across tiles
    x[2, [a, b, c]] = [40, 60, 60]                       # rising, then tied
    x[3] = 7                                             # every tile holds the max
    t = np.array([c, b, a, C - 1])
    sm = bce_fast.softmax(x)
    ls = bce_fast.log_softmax(x)
    ce = bce_fast.cross_entropy(x, t, reduction="none")
    ce2, g = bce_fast.cross_entropy_and_grad(x, t, reduction="sum")
    for r in range(4):
        row = [mpmath.mpf(float(v)) for v in x[r]]
        m = max(row)
        lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in row))
        allowed = 4 + float(m - min(row))

        def check(got, exact):
            exact = float(exact)
            assert abs(float(got) - exact) <= allowed * np.spacing(dtype(abs(exact))), \
                (r, got, exact)

        for k in (0, a, b, C // 2, c, C - 1):
            check(ls[r, k], row[k] - lse)
            check(sm[r, k], mpmath.exp(row[k] - lse))
            check(g[r, k], mpmath.exp(row[k] - lse) - (k == t[r]))
        check(ce[r], lse - row[t[r]])
    assert_reduced_close(ce2, ce.astype(np.float64).sum(), dtype)


@pytest.mark.parametrize("C", [10000, 20000, 70000], ids=["tile-span", "one-read", "split"])
def test_nan_outside_the_max_tiles_follows_torch(C):
    """A NaN in a tile that does not hold the max (whose exps skip the
    compare against the max) still makes the row NaN, as in PyTorch."""
    torch = pytest.importorskip("torch")
    x = np.tile(np.linspace(-5.0, 0.0, C), (2, 1))
    x[:, 100] = 3.0
    x[0, C - 300] = np.nan
    t = np.array([1, 2])
    tx = torch.from_numpy(x)
    for fn in ("softmax", "log_softmax"):
        want = getattr(torch, fn)(tx, 1).numpy()
        got = getattr(bce_fast, fn)(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_rel(got[1], want[1], 1e-14)
    want = torch.nn.functional.cross_entropy(tx, torch.from_numpy(t), reduction="none").numpy()
    got = bce_fast.cross_entropy(x, t, reduction="none")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_rel(got[1], want[1], 1e-14)


# ----------------------------------------------------- cross-entropy / nll

@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SIDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_reference(dtype, shape, reduction, rng):
    x = logits(shape, dtype, rng)
    C = x.shape[1 if x.ndim > 1 else 0]
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    t = index_target(x, rng, ignore=-100)
    tol = ulp_tol(x, 1 if x.ndim > 1 else 0, dtype)
    tol = np.max(tol) if np.size(tol) else 0.0
    for kw in [{}, {"weight": w}, {"weight": w, "label_smoothing": 0.3},
               {"label_smoothing": 1.0}]:
        got = bce_fast.cross_entropy(x, t, reduction=reduction, **kw)
        want = ref.cross_entropy(x, t, reduction=reduction, **kw)
        assert_loss(got, want, dtype, reduction, tol)
    p = prob_target(x, rng)
    for kw in [{}, {"weight": w, "label_smoothing": 0.2}]:
        got = bce_fast.cross_entropy(x, p, reduction=reduction, **kw)
        want = ref.cross_entropy(x, p, reduction=reduction, **kw)
        assert_loss(got, want, dtype, reduction, tol)
    lp = ref.log_softmax(x, axis=1 if x.ndim > 1 else 0).astype(dtype)
    for kw in [{}, {"weight": w}]:
        got = bce_fast.nll_loss(lp, t, reduction=reduction, **kw)
        want = ref.nll_loss(lp, t, reduction=reduction, **kw)
        assert_loss(got, want, dtype, reduction, 2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", [(7,), (5, 7), (3, 7, 4), (2, 7, 3, 5), (2, 3, 2, 2, 2),
                                   (6, 1), (0, 4)], ids=SIDS[:7])
def test_cross_entropy_matches_torch(dtype, shape, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = logits(shape, dtype, rng)
    C = x.shape[1 if x.ndim > 1 else 0]
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    t = index_target(x, rng, ignore=-100)
    p = prob_target(x, rng)
    xt, pt, wt = map(torch.from_numpy, (x, p, w))
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for reduction in REDUCTIONS:
        for kw, tkw in [({}, {}), ({"weight": w}, {"weight": wt}),
                        ({"weight": w, "label_smoothing": 0.25},
                         {"weight": wt, "label_smoothing": 0.25}),
                        ({"ignore_index": 0, "weight": w, "label_smoothing": 0.5},
                         {"ignore_index": 0, "weight": wt, "label_smoothing": 0.5})]:
            t = np.where(t == -100, kw.get("ignore_index", -100), t)
            tt = torch.from_numpy(t)
            got = bce_fast.cross_entropy(x, t, reduction=reduction, **kw)
            want = F.cross_entropy(xt, tt, reduction=reduction, **tkw).numpy()
            assert_rel(got, want, rtol, 1e-6 if dtype == np.float32 else 1e-14)
            got = bce_fast.cross_entropy(x, p, reduction=reduction,
                                         **{k: v for k, v in kw.items() if k != "ignore_index"})
            want = F.cross_entropy(xt, pt, reduction=reduction,
                                   **{k: v for k, v in tkw.items() if k != "ignore_index"}).numpy()
            assert_rel(got, want, rtol, 1e-6 if dtype == np.float32 else 1e-14)
            got = bce_fast.nll_loss(x, t, reduction=reduction,
                                    **{k: v for k, v in kw.items() if k != "label_smoothing"})
            want = F.nll_loss(xt, tt, reduction=reduction,
                              **{k: v for k, v in tkw.items() if k != "label_smoothing"}).numpy()
            assert_rel(got, want, rtol, 1e-30)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                    np.int64, np.uint64])
def test_any_integer_target_dtype(tdtype, rng):
    x = logits((9, 5, 3), np.float32, rng)
    t = index_target(x, rng, dtype=np.int64)
    want = ref.cross_entropy(x, t)
    assert_reduced_close(bce_fast.cross_entropy(x, t.astype(tdtype)), want, np.float32)
    assert_reduced_close(bce_fast.nll_loss(x, t.astype(tdtype), reduction="sum"),
                         ref.nll_loss(x, t, reduction="sum"), np.float32)


def test_ignore_index_corner_cases(rng):
    x = logits((4, 3), np.float64, rng)
    t = np.full(4, -100)
    assert np.isnan(bce_fast.cross_entropy(x, t))
    assert bce_fast.cross_entropy(x, t, reduction="sum") == 0.0
    assert np.isnan(bce_fast.cross_entropy(x, t, label_smoothing=0.5))
    np.testing.assert_array_equal(bce_fast.cross_entropy(x, t, reduction="none"), 0.0)
    assert np.isnan(bce_fast.nll_loss(x, t))
    # an ignored row may hold anything, even NaN or a non-class value
    x[1] = np.nan
    t = np.array([0, 7, 2, 1])
    got = bce_fast.cross_entropy(x, t, ignore_index=7, label_smoothing=0.1)
    assert_reduced_close(got, ref.cross_entropy(x[[0, 2, 3]], t[[0, 2, 3]],
                                                label_smoothing=0.1), np.float64)
    # N = 0 and probability targets with no rows
    e = np.empty((0, 3))
    assert np.isnan(bce_fast.cross_entropy(e, np.empty(0, np.int64)))
    assert bce_fast.cross_entropy(e, np.empty(0, np.int64), reduction="sum") == 0.0
    assert np.isnan(bce_fast.cross_entropy(e, np.empty((0, 3))))
    assert bce_fast.cross_entropy(e, np.empty(0, np.int64), reduction="none").shape == (0,)


@pytest.mark.parametrize("shape", [(4, 0), (2, 0, 3)], ids=["rows", "NCd"])
def test_zero_classes_with_every_target_ignored(shape):
    """No classes and every position ignored is a valid call: losses 0, the
    mean NaN (all ignored), gradients empty; the kernels must not read the
    empty logits or weights (the sanitizer run checks that)."""
    x = np.empty(shape, np.float32)
    t = np.full(shape[:1] + shape[2:], -100)
    w = np.empty(0, np.float32)
    for fn in (bce_fast.cross_entropy, bce_fast.nll_loss):
        for weight in (None, w):
            np.testing.assert_array_equal(fn(x, t, weight, reduction="none"), 0.0)
            assert fn(x, t, weight, reduction="sum") == 0.0
            assert np.isnan(fn(x, t, weight))
    loss, grad = bce_fast.cross_entropy_and_grad(x, t, w, reduction="sum", label_smoothing=0.1)
    assert loss == 0.0 and grad.shape == shape
    np.testing.assert_array_equal(bce_fast.cross_entropy(x, np.empty(shape, np.float32),
                                                         reduction="none"), 0.0)


def test_axis_last_matches_torch_after_moveaxis(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = logits((3, 5, 6), np.float32, rng)               # (N, L, C)
    t = rng.integers(0, 6, (3, 5))
    t[0, 0] = -100
    w = rng.uniform(0.5, 2, 6).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    for reduction in REDUCTIONS:
        got = bce_fast.cross_entropy(x, t, weight=w, reduction=reduction, axis=-1,
                                     label_smoothing=0.1)
        want = F.cross_entropy(xt, torch.from_numpy(t), weight=torch.from_numpy(w),
                               reduction=reduction, label_smoothing=0.1).numpy()
        assert_rel(got, want, 2e-5, 1e-6)
    p = prob_target(x, rng, ax=2)
    got = bce_fast.cross_entropy(x, p, axis=2, reduction="none")
    want = F.cross_entropy(xt, torch.from_numpy(np.ascontiguousarray(np.moveaxis(p, -1, 1))),
                           reduction="none").numpy()
    assert_rel(got, want, 2e-5, 1e-6)
    m = bce_fast.CrossEntropyLoss(axis=-1, reduction="sum")
    assert_reduced_close(m(x, t), ref.cross_entropy(x, t, axis=-1, reduction="sum"),
                         np.float32)


def _peak_growth(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_reduced_loss_and_axis_do_not_copy_logits(rng):
    x = logits((2048, 1000), np.float32, rng)                      # 8 MB
    t = rng.integers(0, 1000, 2048)
    # nothing proportional to N, C or N x C (no array of unit weights either)
    assert _peak_growth(lambda: bce_fast.cross_entropy(x, t)) < 3_000
    assert _peak_growth(lambda: bce_fast.cross_entropy(x, t, label_smoothing=0.1,
                                                       reduction="sum")) < 3_000
    y = x.reshape(64, 32, 1000)
    assert _peak_growth(lambda: bce_fast.cross_entropy(y, t.reshape(64, 32), axis=-1)) \
        < 3_000
    z = x.reshape(8, 256000)                                        # split kernel
    assert _peak_growth(lambda: bce_fast.cross_entropy(z, t[:8], label_smoothing=0.1)) \
        < 10_000
    # a non-contiguous input is made contiguous once, not more
    assert _peak_growth(lambda: bce_fast.cross_entropy(x[:, ::2], t // 2)) < 5_000_000


def test_out_for_reduction_none(rng):
    x = logits((4, 5, 2), np.float64, rng)
    t = index_target(x, rng)
    out = np.empty((4, 2))
    assert bce_fast.cross_entropy(x, t, reduction="none", out=out) is out
    assert_rel(out, ref.cross_entropy(x, t, reduction="none"), 1e-14)
    out32 = np.empty((2, 4)).T
    bce_fast.nll_loss(x, t, reduction="none", out=out32)
    assert_rel(out32, ref.nll_loss(x, t, reduction="none"), 1e-15)
    with pytest.raises(ValueError, match="out: only used with reduction='none'"):
        bce_fast.cross_entropy(x, t, out=out)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 2\)"):
        bce_fast.cross_entropy(x, t, reduction="none", out=np.empty(8))


def test_float16_and_result_dtypes(rng):
    x = logits((6, 4), np.float16, rng, 2.0)
    t = index_target(x, rng)
    got = bce_fast.cross_entropy(x, t)
    assert got.dtype == np.float16
    assert abs(float(got) - float(ref.cross_entropy(x, t))) <= 1e-3 * abs(float(got))
    assert bce_fast.cross_entropy(x.astype(np.float32), t, weight=np.ones(4)).dtype \
        == np.float64
    assert bce_fast.cross_entropy(x.astype(np.float32), t, weight=[1, 2, 3, 4]).dtype \
        == np.float32


def test_error_messages(rng):
    x = logits((3, 4), np.float32, rng)
    with pytest.raises(IndexError, match=r"^Target 4 is out of bounds\.$"):
        bce_fast.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match=r"^Target -1 is out of bounds\.$"):
        bce_fast.nll_loss(x, np.array([0, 1, -1]))
    with pytest.raises(IndexError, match=r"^Target 9 is out of bounds\.$"):
        bce_fast.cross_entropy_and_grad(logits((2, 4, 3), np.float32, rng),
                                        np.array([[0, 1, 9], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"target: expected shape \(3,\)"):
        bce_fast.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"weight: expected shape \(4,\)"):
        bce_fast.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match="label_smoothing: expected a value in"):
        bce_fast.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=-0.1)
    with pytest.raises(ValueError, match="label_smoothing: expected a value in"):
        bce_fast.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index: not supported with probability"):
        bce_fast.cross_entropy(x, np.full((3, 4), 0.25, np.float32), ignore_index=0)
    with pytest.raises(ValueError, match="target: probability targets must have the shape"):
        bce_fast.cross_entropy(x, np.full((3, 3), 0.25))
    with pytest.raises(TypeError, match="target: expected integer class indices"):
        bce_fast.nll_loss(x, np.zeros(3))
    with pytest.raises(TypeError, match="target: expected integer class indices or float"):
        bce_fast.cross_entropy(x, np.zeros(3, bool))
    with pytest.raises(TypeError, match="input: expected a floating-point array"):
        bce_fast.cross_entropy(np.zeros((3, 4), np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        bce_fast.cross_entropy(x, np.zeros(3, np.int64), reduction="avg")
    with pytest.raises(ValueError, match="input: expected at least 1 dimension"):
        bce_fast.cross_entropy(np.float32(1.0), np.int64(0))
    # uint64 indices >= 2**63 must not wrap onto ignore_index (-100) or anything else
    big = np.array([0, 2**64 - 100, 1], np.uint64)
    with pytest.raises(IndexError, match=r"^Target 18446744073709551516 is out of bounds\.$"):
        bce_fast.cross_entropy(x, big, reduction="none")
    with pytest.raises(IndexError, match=r"^Target 9223372036854775808 is out of bounds\.$"):
        bce_fast.softmax_grad_hess(x, np.array([0, 2**63, 1], np.uint64))
    with pytest.raises(ValueError, match="ignore_index: expected a value in the int64 range"):
        bce_fast.nll_loss(x, np.array([0, 1, 2]), ignore_index=2**63)


def test_loss_modules(rng):
    x = logits((5, 4), np.float64, rng)
    t = index_target(x, rng)
    w = rng.uniform(0.5, 2, 4)
    m = bce_fast.CrossEntropyLoss(weight=w, label_smoothing=0.2, reduction="sum")
    assert m(x, t) == bce_fast.cross_entropy(x, t, weight=w, label_smoothing=0.2,
                                             reduction="sum")
    assert "label_smoothing=0.2" in repr(m)
    n = bce_fast.NLLLoss(ignore_index=1)
    assert n(x, t) == bce_fast.nll_loss(x, t, ignore_index=1)


# ------------------------------------------- few long rows (split kernel)

@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", [(1, 70000), (3, 65536)], ids=["1x70000", "3x65536"])
def test_long_rows_split_over_classes(dtype, shape, rng):
    """Fewer than 16 rows of >= 65536 classes are split over class blocks
    (so threads share a row); results must not change."""
    x = logits(shape, dtype, rng)
    x[0, 100:20000] -= 40                                 # blocks with different maxima
    tol = np.max(ulp_tol(x, 1, dtype))
    for fn in ("softmax", "log_softmax"):
        assert_rel(getattr(bce_fast, fn)(x), getattr(ref, fn)(x), tol, np.finfo(dtype).tiny)
    t = rng.integers(0, shape[1], shape[0])
    w = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    for kw in [{}, {"weight": w, "label_smoothing": 0.2}, {"label_smoothing": 0.3}]:
        for reduction in REDUCTIONS:
            assert_loss(bce_fast.cross_entropy(x, t, reduction=reduction, **kw),
                        ref.cross_entropy(x, t, reduction=reduction, **kw), dtype, reduction,
                        tol)
    p = prob_target(x, rng)
    assert_loss(bce_fast.cross_entropy(x, p, weight=w, reduction="none"),
                ref.cross_entropy(x, p, weight=w, reduction="none"), dtype, "none", tol)
    assert_loss(bce_fast.cross_entropy(x, p, label_smoothing=0.1, reduction="sum"),
                ref.cross_entropy(x, p, label_smoothing=0.1, reduction="sum"), dtype, "sum", tol)
    t[0] = -100
    assert_reduced_close(bce_fast.cross_entropy(x, t, label_smoothing=0.1),
                         ref.cross_entropy(x, t, label_smoothing=0.1), dtype)
    with pytest.raises(IndexError, match=f"Target {shape[1]} is out"):
        bce_fast.cross_entropy(x, np.full(shape[0], shape[1]))


def test_long_rows_special_values_follow_torch():
    torch = pytest.importorskip("torch")
    C = 70000
    x = np.zeros((4, C))
    x[0, 5] = np.inf
    x[1] = -np.inf
    x[2, :-3] = -np.inf                                  # whole blocks of -inf
    x[3, 40000] = np.nan
    for fn in ("softmax", "log_softmax"):
        want = getattr(torch, fn)(torch.from_numpy(x), 1).numpy()
        got = getattr(bce_fast, fn)(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_rel(got, want, 1e-14)


# ------------------------------------------------------------ determinism

@pytest.mark.parametrize("shape,ax", [((300, 1000), None), ((40, 50, 64), None),
                                      ((8, 40000), None), ((3, 70000), None),
                                      ((6000, 20), None), ((3000, 50), None),
                                      ((70000, 3), None)],
                         ids=["rows", "inner", "fewrows", "split", "small", "mid",
                              "nll_threads"])
def test_bit_identical_across_threads_and_runs(shape, ax, rng):
    x = logits(shape, np.float32, rng)
    t = index_target(x, rng, ignore=-100)
    before = bce_fast.get_num_threads()
    try:
        res = []
        for n in (1, 2, 2):
            bce_fast.set_num_threads(n)
            res.append((bce_fast.cross_entropy(x, t), bce_fast.cross_entropy(x, t, reduction="sum",
                                                                            label_smoothing=0.1),
                        bce_fast.log_softmax(x, axis=1), bce_fast.cross_entropy_and_grad(x, t)[1],
                        bce_fast.nll_loss(x, t, reduction="sum")))
    finally:
        bce_fast.set_num_threads(before)
    for other in res[1:]:
        for a, b in zip(res[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("shape", [(300, 6), (300, 40), (100, 600), (30, 5, 21)],
                         ids=["small", "rows", "long", "inner"])
def test_per_position_results_do_not_depend_on_the_batch_split(dtype, shape, rng):
    """A row's (or position's) results are the same bits whether it is
    computed with its whole batch or in a slice of 37 rows, which lands it
    elsewhere in the kernels' tiles and vector loops (Dask's blocks rely on
    it)."""
    x = logits(shape, dtype, rng)
    t = index_target(x, rng, ax=1, ignore=-100)
    w = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    parts = [slice(i, i + 37) for i in range(0, shape[0], 37)]
    calls = [lambda x, t: bce_fast.log_softmax(x, axis=1),
             lambda x, t: bce_fast.softmax(x, axis=1),
             lambda x, t: bce_fast.cross_entropy(x, t, reduction="none"),
             lambda x, t: bce_fast.cross_entropy(x, t, w, reduction="none",
                                                 label_smoothing=0.2),
             lambda x, t: bce_fast.cross_entropy_and_grad(x, t, w, reduction="none",
                                                          label_smoothing=0.2)[1],
             lambda x, t: bce_fast.nll_loss(x, t, w, reduction="none")]
    for call in calls:
        whole = call(x, t)
        split = np.concatenate([call(x[s], t[s]) for s in parts])
        assert whole.tobytes() == split.tobytes()


def test_every_isa_within_tolerance(isa, rng):
    x = logits((64, 300), np.float32, rng)
    t = index_target(x, rng)
    y = logits((4, 30, 17), np.float64, rng)
    assert_reduced_close(bce_fast.cross_entropy(x, t), ref.cross_entropy(x, t), np.float32)
    assert_rel(bce_fast.log_softmax(x), ref.log_softmax(x), ulp_tol(x, -1, np.float32))
    assert_rel(bce_fast.softmax(y, axis=1), ref.softmax(y, axis=1), ulp_tol(y, 1, np.float64))
    yt = index_target(y, rng)
    assert_reduced_close(bce_fast.cross_entropy(y, yt, label_smoothing=0.3),
                         ref.cross_entropy(y, yt, label_smoothing=0.3), np.float64)
    z = logits((300, 7), np.float32, rng)                          # small-C kernel
    zt = index_target(z, rng)
    assert_reduced_close(bce_fast.cross_entropy(z, zt, reduction="sum"),
                         ref.cross_entropy(z, zt, reduction="sum"), np.float32)
    assert_rel(bce_fast.softmax(z), ref.softmax(z), ulp_tol(z, -1, np.float32), 1e-38)
    v = logits((2, 70000), np.float64, rng)                        # split kernel
    vt = index_target(v, rng)
    assert_reduced_close(bce_fast.cross_entropy(v, vt), ref.cross_entropy(v, vt), np.float64)
    assert_rel(bce_fast.log_softmax(v), ref.log_softmax(v), ulp_tol(v, -1, np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("C", [30, 1000, 40000])
def test_tiles_beyond_the_fast_exp_range_give_the_same_bits(dtype, C, isa, rng):
    """The row sweeps take exp(x - m) through the exponent bits while every
    x - m of a tile (or of a group of short rows) is within -86 / -707, and
    sweep it again with the clamped exp otherwise.  One class moved from just
    inside the range to beyond it, in the max's tile or in another, must
    leave every other class's result as it was: its exp is lost in the sum
    either way, and the other exps must not change with the path."""
    inside, beyond = (80.0, 100.0) if dtype == np.float32 else (700.0, 800.0)
    x = rng.normal(scale=2.0, size=(4, C)).astype(dtype)
    t = (np.argmax(x, axis=1) + 1) % C
    rows = np.arange(4)
    calls = [lambda a: bce_fast.softmax(a), lambda a: bce_fast.log_softmax(a),
             lambda a: bce_fast.cross_entropy(a, t, reduction="none"),
             lambda a: bce_fast.cross_entropy_and_grad(a, t, reduction="sum")[1]]
    for k in (np.argmax(x, axis=1) + 3) % C, (np.argmax(x, axis=1) + C // 2) % C:
        a, b = x.copy(), x.copy()
        a[rows, k] = x.max(axis=1) - dtype(inside)
        b[rows, k] = x.max(axis=1) - dtype(beyond)
        keep = np.ones(x.shape, bool)
        keep[rows, k] = False
        for f in calls:
            ra, rb = f(a), f(b)
            if ra.ndim == 1:                        # per-row losses
                assert ra.tobytes() == rb.tobytes()
            else:
                assert ra[keep].tobytes() == rb[keep].tobytes()
        assert_rel(bce_fast.log_softmax(b), ref.log_softmax(b), ulp_tol(b, -1, dtype))


def test_isa_levels_agree_closely(rng):
    """Every supported level gives the same result up to FMA contraction."""
    before = bce_fast.isa()
    x = logits((50, 700), np.float32, rng)
    t = index_target(x, rng)
    res = []
    try:
        for level in _core.ISA_LEVELS:
            if _core.isa_supported(level):
                _core.select_isa(level)
                res.append((bce_fast.cross_entropy(x, t), bce_fast.log_softmax(x)))
    finally:
        _core.select_isa(before)
    assert bce_fast.isa() == before
    for loss, ls in res[1:]:
        assert abs(float(loss) - float(res[0][0])) <= RED_RTOL[np.dtype(np.float32)] * float(loss)
        assert_rel(ls, res[0][1], 8 * np.finfo(np.float32).eps)


def test_doctests():
    from bce_fast import _softmax
    result = doctest.testmod(_softmax, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_differential_fuzz_against_reference():
    """Random shapes, class axes, dtypes and options against the reference."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    hnp = pytest.importorskip("hypothesis.extra.numpy")

    @hyp.settings(max_examples=60, deadline=None, derandomize=True)
    @hyp.given(data=st.data())
    def check(data):
        dtype = data.draw(st.sampled_from(FLOATS))
        shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6))
        x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-60, 60, width=32)))
        ax = data.draw(st.integers(-x.ndim, x.ndim - 1))
        C = x.shape[ax]
        pshape = x.shape[:ax % x.ndim] + x.shape[ax % x.ndim + 1:]
        t = data.draw(hnp.arrays(np.int64, pshape, elements=st.integers(-1, C - 1)))
        reduction = data.draw(st.sampled_from(REDUCTIONS))
        eps = data.draw(st.sampled_from([0.0, 0.25]))
        w = data.draw(st.none() | hnp.arrays(dtype, (C,), elements=st.floats(0.25, 4, width=32)))
        tol = np.max(ulp_tol(x, ax, dtype))
        for fn in ("softmax", "log_softmax"):
            assert_rel(getattr(bce_fast, fn)(x, axis=ax), getattr(ref, fn)(x, axis=ax),
                       tol, np.finfo(dtype).tiny)
        kw = dict(weight=w, ignore_index=-1, reduction=reduction, label_smoothing=eps, axis=ax)
        got = bce_fast.cross_entropy(x, t, **kw)
        want = ref.cross_entropy(x, t, **kw)
        if reduction == "none":
            assert_rel(got, want, 4 * tol, 1e-30)
        elif np.isnan(want):
            assert np.isnan(got)
        else:
            # a reduced sum of terms of either sign (none here: all >= 0)
            assert abs(float(got) - float(want)) <= 4 * tol * abs(float(want)) + 1e-30

    check()


@pytest.mark.parametrize("dtype", FLOATS, ids=FIDS)
@pytest.mark.parametrize("C", [16, 33, 50, 100])
def test_short_rows_do_not_depend_on_their_neighbours(dtype, C, rng):
    """Rows of at most 400 bytes are swept a group of up to eight at a time
    (sm_flat_sweep in bf_softmax.h), and the maxima are counted row by row
    only when the group's total count says some row may have other than
    one.  A row's results must equal those of the row alone, bit for bit,
    whatever its neighbours (tied maxima, rows of -inf or NaN, +inf), and
    the finite rows must match float64 NumPy."""
    x = logits((24, C), dtype, rng)
    x[1, [3, 7]] = x[1].max() + 1                        # two tied maxima
    x[2] = -np.inf
    x[3] = np.nan                                        # no element is its max
    x[4, 5] = np.inf
    x[9] = 2.0                                           # all tied
    x[10, [0, C - 1]] = 50.0                             # confident, tied at both ends
    x[12, 2] = np.nan
    x[17] = np.nan                                       # counts none, and beside it
    x[18, [1, 4]] = x[18].max() + 1                      # two: a total of one a row
    t = rng.integers(0, C, 24)
    calls = {
        "softmax": lambda a, tt: [bce_fast.softmax(a)],
        "log_softmax": lambda a, tt: [bce_fast.log_softmax(a)],
        "cross_entropy": lambda a, tt: [bce_fast.cross_entropy(a, tt, reduction="none")],
        "cross_entropy_and_grad":
            lambda a, tt: list(bce_fast.cross_entropy_and_grad(a, tt, reduction="none")),
        "softmax_grad_hess": lambda a, tt: list(bce_fast.softmax_grad_hess(a, tt)),
    }
    xd = x.astype(np.float64)
    finite = np.isfinite(xd).all(axis=1)
    with np.errstate(invalid="ignore"):                  # the non-finite rows
        m = xd.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(xd - m).sum(axis=1))
        p = np.exp(xd - lse[:, None])
    onehot = np.eye(C)[t]
    want = {"softmax": [p], "log_softmax": [xd - lse[:, None]],
            "cross_entropy": [lse - xd[np.arange(24), t]],
            "cross_entropy_and_grad": [lse - xd[np.arange(24), t], p - onehot],
            "softmax_grad_hess": [p - onehot, p * (1 - p)]}
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for name, fn in calls.items():
        batch = fn(x, t)
        for r in range(24):
            alone = fn(x[r:r + 1], t[r:r + 1])
            for got, one in zip(batch, alone):
                np.testing.assert_array_equal(got[r], one[0], err_msg=f"{name} row {r}")
        for got, exact in zip(batch, want[name]):
            np.testing.assert_allclose(got[finite], exact[finite], rtol=tol, atol=tol,
                                       err_msg=name)
        assert np.isnan(batch[0][[2, 3, 4, 12, 17]]).all(), name
