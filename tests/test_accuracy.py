"""Accuracy against arbitrary precision (mpmath), as SEMANTICS.md promises:
sigmoid and log_sigmoid within 2 ULP, per-element binary losses within
4 ULP, binary gradients within 4 ULP for hard targets and within
4 eps max(|p|, |y|) absolute for soft targets; for x in +-[1e-8, 1e4]
(log-spaced) and the subnormal tail, in float32 and float64, under every
ISA level the CPU supports.  Also inf / NaN behaviour and the accuracy of
reduced losses against an exact sum.

The exact values are computed once per dtype at the inputs *as rounded to
the dtype* and stored as double-double (hi + lo), so the error of a float64
result is measured exactly enough in plain NumPy."""
import functools
import math

import numpy as np
import pytest

import bce_fast
from bce_fast import _reference as ref

mp = pytest.importorskip("mpmath")

ULP_BOUND = {"sigmoid": 2, "log_sigmoid": 2, "loss": 4, "grad": 4}
DTYPES = [np.float32, np.float64]
IDS = ["f32", "f64"]


# Inputs where a random search (2e6 float32, 5e4 float64 points) found the
# largest sigmoid errors of the kernels, and (float64, 1.8e7 points against
# long double) the largest log_sigmoid error; where the Hessian, as a product
# of two quotients by fl(1 + e), was 4.1-4.2 ULP off (2e6 points against long
# double); +-ln 2, where exp(-|x|) crosses 1/2 and float64 log1p switches from
# f = e to f = (e - 1)/2; where log_sigmoid without FMA took 2.27 ULP (an
# audit's exhaustive float32 scan; 1.80 there with its last step in double).
_LN2 = float(np.log(2.0))
HARD_LOGITS = {np.float32: [-4.158506, 4.150514, -1.9483833, 4.838834762573242,
                            -2.6459012031555176, -0.019062549],
               np.float64: [-3.450774064365456, -2.063063439278278, 0.4590286879522294,
                            2.690065523038628, 2.646127779008462]
               + [s * v for s in (1, -1) for v in (np.nextafter(_LN2, 0), _LN2,
                                                   np.nextafter(_LN2, 1))]}


def logits(dtype):
    """+-logspace(1e-8, 1e4), 150 points a side, plus 40 points where
    sigmoid's result is subnormal (x down to the underflow of exp), and the
    extremes of the finite range (subnormal, tiny, huge, max)."""
    m = np.logspace(-8, 4, 150)
    lo = -103.0 if dtype == np.float32 else -744.0
    tail = np.linspace(lo, lo + 20, 40)
    info = np.finfo(dtype)
    extremes = np.array([float(info.smallest_subnormal), float(info.tiny), 1e6, 1e30,
                         float(info.max)])
    hard = HARD_LOGITS.get(dtype, [])
    with np.errstate(over="ignore"):
        return np.unique(np.concatenate([-m, m, tail, extremes, -extremes, hard]).astype(dtype))


def probabilities(dtype):
    """p and 1 - p for p in logspace(1e-8, 1), inside [0, 1], plus
    subnormal and tiny p (where PyTorch's clamp of log p at -100 acts)."""
    m = np.logspace(-8, 0, 150)
    info = np.finfo(dtype)
    tiny = np.geomspace(float(info.smallest_subnormal), float(info.tiny) * 1e8, 20)
    p = np.unique(np.concatenate([m, 1 - m, tiny]).astype(dtype))
    return p[(p >= 0) & (p <= 1)]


def _mp_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _mp_softplus(x):
    return mp.log1p(mp.exp(x))


def _dd(values):
    """mpf values as double-double (hi, lo) arrays."""
    hi = np.array([float(v) for v in values])
    lo = np.array([float(v - mp.mpf(h)) if np.isfinite(h) else 0.0
                   for v, h in zip(values, hi)])
    return hi, lo


# Weights with inexact products (0.3 * 3.0), so the coefficient roundings count.
W, PW = 0.3, 3.0


