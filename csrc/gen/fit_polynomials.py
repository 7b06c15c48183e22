"""Derive the minimax coefficients used in csrc/bf_math.h.

  log1p on [0, 1]:  log1p(e) = e - e^2 R(e), R(e) = (e - log1p(e)) / e^2,
                    R a polynomial in u = e - 1/2 of degree 9 (float32),
                    fitted for relative error of R.
  log, float32:     log(1 + f) = f - f^2/2 + f^3 P(f) on f in
                    [sqrt(1/2) - 1, sqrt(2) - 1], P of degree 7, fitted for
                    relative error of log(1 + f) (Cephes' logf uses degree 8
                    for the same worst case in float32).
  log, float64:     log(1 + f) = 2 atanh(s), s = f / (2 + f), with the
                    correction R(z) = z Q(z), z = s^2, R = 2 atanh(s)/s - 2;
                    Q of degree 7 on z in [0, 1/25] (|s| <= 1/5), fitted
                    for relative error of Q.
  exp:              exp(r) = 1 + r + r^2 P(r) on |r| <= ln(2)/2, P of degree
                    4 for float32, 9 for float64, fitted for relative error
                    of exp(r).

Each fit minimises the maximum weighted error over Chebyshev nodes by
Lawson's iteratively reweighted least squares, in 50-digit mpmath arithmetic.
The float32 log1p is then evaluated exactly as the C code does (Horner with
FMA, then fma(-e*e, R, e), in float32) and checked against a float64 log1p.
Run:  python csrc/gen/fit_polynomials.py   (needs mpmath and numpy; ~1 min)
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 50


def lawson(nodes, target, weight, deg, iterations=60):
    """Coefficients c[0..deg] minimising max |weight * (sum c_j x^j - target)|."""
    n = len(nodes)
    lam = [mp.mpf(1) / n] * n
    for _ in range(iterations):
        a, b = mp.matrix(n, deg + 1), mp.matrix(n, 1)
        for i, x in enumerate(nodes):
            s = mp.sqrt(lam[i]) * weight[i]
            for j in range(deg + 1):
                a[i, j] = s * x**j
            b[i] = s * target[i]
        c = mp.qr_solve(a, b)[0]
        err = [weight[i] * (mp.polyval(list(reversed(c)), x) - target[i])
               for i, x in enumerate(nodes)]
        lam = [lam[i] * abs(err[i]) + mp.mpf(10) ** -60 for i in range(n)]
        total = sum(lam)
        lam = [v / total for v in lam]
    return [c[j] for j in range(deg + 1)], max(abs(e) for e in err)


def chebyshev(half_width, count):
    return [half_width * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / count) for k in range(count)]


def fit_log1p(deg):
    u = chebyshev(mp.mpf(1) / 2, 12 * deg)
    r = [(v + 0.5 - mp.log1p(v + 0.5)) / (v + 0.5) ** 2 for v in u]
    return lawson(u, r, [1 / x for x in r], deg)


def fit_log_q(deg):
    half = mp.mpf(1) / 50                   # z in [0, 1/25]
    z = [half + v for v in chebyshev(half, 15 * deg)]
    q = [(2 * mp.atanh(mp.sqrt(v)) / mp.sqrt(v) - 2) / v for v in z]
    return lawson(z, q, [1 / x for x in q], deg)


def fit_log_f32(deg):
    lo, hi = mp.sqrt(0.5) - 1, mp.sqrt(2) - 1
    f = [(lo + hi) / 2 + v for v in chebyshev((hi - lo) / 2, 15 * deg)]
    p = [(mp.log1p(v) - v + v**2 / 2) / v**3 for v in f]
    return lawson(f, p, [abs(v**3 / mp.log1p(v)) for v in f], deg)


def fit_exp(deg):
    x = chebyshev(mp.log(2) / 2, 15 * deg)
    p = [(mp.exp(v) - 1 - v) / v**2 for v in x]
    return lawson(x, p, [v**2 / mp.exp(v) for v in x], deg)


def check_log1p_f32(c):
    """Worst ULP error of the float32 evaluation, against float64 log1p."""
    def fma32(a, b, d):        # the float64 product of two floats is exact
        return (a.astype(np.float64) * b + d).astype(np.float32)
    c32 = np.array([float(v) for v in c], np.float32)
    rng = np.random.default_rng(1)
    e = np.concatenate([rng.random(3_000_000, dtype=np.float32),
                        (2.0 ** -rng.uniform(0, 30, 1_000_000)).astype(np.float32),
                        np.float32(1) - rng.random(500_000, dtype=np.float32) / 1000,
                        np.array([0, 1], np.float32)])
    u = e - np.float32(0.5)
    r = np.full_like(e, c32[-1])
    for k in range(len(c32) - 2, -1, -1):
        r = fma32(r, u, c32[k])
    got = fma32(-(e * e), r, e).astype(np.float64)
    exact = np.log1p(e.astype(np.float64))
    ulp = np.spacing(np.maximum(exact, 1e-45).astype(np.float32)).astype(np.float64)
    return (np.abs(got - exact) / ulp).max()


def check_log_f32(c):
    """Worst ULP error of the float32 evaluation of log(1 + f) on the reduced
    interval, against float64."""
    def fma32(a, b, d):
        return (a.astype(np.float64) * b + d).astype(np.float32)
    c32 = np.array([float(v) for v in c], np.float32)
    f = np.linspace(np.sqrt(0.5) - 1, np.sqrt(2) - 1, 4_000_001).astype(np.float32)
    z = f * f
    p = np.full_like(f, c32[-1])
    for k in range(len(c32) - 2, -1, -1):
        p = fma32(p, f, c32[k])
    got = (f + fma32(p * f, z, -(np.float32(0.5) * z))).astype(np.float64)
    exact = np.log1p(f.astype(np.float64))
    ulp = np.spacing(np.maximum(np.abs(exact), 1e-45).astype(np.float32)).astype(np.float64)
    return (np.abs(got - exact) / ulp).max()


def show(title, c, fmt):
    print(title)
    for k in range(len(c) - 1, -1, -1):
        print(f"  x^{k:<2d} {fmt(c[k])}")


if __name__ == "__main__":
    c, err = fit_log1p(9)
    c32 = [np.float32(float(v)) for v in c]
    show(f"log1p R, float32, degree 9: relative error {float(err):.2e}, "
         f"float32 log1p within {check_log1p_f32(c):.2f} ULP", c32, lambda v: f"{v:.10e}f")
    c, err = fit_log_f32(7)
    show(f"log P, float32, degree 7: relative error {float(err):.2e}, "
         f"float32 log(1 + f) within {check_log_f32(c):.2f} ULP",
         [np.float32(float(v)) for v in c], lambda v: f"{v:.10e}f")
    c, err = fit_log_q(7)
    show(f"log Q, float64, degree 7: relative error {float(err):.2e}", c,
         lambda v: mp.nstr(v, 20))
    c, err = fit_exp(4)
    show(f"exp P, float32, degree 4: relative error of exp {float(err):.2e}",
         [np.float32(float(v)) for v in c], lambda v: f"{v:.10e}f")
    c, err = fit_exp(9)
    show(f"exp P, float64, degree 9: relative error of exp {float(err):.2e}", c,
         lambda v: mp.nstr(v, 20))