@functools.lru_cache(maxsize=None)
def exact(dtype):
    """{quantity: (inputs..., (hi, lo))} at the dtype's grid, exact to ~1e-36."""
    dtype = np.dtype(dtype).type
    with mp.workprec(160):
        x = logits(dtype)
        xm = [mp.mpf(float(v)) for v in x]
        sig = [_mp_sigmoid(v) for v in xm]
        sig_neg = [_mp_sigmoid(-v) for v in xm]
        sp = [_mp_softplus(v) for v in xm]
        sp_neg = [_mp_softplus(-v) for v in xm]
        w, pw = mp.mpf(float(dtype(W))), mp.mpf(float(dtype(PW)))
        e = {
            "sigmoid": (x, _dd(sig)),
            "log_sigmoid": (x, _dd([-s for s in sp_neg])),
            "bce_logits y=0": (x, 0.0, _dd(sp)),
            "bce_logits y=1": (x, 1.0, _dd(sp_neg)),
            "bce_logits y=0 w": (x, 0.0, _dd([w * s for s in sp])),
            "bce_logits y=1 w pw": (x, 1.0, _dd([w * pw * s for s in sp_neg])),
            "grad y=0": (x, 0.0, _dd(sig)),
            "grad y=1": (x, 1.0, _dd([-s for s in sig_neg])),
            "grad y=1 w pw": (x, 1.0, _dd([-w * pw * s for s in sig_neg])),
            "hess": (x, _dd([a * b for a, b in zip(sig, sig_neg)])),
        }
        for yv in (0.25, 0.7):
            y = mp.mpf(float(dtype(yv)))
            e[f"bce_logits y={yv}"] = (x, yv, _dd([(1 - y) * a + y * b
                                                   for a, b in zip(sp, sp_neg)]))
            e[f"grad y={yv}"] = (x, yv, _dd([(1 - y) * a - y * b
                                            for a, b in zip(sig, sig_neg)]))
        p = probabilities(dtype)
        pm = [mp.mpf(float(v)) for v in p]
        clamp = mp.mpf(float(dtype(1e-12)))

        def log_c(v):
            return max(mp.log(v), -100) if v > 0 else mp.mpf(-100)

        def log1m_c(v):
            return max(mp.log1p(-v), -100) if v < 1 else mp.mpf(-100)

        for yv in (0.0, 1.0, 0.3):
            y = mp.mpf(float(dtype(yv)))
            e[f"bce y={yv}"] = (p, yv, _dd([-(y * log_c(v) + (1 - y) * log1m_c(v))
                                            for v in pm]))
            # Away from PyTorch's clamp, whose constant is rounded differently
            # by the kernel (to the dtype) and by nothing here.
            keep = np.array([v * (1 - v) > 2 * clamp for v in pm])
            e[f"bce grad y={yv}"] = (p[keep], yv, _dd([(v - y) / (v * (1 - v))
                                                       for v, k in zip(pm, keep) if k]))
    return e


def ulp_errors(got, hi, lo, dtype):
    """|got - exact| in ULPs of the exact value's dtype rounding."""
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((got - hi) - lo)
        ulp = np.spacing(np.abs(hi.astype(dtype))).astype(np.float64)
    return err / ulp


def assert_ulp(name, inputs, got, hi, lo, dtype, bound, isa):
    e = ulp_errors(got, hi, lo, dtype)
    i = int(np.argmax(e))
    assert e[i] <= bound, (
        f"{name} {np.dtype(dtype).name} [{isa}]: {e[i]:.2f} ULP > {bound} at input "
        f"{inputs[i]!r}: got {np.asarray(got)[i]!r}, exact {hi[i]!r} + {lo[i]!r}")


# ------------------------------------------------------------ ULP bounds


@pytest.mark.parametrize("name", ["sigmoid", "log_sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_sigmoid_and_log_sigmoid_ulp(dtype, name, isa):
    x, (hi, lo) = exact(dtype)[name]
    got = getattr(bce_fast, name)(x)
    assert_ulp(name, x, got, hi, lo, dtype, ULP_BOUND[name], isa)


@pytest.mark.parametrize("case", ["y=0", "y=1", "y=0 w", "y=1 w pw", "y=0.25", "y=0.7"])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_bce_with_logits_ulp(dtype, case, isa):
    x, yv, (hi, lo) = exact(dtype)["bce_logits " + case]
    w = np.full_like(x, W) if " w" in case else None
    pw = np.full_like(x, PW) if "pw" in case else None
    y = np.full_like(x, yv)
    got = bce_fast.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none")
    assert_ulp("bce_logits " + case, x, got, hi, lo, dtype, ULP_BOUND["loss"], isa)
    loss, _ = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w, pw, reduction="none")
    np.testing.assert_array_equal(loss, got)


@pytest.mark.parametrize("case", ["y=0", "y=1", "y=1 w pw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_bce_with_logits_grad_ulp_hard_targets(dtype, case, isa):
    x, yv, (hi, lo) = exact(dtype)["grad " + case]
    w = np.full_like(x, W) if " w" in case else None
    pw = np.full_like(x, PW) if "pw" in case else None
    _, g = bce_fast.binary_cross_entropy_with_logits_and_grad(
        x, np.full_like(x, yv), w, pw, reduction="none")
    assert_ulp("bce_logits grad " + case, x, g, hi, lo, dtype, ULP_BOUND["grad"], isa)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_grad_soft_targets_absolute(dtype, isa):
    eps = float(np.finfo(dtype).eps)
    for yv in (0.25, 0.7):
        x, _, (hi, lo) = exact(dtype)[f"grad y={yv}"]
        y = np.full_like(x, yv)
        _, g = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none")
        bound = 4 * eps * np.maximum(ref.sigmoid(x), float(dtype(yv)))
        err = np.abs((g.astype(np.float64) - hi) - lo)
        i = int(np.argmax(err / bound))
        assert err[i] <= bound[i], (f"grad y={yv} [{isa}] at x={x[i]!r}: error {err[i]:.3g}"
                                    f" > {bound[i]:.3g}")
    p, yv, (hi, lo) = exact(dtype)["bce grad y=0.3"]
    _, g = bce_fast.binary_cross_entropy_and_grad(p, np.full_like(p, yv), reduction="none")
    pf = p.astype(np.float64)
    bound = 4 * eps * np.maximum(pf, 0.3) / (pf * (1 - pf))
    err = np.abs((g.astype(np.float64) - hi) - lo)
    i = int(np.argmax(err / bound))
    assert err[i] <= bound[i], f"bce grad y=0.3 [{isa}] at p={p[i]!r}: {err[i]:.3g} > {bound[i]:.3g}"


@pytest.mark.parametrize("yv", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_bce_probabilities_ulp(dtype, yv, isa):
    p, _, (hi, lo) = exact(dtype)[f"bce y={yv}"]
    got = bce_fast.binary_cross_entropy(p, np.full_like(p, yv), reduction="none")
    assert_ulp(f"bce y={yv}", p, got, hi, lo, dtype, ULP_BOUND["loss"], isa)
    if yv in (0.0, 1.0):
        p, _, (hi, lo) = exact(dtype)[f"bce grad y={yv}"]
        _, g = bce_fast.binary_cross_entropy_and_grad(p, np.full_like(p, yv), reduction="none")
        assert_ulp(f"bce grad y={yv}", p, g, hi, lo, dtype, ULP_BOUND["grad"], isa)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_logistic_grad_hess_ulp(dtype, isa):
    e = exact(dtype)
    x, (hi, lo) = e["hess"]
    g, h = bce_fast.logistic_grad_hess(x, np.zeros_like(x))
    assert_ulp("hess", x, h, hi, lo, dtype, ULP_BOUND["grad"], isa)
    _, _, (hi, lo) = e["grad y=1"]
    g, h = bce_fast.logistic_grad_hess(x, np.ones_like(x))
    assert_ulp("grad_hess grad y=1", x, g, hi, lo, dtype, ULP_BOUND["grad"], isa)


# Weights that magnify: exp(-|x|) is subnormal beyond |x| = 87 (float32) /
# 708 (float64), where its rounding error is up to half a subnormal step; a
# weight times it must still be the product rounded once.  The largest weight
# keeps w exp(-|x|) normal out to |x| = 156 / 1160.
TAIL = {np.float32: (np.linspace(80.0, 160.0, 81), [10.0, 1e6, 2.0 ** 100]),
        np.float64: (np.linspace(700.0, 1170.0, 95), [10.0, 1e6, 2.0 ** 600])}


@functools.lru_cache(maxsize=None)
def exact_tail(dtype):
    """{(quantity, weight): (x, (hi, lo))} for the weighted tail"""
    dtype = np.dtype(dtype).type
    m, weights = TAIL[dtype]
    x = np.concatenate([-m, m]).astype(dtype)
    e = {}
    with mp.workprec(160):
        xm = [mp.mpf(float(v)) for v in x]
        sig = [_mp_sigmoid(v) for v in xm]
        sig_neg = [_mp_sigmoid(-v) for v in xm]
        sp_neg = [_mp_softplus(-v) for v in xm]
        for wv in weights:
            w = mp.mpf(float(dtype(wv)))
            e["loss y=1", wv] = _dd([w * s for s in sp_neg])
            e["grad y=0", wv] = _dd([w * s for s in sig])
            e["grad y=1", wv] = _dd([-w * s for s in sig_neg])
            e["hess", wv] = _dd([w * a * b for a, b in zip(sig, sig_neg)])
    return x, e


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_weight_times_a_subnormal_exp(dtype, isa):
    x, e = exact_tail(dtype)
    for wv in TAIL[dtype][1]:
        w = np.full_like(x, wv)
        for yv in (0.0, 1.0):
            y = np.full_like(x, yv)
            loss, g = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w,
                                                                         reduction="none")
            assert_ulp(f"grad y={yv:g} w={wv:g}", x, g, *e[f"grad y={yv:g}", wv], dtype,
                       ULP_BOUND["grad"], isa)
            if yv == 1.0:
                assert_ulp(f"loss y=1 w={wv:g}", x, loss, *e["loss y=1", wv], dtype,
                           ULP_BOUND["loss"], isa)
                # pos_weight is the same factor as the weight for y = 1
                loss_pw = bce_fast.binary_cross_entropy_with_logits(x, y, pos_weight=w,
                                                                     reduction="none")
                assert_ulp(f"loss y=1 pw={wv:g}", x, loss_pw, *e["loss y=1", wv], dtype,
                           ULP_BOUND["loss"], isa)
            _, h = bce_fast.logistic_grad_hess(x, y, sample_weight=w)
            assert_ulp(f"hess w={wv:g}", x, h, *e["hess", wv], dtype, ULP_BOUND["grad"], isa)
            # an upstream gradient is the same factor for the gradient, and
            # with weights of 1 the loss is the plain one
            _, g_up = bce_fast.binary_cross_entropy_with_logits_and_grad(
                x, y, reduction="none", grad_output=w)
            assert_ulp(f"grad y={yv:g} grad_output={wv:g}", x, g_up,
                       *e[f"grad y={yv:g}", wv], dtype, ULP_BOUND["grad"], isa)


# The softmax family's gradients have the same tail: a class whose
# x_c - m < -87 (float32) / -708 (float64) has a subnormal e_c, and a class
# weight, sample weight or grad_output above 1 times it must still be rounded
# once.  One layout per kernel (few classes transposed, short rows swept as a
# group, long rows, a few rows split over class blocks, the class axis in the
# middle).  The max is 0, so x - m is exact and the row's conditioning term
# (|x - m| / 2 ULP in exp) does not enter: the gradient bound applies to the
# tail classes.  Class 1 sits at -20, so the sum of the exps is normal
# (README: a row whose every other class is in the tail keeps that sum's
# subnormal error, in its loss and target entry).
SM_TAIL = {np.float32: (96.0, 2.0 ** 40), np.float64: (735.0, 2.0 ** 100)}


@functools.lru_cache(maxsize=None)
def exact_softmax_tail(dtype, C):
    """(x, p) for rows with max 0 at class 0, every other class in the tail,
    and p = softmax(x) in mpmath"""
    dtype = np.dtype(dtype).type
    gap, _ = SM_TAIL[dtype]
    rows = 1 if C > 1000 else 3
    x = -(gap + np.random.default_rng(C).uniform(0, 2, (rows, C))).astype(dtype)
    x[:, 0] = 0
    x[:, 1] = -20
    with mp.workprec(160):
        p = []
        for row in x:
            e = [mp.exp(mp.mpf(float(v))) for v in row]
            total = mp.fsum(e)
            p.append([v / total for v in e])
    return x, p


@pytest.mark.parametrize("C", [5, 40, 300, 70000], ids=["few", "group", "rows", "split"])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_softmax_family_factor_times_a_subnormal_exp(dtype, C, isa):
    x, p = exact_softmax_tail(dtype, C)
    _, big = SM_TAIL[dtype]
    rows = x.shape[0]
    t = np.zeros(rows, np.int64)

    cols = np.arange(2, C, 1 if C <= 1000 else 97)     # tail classes checked

    def check(name, got, exact):
        with mp.workprec(160):
            hi, lo = _dd([row[c] for row in exact for c in cols])
        assert_ulp(f"{name} C={C}", x[:, cols].ravel(), np.asarray(got)[:, cols].ravel(), hi,
                   lo, dtype, ULP_BOUND["grad"], isa)

    for wv in (1e4, big):
        w = np.full(C, wv, dtype)
        onehot = [[1 if c == 0 else 0 for c in range(C)] for _ in range(rows)]
        # class weights, reduction 'sum': every row's factor is w_t
        want = [[wv * (pc - o) for pc, o in zip(pr, orow)] for pr, orow in zip(p, onehot)]
        # (only the tail classes of want are compared)
        _, g = bce_fast.cross_entropy_and_grad(x, t, weight=w, reduction="sum")
        check(f"CE grad weight={wv:g}", g, want)
        # the same factor as grad_output, per row, reduction 'none'
        _, g = bce_fast.cross_entropy_and_grad(x, t, reduction="none",
                                               grad_output=np.full(rows, wv, dtype))
        check(f"CE grad grad_output={wv:g}", g, want)
        # probability targets (one-hot): the factor is sum_c w_c t_c = w_0
        _, g = bce_fast.cross_entropy_and_grad(x, np.asarray(onehot, dtype), weight=w,
                                               reduction="sum")
        check(f"CE grad probabilities weight={wv:g}", g, want)
        # the class axis in the middle: positions side by side
        xi = np.ascontiguousarray(np.moveaxis(np.stack([x, x]), 2, 1))   # (2, C, rows)
        _, g = bce_fast.cross_entropy_and_grad(xi, np.zeros((2, rows), np.int64), weight=w,
                                               reduction="sum")
        check(f"CE grad class axis 1 weight={wv:g}", np.moveaxis(g, 1, 2)[0], want)
        if C <= 1000:                     # softmax_grad_hess takes no split rows
            g, h = bce_fast.softmax_grad_hess(x, t, sample_weight=np.full(rows, wv, dtype))
            check(f"grad_hess grad sample_weight={wv:g}", g, want)
            check(f"grad_hess hess sample_weight={wv:g}", h,
                  [[wv * pc * (1 - pc) for pc in pr] for pr in p])


@pytest.mark.parametrize("C", [5, 40, 300, 20000, 70000],
                         ids=["few", "group", "rows", "one-read", "split"])
def test_float32_row_of_subnormal_exps(C, isa):
    """A float32 row whose every class but the max lies 95-103 below it:
    its sum of exps s is itself subnormal, summed in float32 lanes from
    subnormal terms (2-50% off), and a weight of 1e4 makes the loss w log1p(s)
    and the target's gradient entry -w s / (1 + s) normal numbers that carry
    that error.  Such a sum is taken again in double."""
    rows = 2
    x = -(95.0 + np.random.default_rng(C).uniform(0, 8, (rows, C))).astype(np.float32)
    x[:, 0] = 0
    t = np.zeros(rows, np.int64)
    w = np.full(C, 1e4, np.float32)
    loss = bce_fast.cross_entropy(x, t, weight=w, reduction="none")
    _, g = bce_fast.cross_entropy_and_grad(x, t, weight=w, reduction="sum")
    lsm = bce_fast.log_softmax(x)
    with mp.workprec(160):
        S = [mp.fsum(mp.exp(mp.mpf(float(v))) for v in row[1:]) for row in x]
        cases = [("loss", loss, [1e4 * mp.log1p(v) for v in S]),
                 ("target gradient", g[:, 0], [-1e4 * v / (1 + v) for v in S]),
                 ("log_softmax at the max", lsm[:, 0], [-mp.log1p(v) for v in S])]
        for name, got, exact in cases:
            hi, lo = _dd(exact)
            assert_ulp(f"{name} C={C}", x[:, 0], got, hi, lo, np.float32, ULP_BOUND["loss"],
                       isa)


def test_float32_dense_random_sample(isa):
    """2e5 random float32 logits against the float64 NumPy reference, whose
    own error (~1e-16) is 1e-9 of a float32 ULP: denser than mpmath allows."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-104, 90, 10**5), rng.uniform(-6, 6, 10**5)])
    x = x.astype(np.float32)
    zeros, ones = np.zeros_like(x), np.ones_like(x)
    failures = []

    def check(name, got, exact, bound):
        """Collects every violated bound, so one failure does not hide others."""
        err = np.abs(got.astype(np.float64) - exact)
        with np.errstate(over="ignore"):
            ulps = err / np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
        i = int(np.argmax(ulps))
        if not ulps[i] <= bound:
            failures.append(f"{name} float32 [{isa}]: {ulps[i]:.2f} ULP > {bound} at "
                            f"input {inputs_of(got)[i]!r} ({(ulps > bound).sum()} of "
                            f"{got.size} points)")

    def inputs_of(got):
        return x if got.size == x.size else p

    p = None
    check("sigmoid", bce_fast.sigmoid(x), ref.sigmoid(x), ULP_BOUND["sigmoid"])
    check("log_sigmoid", bce_fast.log_sigmoid(x), ref.log_sigmoid(x), ULP_BOUND["log_sigmoid"])
    for y in (zeros, ones):
        loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none")
        check("bce_logits", loss, ref.binary_cross_entropy_with_logits(x, y, reduction="none"),
              ULP_BOUND["loss"])
        check("bce_logits grad", grad,
              ref.binary_cross_entropy_with_logits_grad(x, y, reduction="none"),
              ULP_BOUND["grad"])
    _, hess = bce_fast.logistic_grad_hess(x, zeros)
    check("logistic Hessian", hess, ref.logistic_grad_hess(x, zeros)[1], ULP_BOUND["grad"])
    # Weights with inexact products: the coefficient roundings count too,
    # also where softplus / sigmoid is subnormal (|x| > 87) and the weights
    # (up to 100 here) would magnify its rounding.
    w = rng.uniform(0.1, 10, x.size).astype(np.float32)
    pw = rng.uniform(0.1, 10, x.size).astype(np.float32)
    for y in (zeros, ones):
        loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w, pw,
                                                                        reduction="none")
        check("weighted bce_logits", loss,
              ref.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none"),
              ULP_BOUND["loss"])
        check("weighted bce_logits grad", grad,
              ref.binary_cross_entropy_with_logits_grad(x, y, w, pw, reduction="none"),
              ULP_BOUND["grad"])
    p = np.concatenate([rng.uniform(0, 1, 10**5), 10 ** rng.uniform(-45, 0, 10**4)])
    p = p.astype(np.float32)
    for yv in (0.0, 1.0, 0.3):
        y = np.full_like(p, yv)
        loss, grad = bce_fast.binary_cross_entropy_and_grad(p, y, reduction="none")
        check("bce", loss, ref.binary_cross_entropy(p, y, reduction="none"), ULP_BOUND["loss"])
    assert not failures, "\n".join(failures)


def test_float16_within_one_ulp():
    """float16 computes in float32 and rounds once."""
    x = logits(np.float16)
    x = x[np.isfinite(x)]
    xm = [mp.mpf(float(v)) for v in x]
    with mp.workprec(100):
        hi, lo = _dd([_mp_sigmoid(v) for v in xm])
        assert_ulp("sigmoid", x, bce_fast.sigmoid(x), hi, lo, np.float16, 1, "default")
        hi, lo = _dd([-_mp_softplus(-v) for v in xm])
        assert_ulp("log_sigmoid", x, bce_fast.log_sigmoid(x), hi, lo, np.float16, 1, "default")


# ----------------------------------------------------------- inf and NaN


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_infinities_and_nan(dtype, isa):
    inf, nan = np.inf, np.nan
    x = np.array([-inf, inf, nan], dtype)
    np.testing.assert_array_equal(bce_fast.sigmoid(x), [0.0, 1.0, nan])
    np.testing.assert_array_equal(bce_fast.log_sigmoid(x), [-inf, 0.0, nan])
    xs = np.array([inf, -inf, inf, -inf, nan, nan, 1.0], dtype)
    ys = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, nan], dtype)
    loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(xs, ys, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0, inf, inf, nan, nan, nan])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0, nan, nan, nan])
    assert np.isnan(bce_fast.binary_cross_entropy_with_logits(xs, ys, reduction="sum"))
    assert bce_fast.binary_cross_entropy_with_logits(xs[:2], ys[:2], reduction="sum") == 0
    g, h = bce_fast.logistic_grad_hess(xs[:4], ys[:4])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0, -1.0])
    np.testing.assert_array_equal(h, [0.0, 0.0, 0.0, 0.0])
    # An infinite pos_weight times y softplus(-x) > 0 is inf, at x = +-0 too
    # (where the |x| term, 0, must not meet the infinite coefficient).
    x0 = np.array([0.0, -0.0, 2.0, -2.0], dtype)
    loss = bce_fast.binary_cross_entropy_with_logits(
        x0, np.full_like(x0, 0.5), pos_weight=np.full_like(x0, inf), reduction="none")
    np.testing.assert_array_equal(loss, [inf, inf, inf, inf])


# --------------------------------------------------------- reduced losses


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("kind", ["bce_logits", "bce"])
def test_reduction_against_exact_sum(kind, dtype, isa):
    rng = np.random.default_rng(7)
    n = 200_003
    if kind == "bce_logits":
        x = (rng.normal(size=n) * 10 ** rng.uniform(-3, 2, size=n)).astype(dtype)
        f, rf = bce_fast.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits
    else:
        x = rng.uniform(size=n).astype(dtype)
        f, rf = bce_fast.binary_cross_entropy, ref.binary_cross_entropy
    y = rng.uniform(size=n).astype(dtype)
    total = math.fsum(rf(x, y, reduction="none"))
    bound = 1e-6 if dtype == np.float32 else 1e-12
    got_sum = f(x, y, reduction="sum")
    got_mean = f(x, y, reduction="mean")
    assert abs(float(got_sum) - total) <= bound * total
    assert abs(float(got_mean) - total / n) <= bound * total / n
